"""AI insights (reference section 11): the periodic scan, and listing and dismissing what it found.

The scanner reads a snapshot of the cluster (raw JSON lists, pod metrics), runs the rule modules of
`kubilitics.ai.insights` and the analyzers on failing workloads, and reconciles the result with what
is stored: a detection whose id is known refreshes that insight (a write only when its content
changed), a new one is created, and an active insight the scan no longer sees is marked resolved. A
dismissed insight stays dismissed: the scanner never writes dismissal fields.

Reads that fail become notes in the scan report; a rule whose inputs could not be read does not
resolve anything (no metrics must not look like "no problem").
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubilitics.ai.insights import (
    CATEGORIES,
    SEVERITIES,
    Detection,
    ScanPolicy,
    Snapshot,
    cost,
    health,
    insight_id,
    performance,
    security,
)
from kubilitics.ai.insights.base import WorkloadRef
from kubilitics.clock import rfc3339
from kubilitics.errors import KubiliticsError, NotFound, ValidationFailed
from kubilitics.kube_paths import segment
from kubilitics.ports import Clock, InsightStore, KubernetesPort
from kubilitics.services.access import AccessReviews

log = logging.getLogger(__name__)

RESOLVED_RETENTION_SECONDS = 100 * 86400  # resolved insights stay for the 90-day analytics period
PAGE = 500
METRICS_RULES = frozenset(
    {"cpu_near_limit", "memory_near_limit", "overprovisioned_requests", "idle_workload"}
)
# kind -> (list it namespace by namespace in a scoped scan?)
_KINDS = {
    "Pod": True,
    "ReplicaSet": True,
    "Job": True,
    "Deployment": True,
    "StatefulSet": True,
    "ServiceAccount": True,
    "NetworkPolicy": True,
    "Role": True,
    "PersistentVolumeClaim": True,
    "Namespace": False,
    "ClusterRole": False,
    "Node": False,
}
_FIELDS = {
    "Pod": "pods",
    "ReplicaSet": "replica_sets",
    "Job": "jobs",
    "Deployment": "deployments",
    "StatefulSet": "stateful_sets",
    "ServiceAccount": "service_accounts",
    "NetworkPolicy": "network_policies",
    "Role": "roles",
    "PersistentVolumeClaim": "pvcs",
    "Namespace": "namespaces",
    "ClusterRole": "cluster_roles",
    "Node": "nodes",
}


class InsightScanner:
    def __init__(
        self,
        kube: KubernetesPort,
        store: InsightStore,
        clock: Clock,
        policy: Callable[[], ScanPolicy],
        diagnose_workload: Callable[[Any, WorkloadRef], Any] | None = None,
    ):
        self._kube = kube
        self._store = store
        self._clock = clock
        self._policy = policy
        self._diagnose = diagnose_workload or self._gather_and_diagnose

    # ---- the scan ------------------------------------------------------------------------------

    def scan(self, context: Any, namespaces: Iterable[str] | None = None) -> dict[str, Any]:
        """Scan one kubeconfig context (only `namespaces`, when given) and store what it finds."""
        started = time.monotonic()
        now = self._clock.now()
        policy = self._policy()
        snapshot = self.snapshot(context, frozenset(namespaces) if namespaces is not None else None)
        detections: list[Detection] = []
        if policy.security:
            detections += security.detect(snapshot, policy)
        detections += performance.detect(snapshot, policy)
        if policy.cost:
            detections += cost.detect(snapshot, policy)
        health_detections, undecided = self._health(context, snapshot, policy)
        detections += health_detections
        counts = self._reconcile(snapshot, policy, detections, undecided, now)
        report = {
            "context": snapshot.context,
            "scanned_at": rfc3339(now),
            "duration_ms": int((time.monotonic() - started) * 1000),
            "namespaces": sorted(snapshot.namespaces_in_scope) if snapshot.namespaces_in_scope else "all",
            "detected": len(detections),
            "by_category": {c: sum(1 for d in detections if d.category == c) for c in CATEGORIES},
            **counts,
            "notes": snapshot.notes,
        }
        if snapshot.full:
            self._store.put_scan(snapshot.context, report)
        log.info(
            "insight scan of %s: %s", snapshot.context, {k: v for k, v in report.items() if k != "notes"}
        )
        return report

    def snapshot(self, context: Any, namespaces: frozenset[str] | None = None) -> Snapshot:
        snap = Snapshot(
            context=str(getattr(context, "name", context)),
            collected_at=self._clock.now(),
            namespaces_in_scope=namespaces,
        )
        calls: list[tuple[str, str | None]] = []
        for kind, namespaced in _KINDS.items():
            if namespaces is None or not namespaced:
                calls.append((kind, None))
            else:
                calls += [(kind, ns) for ns in sorted(namespaces)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            metrics = pool.submit(self._metrics, context, namespaces, snap)
            lists = list(pool.map(lambda call: self._list(context, call[0], call[1], snap), calls))
            for (kind, _), items in zip(calls, lists, strict=True):
                getattr(snap, _FIELDS[kind]).extend(items)
            snap.pod_metrics = metrics.result()
        return snap

    def _list(self, context: Any, kind: str, namespace: str | None, snap: Snapshot) -> list[dict[str, Any]]:
        try:
            rtype = self._kube.resource_type(context, kind)
            items: list[dict[str, Any]] = []
            token: str | None = None
            while True:
                page = self._kube.list_objects(
                    context, rtype, namespace=namespace, limit=PAGE, continue_token=token
                )
                for item in page.get("items") or []:
                    item.setdefault("kind", rtype.kind)
                    items.append(item)
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    return items
        except KubiliticsError as exc:
            if kind == "Pod":
                raise  # nothing meaningful can be said about a cluster whose pods cannot be read
            snap.notes.append(
                f"could not list {kind}{' in ' + namespace if namespace else ''}: {exc.message}"
            )
            return []

    def _metrics(
        self, context: Any, namespaces: frozenset[str] | None, snap: Snapshot
    ) -> dict[tuple[str, str], dict[str, tuple[float | None, float | None]]] | None:
        from kubilitics.ai.kube_json import parse_quantity

        paths = (
            ["/apis/metrics.k8s.io/v1beta1/pods"]
            if namespaces is None
            else [f"/apis/metrics.k8s.io/v1beta1/namespaces/{segment(ns)}/pods" for ns in sorted(namespaces)]
        )
        out: dict[tuple[str, str], dict[str, tuple[float | None, float | None]]] = {}
        try:
            for path in paths:
                for item in self._kube.get_path(context, path).get("items") or []:
                    md = item.get("metadata") or {}
                    out[(str(md.get("namespace")), str(md.get("name")))] = {
                        str(c.get("name")): (
                            parse_quantity((c.get("usage") or {}).get("cpu"), cpu=True),
                            parse_quantity((c.get("usage") or {}).get("memory")),
                        )
                        for c in item.get("containers") or []
                    }
            nodes = self._kube.get_path(context, "/apis/metrics.k8s.io/v1beta1/nodes").get("items") or []
            snap.scraped_nodes = frozenset(str((n.get("metadata") or {}).get("name")) for n in nodes)
        except KubiliticsError as exc:
            snap.notes.append(f"pod metrics unavailable (metrics.k8s.io): {exc.message}; usage rules skipped")
            return None
        return out

    def _health(
        self, context: Any, snapshot: Snapshot, policy: ScanPolicy
    ) -> tuple[list[Detection], set[str]]:
        """Detections for failing workloads, and the scopes that could not be decided this time."""
        targets = health.failing_targets(snapshot, policy)
        detections: list[Detection] = []
        undecided: set[str] = set()

        def run(target: WorkloadRef) -> Detection | None:
            return health.detection(target, self._diagnose(context, target))

        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [(target, pool.submit(run, target)) for target, _ in targets]
            for target, future in futures:
                try:
                    found = future.result()
                except Exception as exc:
                    log.exception("diagnosis of %s failed", target)
                    snapshot.notes.append(f"diagnosis of {target} failed: {type(exc).__name__}")
                    undecided.add(f"workload/{target}")
                    continue
                if found is not None:
                    detections.append(found)
        return detections, undecided

    def _gather_and_diagnose(self, context: Any, target: WorkloadRef) -> Any:
        from kubilitics.ai.diagnosis import diagnose
        from kubilitics.ai.gather import gather_evidence

        evidence = gather_evidence(
            self._kube, context, target.kind, target.namespace, target.name, 60, clock=self._clock.now
        )
        return diagnose(evidence)

    def _reconcile(
        self,
        snapshot: Snapshot,
        policy: ScanPolicy,
        detections: list[Detection],
        undecided: set[str],
        now: float,
    ) -> dict[str, int]:
        existing = {r["insight_id"]: r for r in self._store.list(snapshot.context)}
        created = updated = unchanged = resolved = 0
        seen: set[str] = set()
        for detection in detections:
            record = _record(snapshot.context, detection)
            seen.add(record["insight_id"])
            old = existing.get(record["insight_id"])
            if old and old.get("status") == "active" and old.get("fingerprint") == record["fingerprint"]:
                unchanged += 1
                continue
            if old and old.get("fingerprint") == record["fingerprint"]:
                record["generated_time"] = old.get("generated_time", now)  # back, but the same
            else:
                record["generated_time"] = now
            self._store.put(record, first_detected=now)
            if old:
                updated += 1
            else:
                created += 1
        for insight in existing.values():
            if insight["insight_id"] in seen or insight.get("status") != "active":
                continue
            if not self._evaluated(snapshot, policy, insight, undecided):
                continue
            if self._store.resolve(insight["insight_id"], now, int(now + RESOLVED_RETENTION_SECONDS)):
                resolved += 1
        return {"created": created, "updated": updated, "unchanged": unchanged, "resolved": resolved}

    @staticmethod
    def _evaluated(
        snapshot: Snapshot, policy: ScanPolicy, insight: dict[str, Any], undecided: set[str]
    ) -> bool:
        """Did this scan look at what the insight is about? Only then may its absence resolve it."""
        namespace = insight.get("namespace")
        if namespace is None and not snapshot.full:
            return False
        in_scan = snapshot.namespaces_in_scope
        if namespace is not None and in_scan is not None and namespace not in in_scan:
            return False
        category, rule = insight.get("category"), insight.get("rule")
        if category == "security" and not policy.security:
            return False
        if category == "cost_optimization" and not policy.cost:
            return False
        if rule in METRICS_RULES and snapshot.pod_metrics is None:
            return False
        return insight.get("scope") not in undecided


def _record(context: str, detection: Detection) -> dict[str, Any]:
    content = {
        "severity": detection.severity,
        "title": detection.title,
        "description": detection.description,
        "affected_resources": detection.affected_resources(),
        "recommendation": detection.recommendation,
        "extra": detection.extra,
    }
    fingerprint = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {
        "insight_id": insight_id(context, detection.category, detection.rule, detection.scope),
        "context": context,
        "category": detection.category,
        "rule": detection.rule,
        "scope": detection.scope,
        "namespace": detection.namespace,
        "status": "active",
        "fingerprint": fingerprint,
        **content,
    }


# ---- listing and dismissing ----------------------------------------------------------------------

STATUSES = ("active", "resolved", "all")
MAX_REASON = 200
MAX_NOTES = 2000


class InsightsService:
    def __init__(self, store: InsightStore, clock: Clock, access: AccessReviews | None = None):
        self._store = store
        self._clock = clock
        self._access = access

    @staticmethod
    def _caller_of(caller: Callable[[str], Any], record: dict[str, Any]) -> Any:
        """The caller's context for the record's cluster; a context gone from the kubeconfig: 404."""
        try:
            return caller(str(record.get("context")))
        except KubiliticsError as exc:
            if exc.code != "invalid_context":
                raise
            raise _no_insight(str(record.get("insight_id"))) from exc

    def _readable(self, caller: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records whose resources the caller may read (the scan ran as the service)."""
        if self._access is None:
            return records
        return self._access.visible(caller, records, _kinds_and_namespace)

    def list(
        self,
        context: str,
        *,
        category: str = "all",
        severity: str | None = None,
        dismissed: bool = False,
        status: str = "active",
        limit: int = 100,
        caller: Any = None,
    ) -> dict[str, Any]:
        """`caller`: the context as the caller reaches it; they see only what their RBAC lets them read."""
        records = self._readable(caller, self._store.list(context))
        chosen = [
            r
            for r in records
            # The store matches a prefix of its index key ("<context>#"): "a#b" would match "a".
            if r.get("context") == context
            and (category == "all" or r.get("category") == category)
            and (severity is None or r.get("severity") == severity)
            and (dismissed or not r.get("dismissed_at"))
            and (status == "all" or r.get("status") == status)
        ]
        chosen.sort(key=lambda r: r.get("insight_id", ""))
        chosen.sort(key=lambda r: -float(r.get("generated_time") or 0))
        chosen.sort(key=lambda r: SEVERITIES.index(r["severity"]) if r.get("severity") in SEVERITIES else 9)
        scan = self._store.get_scan(context)
        return {
            "total_count": len(chosen),
            "insights": [view(r) for r in chosen[:limit]],
            "last_scan": (
                {k: scan.get(k) for k in ("scanned_at", "duration_ms", "detected", "resolved")}
                if scan
                else None
            ),
        }

    def dismiss(
        self,
        insight_id: str,
        body: Any,
        dismissed_by: str,
        cluster_id: str | None = None,
        caller: Callable[[str], Any] | None = None,
    ) -> dict[str, Any]:
        """`cluster_id`: the caller's token is bound to that cluster; `caller`: an insight's context
        name -> that context as the caller reaches it. An insight of another cluster, or one whose
        resources the caller's RBAC does not let them read, answers exactly as one that does not
        exist (no dismissal, no hint that it exists)."""
        reason, notes = _dismissal(body)
        now = self._clock.now()
        if cluster_id is not None or caller is not None:
            # An insight's cluster never changes (it is part of its id), so checking first is safe.
            owned = self._store.get(insight_id)
            if owned is None or (cluster_id is not None and owned.get("context") != cluster_id):
                raise _no_insight(insight_id)
            if caller is not None and not self._readable(self._caller_of(caller, owned), [owned]):
                raise _no_insight(insight_id)
        record = self._store.dismiss(insight_id, dismissed_by, reason, notes, now)
        if record is None:
            existing = self._store.get(insight_id)
            if existing is None:
                raise _no_insight(insight_id)
            raise KubiliticsError(
                f"Insight {insight_id!r} is already dismissed",
                code="resource_conflict",
                details={
                    "insight_id": insight_id,
                    "dismissed_at": rfc3339(float(existing["dismissed_at"])),
                    "dismissed_by": existing.get("dismissed_by"),
                },
            )
        return {
            "insight_id": insight_id,
            "dismissed_at": rfc3339(now),
            "dismissed_by": dismissed_by,
            "reason": reason,
            "notes": notes,
        }


def _kinds_and_namespace(record: dict[str, Any]) -> set[tuple[str, str | None]]:
    """(kind, namespace) of each resource an insight names ("ns/Kind/name", "Kind/name"); its pods
    when it names none (every rule reads pods)."""
    namespace = record.get("namespace")
    examples = (record.get("affected_resources") or {}).get("examples") or []
    kinds = set()
    for example in examples:
        parts = str(example).split(" ", 1)[0].split("/")
        if len(parts) >= 2:
            kinds.add(parts[-2])
    return {(kind, namespace) for kind in kinds or {"Pod"}}


def _no_insight(insight_id: str) -> NotFound:
    return NotFound(f"No insight {insight_id!r}", details={"insight_id": insight_id})


def _dismissal(body: Any) -> tuple[str, str | None]:
    if not isinstance(body, dict):
        raise ValidationFailed("The request body must be a JSON object", details={"field": "body"})
    unknown = sorted(set(body) - {"reason", "notes"})
    if unknown:
        raise ValidationFailed(f"Unknown field {unknown[0]}", details={"field": unknown[0]})
    reason = body.get("reason")
    if reason is None or (isinstance(reason, str) and not reason.strip()):
        raise KubiliticsError(
            "Required field missing: reason", code="missing_required_field", details={"field": "reason"}
        )
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ValidationFailed(
            f"Invalid value for reason: a string of at most {MAX_REASON} characters",
            details={"field": "reason"},
        )
    notes = body.get("notes")
    if notes is not None and (not isinstance(notes, str) or len(notes) > MAX_NOTES):
        raise ValidationFailed(
            f"Invalid value for notes: a string of at most {MAX_NOTES} characters", details={"field": "notes"}
        )
    return reason.strip(), (notes or None)


def view(record: dict[str, Any]) -> dict[str, Any]:
    """An insight as the API shows it (reference fields first, then additions)."""

    def when(name: str) -> str | None:
        value = record.get(name)
        return rfc3339(float(value)) if value is not None else None

    out: dict[str, Any] = {
        "insight_id": record["insight_id"],
        "category": record.get("category"),
        "severity": record.get("severity"),
        "title": record.get("title"),
        "description": record.get("description"),
        "affected_resources": record.get("affected_resources") or {"count": 0, "examples": []},
        "recommendation": record.get("recommendation") or {},
        "generated_time": when("generated_time"),
        "dismissed_at": when("dismissed_at"),
        "rule": record.get("rule"),
        "status": record.get("status"),
        "namespace": record.get("namespace"),
        "cluster": record.get("context"),
        "first_detected": when("first_detected"),
        "resolved_at": when("resolved_at"),
    }
    if record.get("dismissed_at") is not None:
        out["dismissed_by"] = record.get("dismissed_by")
        out["dismissed_reason"] = record.get("dismissed_reason")
        out["dismissed_notes"] = record.get("dismissed_notes")
    out.update(record.get("extra") or {})
    return out
