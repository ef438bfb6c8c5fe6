"""AI investigations (reference section 10), the API side: start one, list them.

`InvestigationService` answers the API: POST checks the target exists, takes a concurrency slot,
writes the record and starts a named workflow execution; GET lists with filters, sorting and
`include_findings`. The workflow's steps are services/investigation_tasks.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubilitics.ai.taxonomy import SEVERITY_ORDER
from kubilitics.auth.tokens import Principal
from kubilitics.clock import new_id, rfc3339
from kubilitics.errors import InvalidParameter, KubiliticsError
from kubilitics.ports import Clock, InvestigationStore, KubernetesPort, WorkflowStarter
from kubilitics.services.ratelimit import RateLimiter

log = logging.getLogger(__name__)

STATUSES = ("pending", "in_progress", "completed", "failed")
SCOPES = ("quick", "standard", "deep")
SORT_KEYS = ("start_time", "completion_time", "severity")
CATEGORY = "investigations"  # the rate-limit category whose concurrency slot an investigation holds
# progress_percent once each step is done (the POST answers with STARTED)
STARTED = 10
PROGRESS = {"gather": 35, "analyze": 55, "reason": 80, "propose_actions": 90, "complete": 100}
ESTIMATED_SECONDS = {"rules": 10, "llm": 90}
CLUSTER = "Cluster"  # resource_kind of a cluster investigation (no Kubernetes kind of that name)


@dataclass(frozen=True)
class InvestigationRequest:
    resource_kind: str
    resource_name: str
    namespace: str | None = None
    symptoms: tuple[str, ...] = ()
    investigation_scope: str = "standard"
    search_window_minutes: int = 60


class _ClusterType:
    kind = CLUSTER
    namespaced = False


class InvestigationService:
    def __init__(
        self,
        *,
        kube: KubernetesPort,
        store: InvestigationStore,
        starter: WorkflowStarter,
        rate_limiter: RateLimiter,
        clock: Clock,
        retention_seconds: int,
        llm_configured: Callable[[], bool],
        max_concurrent: Callable[[], int],
        run_limit_seconds: float = 1860.0,
    ):
        """`max_concurrent`: investigations in progress at once across all users (the AI config's
        investigation_settings.max_concurrent_investigations, read at each start). `run_limit_seconds`:
        an investigation still unfinished this long after it started has no execution left (the state
        machine's TimeoutSeconds ends it; a MarkFailed step that failed too recorded nothing): it is
        failed when next listed, and its slots are given back."""
        self._max_concurrent = max_concurrent
        self._run_limit = run_limit_seconds
        self._kube = kube
        self._store = store
        self._starter = starter
        self._limiter = rate_limiter
        self._clock = clock
        self._retention = retention_seconds
        self._llm_configured = llm_configured

    def _take_slots(self, principal: Principal) -> None:
        """429 beyond 5 running for this user, or beyond the deployment's cap for all users."""
        self._limiter.acquire_slot(principal, CATEGORY)
        try:
            self._limiter.acquire_shared_slot(CATEGORY, self._max_concurrent())
        except Exception:
            self._limiter.release_slot(principal.sub, CATEGORY)
            raise

    def start(self, principal: Principal, context: Any, request: InvestigationRequest) -> dict[str, Any]:
        if request.resource_kind.lower() == CLUSTER.lower():
            # The whole cluster: the caller must be able to list nodes (the API server's 403 if not).
            nodes = self._kube.resource_type(context, "Node")
            self._kube.list_objects(context, nodes, limit=1)
            rtype = _ClusterType()
            name = request.resource_name or getattr(context, "name", None) or "cluster"
            request = InvestigationRequest(**{**request.__dict__, "resource_name": name})
            path = "llm" if self._llm_configured() else "rules"
            self._take_slots(principal)
            try:
                return self._start(principal, context, request, rtype, None, path)
            except Exception:
                release_slots(self._limiter, principal.sub)
                raise
        rtype = self._kube.resource_type(context, request.resource_kind)  # 400 invalid_resource_kind
        namespace = None
        if rtype.namespaced:
            namespace = (
                request.namespace or principal.namespace or getattr(context, "namespace", None) or "default"
            )
        try:
            self._kube.get(context, rtype, namespace, request.resource_name)
        except KubiliticsError as exc:
            if exc.code != "not_found":
                raise
            raise KubiliticsError(
                f"{rtype.kind} not found",
                code="invalid_investigation_request",
                details={
                    "namespace": namespace,
                    "resource_name": request.resource_name,
                    "resource_kind": rtype.kind,
                },
            ) from exc
        # Asked before any slot is taken: reading the AI key may fail (a 503), and nothing may be held then.
        path = "llm" if self._llm_configured() else "rules"
        self._take_slots(principal)
        try:
            return self._start(principal, context, request, rtype, namespace, path)
        except Exception:
            # Whatever fails before the execution starts gives both slots back (the execution would
            # otherwise be the one to release them, and there is none).
            release_slots(self._limiter, principal.sub)
            raise

    def _start(
        self,
        principal: Principal,
        context: Any,
        request: InvestigationRequest,
        rtype: Any,
        namespace: str | None,
        path: str,
    ) -> dict[str, Any]:
        now = self._clock.now()
        investigation_id = new_id("inv", now)
        resource = {"kind": rtype.kind, "namespace": namespace, "name": request.resource_name}
        estimated = now + ESTIMATED_SECONDS[path]
        record = {
            "investigation_id": investigation_id,
            "status": "in_progress",
            "resource": resource,
            "symptoms": list(request.symptoms),
            "investigation_scope": request.investigation_scope,
            "search_window_minutes": request.search_window_minutes,
            "context": getattr(context, "name", None),
            # Every step reads the cluster as the requester (their RBAC), not as the service.
            "acting_as": getattr(context, "acting_as_record", None),
            "requested_by": principal.sub,
            "start_time": now,
            "estimated_completion_time": estimated,
            "progress_percent": STARTED,
            "steps": [],
            "expires_at": int(now) + self._retention,
        }
        payload = {
            key: record[key]
            for key in (
                "investigation_id",
                "resource",
                "symptoms",
                "investigation_scope",
                "search_window_minutes",
                "context",
                "acting_as",
                "requested_by",
            )
        }
        # Written before the execution starts, so the first step always finds its record.
        self._store.create(record)
        try:
            execution = self._starter.start(investigation_id, payload)
        except Exception as exc:  # no execution: the record must not stay in_progress
            self._fail_quietly(
                investigation_id, exc if isinstance(exc, KubiliticsError) else KubiliticsError(str(exc))
            )
            raise
        # From here the execution holds the slots: its last step gives them back, failed or not.
        self._update_quietly(investigation_id, {"execution_arn": execution})
        return {
            "investigation_id": investigation_id,
            "status": "in_progress",
            "resource": {k: v for k, v in resource.items() if v is not None},
            "start_time": rfc3339(now),
            "estimated_completion_time": rfc3339(estimated),
            "progress_percent": STARTED,
        }

    def _update_quietly(self, investigation_id: str, fields: dict[str, Any]) -> None:
        try:
            self._store.update(investigation_id, fields)
        except KubiliticsError:
            log.warning("could not record %s on %s", ", ".join(fields), investigation_id)

    def _fail_quietly(self, investigation_id: str, exc: KubiliticsError) -> None:
        try:
            self._store.update(
                investigation_id,
                {"status": "failed", "error": {"error": exc.code, "message": exc.message}},
            )
        except KubiliticsError:
            log.warning("could not mark %s failed", investigation_id)

    def list(
        self,
        context: str | None,
        *,
        status: str | None,
        namespace: str | None,
        limit: int,
        offset: int,
        sort_by: str | None,
        include_findings: bool,
        visible: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = lambda records: records,
    ) -> dict[str, Any]:
        """`visible`: the records the caller may see (their RBAC on each investigated resource)."""
        if status is not None and status not in STATUSES:
            raise InvalidParameter(
                f"Invalid query parameter status: must be one of {', '.join(STATUSES)}",
                details={"parameter": "status", "allowed": list(STATUSES)},
            )
        records = [
            r
            for r in map(self._overdue, self._store.list(_stored_statuses(status)))
            if (namespace is None or _about_namespace(r, namespace))
            and r.get("context") == context
            and (status is None or r["status"] == status)
        ]
        records = visible(records)
        records.sort(key=_sort_key(sort_by or "start_time"))
        page = records[offset : offset + limit]
        details = self._store.details([r["investigation_id"] for r in page]) if include_findings else {}
        return {
            "total_count": len(records),
            "items": [item_view(r, details.get(r["investigation_id"]), include_findings) for r in page],
        }

    def _overdue(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record, failed if it is unfinished past the run limit (never `in_progress` forever)."""
        now = self._clock.now()
        unfinished = record.get("status") in ("pending", "in_progress")
        if not unfinished or now - record["start_time"] < self._run_limit:
            return record
        fields = {
            "status": "failed",
            "completion_time": now,
            "error": {
                "error": "investigation_failed",
                "message": f"The investigation did not finish within {self._run_limit:.0f} s",
                "details": {"error_type": "States.Timeout", "last_progress": record.get("progress_percent")},
            },
        }
        try:
            self._store.update(record["investigation_id"], fields)
            if record.get("requested_by") and self._store.claim_slot_release(record["investigation_id"]):
                release_slots(self._limiter, str(record["requested_by"]))
        except KubiliticsError:
            log.warning("could not mark the overdue investigation %s failed", record["investigation_id"])
        return {**record, **fields}

    def queue_counts(self, context: str | None = None) -> dict[str, int]:
        """For GET /api/v1/ai/status: investigations waiting and running (of one context, when given)."""
        if context is None:
            return {"pending": self._store.count("pending"), "in_progress": self._store.count("in_progress")}
        waiting = self._store.list(["pending", "in_progress"])
        mine = Counter(r.get("status") for r in waiting if r.get("context") == context)
        return {"pending": mine["pending"], "in_progress": mine["in_progress"]}


def _stored_statuses(status: str | None) -> list[str]:
    """What to read for a status filter: `failed` includes the unfinished that may be overdue."""
    if status is None:
        return list(STATUSES)
    return [status, "pending", "in_progress"] if status == "failed" else [status]


def _about_namespace(record: dict[str, Any], namespace: str) -> bool:
    """An investigation of something in the namespace, or of the namespace itself."""
    resource = record.get("resource") or {}
    if resource.get("kind") == "Namespace":
        return resource.get("name") == namespace
    return resource.get("namespace") == namespace


def _sort_key(sort_by: str) -> Callable[[dict[str, Any]], Any]:
    if sort_by == "completion_time":
        # Newest completion first; the unfinished after the finished, newest started first.
        return lambda r: (
            r.get("completion_time") is None,
            -(r.get("completion_time") or 0),
            -r["start_time"],
        )
    if sort_by == "severity":
        return lambda r: (SEVERITY_ORDER.get(r.get("severity") or "", 9), -r["start_time"])
    return lambda r: -r["start_time"]


def item_view(
    record: dict[str, Any], detail: dict[str, Any] | None, include_findings: bool
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "investigation_id": record["investigation_id"],
        "status": record["status"],
        "resource": {k: v for k, v in (record.get("resource") or {}).items() if v is not None},
        "severity": record.get("severity"),
        "start_time": rfc3339(record["start_time"]),
        "completion_time": rfc3339(record["completion_time"]) if record.get("completion_time") else None,
        "progress_percent": record.get("progress_percent", 0),
        "findings_summary": record.get("findings_summary"),
        "recommendations": record.get("recommendations") or [],
    }
    if record["status"] == "failed" and record.get("error"):
        item["error"] = record["error"]
    if include_findings:
        detail = detail or {}
        item.update(
            root_cause=record.get("root_cause"),
            evidence=detail.get("evidence") or [],
            findings=detail.get("findings") or [],
            explanation=detail.get("explanation"),
            symptoms=record.get("symptoms") or [],
            investigation_scope=record.get("investigation_scope"),
            search_window_minutes=record.get("search_window_minutes"),
            analysis=detail.get("analysis"),
            settled=detail.get("settled"),
            actions=record.get("actions") or [],
        )
        if detail.get("triage"):  # namespace investigations: workloads counted, examined, affected
            item["triage"] = detail["triage"]
    return item


class InvestigationHistoryView:
    """Investigations and actions as analytics reads them (ports.InvestigationHistory)."""

    ACTION_STATUSES = ("pending", "blocked", "approved", "rejected", "expired", "superseded")

    def __init__(self, investigations: InvestigationStore, actions: Any):
        self._investigations = investigations
        self._actions = actions  # ports.ActionStore

    def investigations(self, start: float, end: float) -> list[dict[str, Any]]:
        return [
            {
                "status": r["status"],
                "severity": r.get("severity"),
                "created_at": r["start_time"],
                "completed_at": r.get("completion_time"),
                "context": r.get("context"),
            }
            for r in self._investigations.list(STATUSES)
            if start <= r["start_time"] <= end
        ]

    def actions(self, start: float, end: float) -> list[dict[str, Any]]:
        return [
            {
                "status": a["status"],
                "created_at": a["proposed_at"],
                "execution_status": a.get("execution_status"),
                "context": a.get("context"),
            }
            for status in self.ACTION_STATUSES
            for a in self._actions.list_status(status)
            if start <= a["proposed_at"] <= end
        ]


def release_slots(limiter: RateLimiter, sub: str) -> None:
    """Give back what an investigation holds: its user's slot and its share of the deployment's."""
    limiter.release_slot(sub, CATEGORY)
    limiter.release_shared_slot(CATEGORY)
