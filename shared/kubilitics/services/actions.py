"""Remediation actions (reference section 12): proposals from a diagnosis, the approval queue, and the
execution of an approved change with verification and automatic rollback.

A proposal is a concrete change of one object (a strategic-merge patch, a scale, a rollout restart,
a rollback to the previous ReplicaSet's template, a pod delete), checked by a server-side dry run
when it is proposed (a change the API server would refuse is never proposed) and described by what
the dry run says it changes. The safety policy (ai/safety.py) decides whether it may ever run and
whether a human must approve it; it is asked again at approval time, because the configuration may
have changed since.

Executing an approved action:
1. one conditional write moves it from `pending` to `approved`: of two concurrent approvals exactly
   one executes, the other gets 409; an approval after the window gets 410 `action_expired`;
2. the target is read again: if its spec (or uid) changed since the proposal, nothing is applied
   (409 `resource_conflict`: the proposal was made for an object that no longer exists as it was);
3. the change is dry-run, then applied with the read resourceVersion as a precondition;
4. verification: the changed fields hold the proposed values, the controller picked the change up,
   and the pods it creates stay healthy for a settle period; otherwise the change is undone.
Every step writes an audit record.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kubilitics.ai import remediation
from kubilitics.ai.evidence import Evidence
from kubilitics.ai.kube_json import controller_of, meta, node_condition, pod_node, selector_string
from kubilitics.ai.safety import Operation, ResourceRef, RiskAssessment, assess
from kubilitics.auth.access import require_scope
from kubilitics.auth.tokens import Principal
from kubilitics.clock import new_id, rfc3339
from kubilitics.errors import Forbidden, KubiliticsError, NotFound
from kubilitics.ports import ActionStore, Clock, KubernetesPort
from kubilitics.services.access import AccessReviews

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "high", "medium", "low")
MAX_ACTIONS = 5  # per investigation
MAX_POD_RESTARTS = 3
AUTO_ACTOR = "kubilitics (autonomy level 3_auto_apply_safe_operations)"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# The token scope that approving an action of each verb (ai.safety.VERBS) needs: the scope of the
# REST request that makes the same change (DELETE /resources needs `delete`; PUT and POST `write`).
VERB_SCOPES = {
    "scale": "write",
    "patch": "write",
    "rollout_restart": "write",
    "rollback": "write",
    "create": "write",
    "delete": "delete",
}


@dataclass
class Plan:
    """One change to propose, before it is checked against the cluster."""

    verb: str
    action_type: str
    target: dict[str, Any]  # kind, name, namespace
    title: str
    description: str
    patch: Any = None
    patch_type: str = "strategic"
    grace_period_seconds: int | None = None
    potential_issues: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ActionSettings:
    approval_seconds: float
    verify_timeout_seconds: float
    verify_settle_seconds: float
    retention_seconds: int
    poll_seconds: float = 0.5
    # An execution unfinished this long after its approval was interrupted (its process died: the
    # approving Lambda's timeout is 29 s); the next decision on the action records what happened.
    execution_limit_seconds: float = 120.0


class ActionService:
    def __init__(
        self,
        *,
        kube: KubernetesPort,
        store: ActionStore,
        # (context name, stored identity) -> the context acting as that identity (None: the service)
        contexts: Callable[[str | None, dict[str, Any] | None], Any],
        # (approver, context name) -> the context as the approver reaches it: their RBAC makes the change
        caller_context: Callable[[Principal, str | None], Any],
        access: AccessReviews | None,
        config: Callable[[], Any],  # () -> ai.configuration.AiConfig (the effective configuration)
        clock: Clock,
        settings: ActionSettings,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._kube = kube
        self._store = store
        self._contexts = contexts
        self._caller_context = caller_context
        self._access = access
        self._config = config
        self._clock = clock
        self._settings = settings
        self._sleep = sleep

    # ---- proposals (the investigation's propose_actions step) ----------------------------------

    def propose(
        self,
        investigation: dict[str, Any],
        diagnosis: dict[str, Any],
        evidence: Evidence | None,
        context_name: str | None,
    ) -> list[dict[str, Any]]:
        """Store the actions the diagnosis supports; their action_id, action_type, status, recommendation."""
        # Proposals read and dry-run as the investigation's requester.
        ctx = self._contexts(context_name, investigation.get("acting_as"))
        config = self._config()
        proposed: list[dict[str, Any]] = []
        seen: set[str] = set()
        for plan, recommendation in self._plans(diagnosis, evidence):
            if len(proposed) >= MAX_ACTIONS:
                break
            try:
                action = self._realize(plan, ctx)
            except KubiliticsError as exc:
                if exc.code == "kubernetes_api_error":
                    raise  # the API server is not answering: the step is retried
                log.info("not proposing %s on %s: %s", plan.action_type, plan.target, exc.message)
                continue
            if action is None:
                continue
            key = f"{plan.verb}:{plan.target}:{action['changes']}"
            if key in seen:
                continue
            seen.add(key)
            now = self._clock.now()
            assessment = self._assess(action, config.safety_policy)
            action.update(
                action_id=new_id("act", now),
                investigation_id=investigation["investigation_id"],
                context=getattr(ctx, "name", context_name),
                requested_by=investigation.get("requested_by"),
                acting_as=investigation.get("acting_as"),
                severity=diagnosis.get("severity") or "medium",
                recommendation=recommendation,
                risk_assessment=assessment.to_dict(),
                status="pending" if assessment.allowed else "blocked",
                execution_status="not_started",
                proposed_at=now,
                approval_expires_at=now + self._settings.approval_seconds,
                expires_at=int(now) + self._settings.retention_seconds,
            )
            self._store.put(action)
            if not assessment.allowed:
                self._audit(action, "blocked", "kubilitics", {"reasons": assessment.blocked_reasons})
            elif assessment.auto_apply and config.investigation_settings.auto_remediation_enabled:
                self._auto_apply(action)
            fresh = self._store.get(action["action_id"]) or action
            proposed.append(
                {
                    "action_id": action["action_id"],
                    "action_type": action["action_type"],
                    "status": fresh["status"],
                    "execution_status": fresh.get("execution_status"),
                    "recommendation": recommendation,
                }
            )
        return proposed

    def _plans(self, diagnosis: dict[str, Any], evidence: Evidence | None) -> list[tuple[Plan, str | None]]:
        plans: list[tuple[Plan, str | None]] = []
        for rec in diagnosis.get("recommendations") or []:
            target, action = rec.get("target"), str(rec.get("action") or "")
            if not target:
                continue
            details = str(rec.get("details") or "")
            if action == "rollback_deployment" and target.get("kind") == "Deployment":
                plans.append(
                    (
                        Plan(
                            "rollback",
                            action,
                            target,
                            f"Roll Deployment {target['name']} back to its previous revision",
                            details,
                            patch_type="json",
                        ),
                        action,
                    )
                )
            elif action in ("rollout_restart", "restart_workload") and target.get("kind") in TEMPLATE_KINDS:
                plans.append((self._restart_plan(target, details), action))
            elif rec.get("patch"):
                patch = rec["patch"]
                verb = "scale" if _only_replicas(patch) else "patch"
                plans.append(
                    (Plan(verb, action, target, _title(action, target), details, patch=patch), action)
                )
        if evidence is not None and (diagnosis.get("root_cause") or {}).get("category") == "node_not_ready":
            plans += [(plan, None) for plan in _pod_restarts_off_dead_nodes(evidence)]
        return plans

    def _restart_plan(self, target: dict[str, Any], details: str) -> Plan:
        stamp = rfc3339(self._clock.now())
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        return Plan(
            "rollout_restart",
            "rollout_restart",
            target,
            f"Restart the pods of {target['kind']} {target['name']} (rolling)",
            details or f"kubectl rollout restart {target['kind'].lower()}/{target['name']}",
            patch=patch,
        )

    def _realize(self, plan: Plan, ctx: Any) -> dict[str, Any] | None:
        """The plan checked against the cluster: its dry run, what it changes, how to undo it."""
        rtype = self._kube.resource_type(ctx, plan.target["kind"])
        ns = plan.target.get("namespace") if rtype.namespaced else None
        live = self._kube.get(ctx, rtype, ns, plan.target["name"])
        live.setdefault("kind", rtype.kind)
        if plan.verb == "rollback":
            previous = self._previous_replica_set(ctx, live)
            if previous is None:
                return None
            plan.patch = [
                {"op": "replace", "path": "/spec/template", "value": remediation.rollback_template(previous)}
            ]
            plan.description += (
                f" (ReplicaSet {meta(previous).get('name')}, revision {remediation.revision(previous)})"
            )
        if plan.verb == "delete":
            self._kube.delete(
                ctx,
                rtype,
                ns,
                plan.target["name"],
                grace_period_seconds=plan.grace_period_seconds,
                dry_run=True,
                uid=meta(live).get("uid"),
            )
            changes: list[dict[str, Any]] = []
            undo = None
        else:
            dry = self._kube.patch(
                ctx, rtype, ns, plan.target["name"], plan.patch, plan.patch_type, dry_run=True
            )
            changes = remediation.object_changes(live, dry)
            if not changes:
                return None  # already as proposed
            # A restart cannot be taken back; undoing its annotation would only restart again.
            undo = None if plan.verb == "rollout_restart" else remediation.undo_patch(changes)
        owner = controller_of(live)
        return {
            "verb": plan.verb,
            "action_type": plan.action_type,
            "title": plan.title,
            "description": plan.description,
            "resource": {
                k: v for k, v in (("kind", rtype.kind), ("namespace", ns), ("name", plan.target["name"])) if v
            },
            "owner_kind": owner.get("kind") if owner else None,
            "changes": remediation.changes_view(changes),
            "change_paths": changes,
            "request": {
                "patch": plan.patch,
                "patch_type": plan.patch_type,
                "grace_period_seconds": plan.grace_period_seconds,
            },
            "undo": undo,
            "extra_issues": plan.potential_issues,
            "baseline": {
                "uid": meta(live).get("uid"),
                "resource_version": meta(live).get("resourceVersion"),
                "generation": meta(live).get("generation"),
                "fingerprint": remediation.fingerprint(live),
            },
        }

    def _previous_replica_set(self, ctx: Any, deployment: dict[str, Any]) -> dict[str, Any] | None:
        rs_type = self._kube.resource_type(ctx, "ReplicaSet")
        selector = selector_string((deployment.get("spec") or {}).get("selector"))
        items = (
            self._kube.list_objects(
                ctx, rs_type, namespace=meta(deployment).get("namespace"), label_selector=selector or None
            ).get("items")
            or []
        )
        return remediation.previous_replica_set(deployment, items)

    def _assess(self, action: dict[str, Any], policy: Any) -> RiskAssessment:
        resource = action["resource"]
        replicas = [c for c in action.get("change_paths") or [] if c["path"] == ["spec", "replicas"]]
        operation = Operation(
            verb=action["verb"],
            action_type=action["action_type"],
            current_replicas=replicas[0]["current"] if replicas else None,
            proposed_replicas=replicas[0]["proposed"] if replicas else None,
            deletion_count=1 if action["verb"] == "delete" else 0,
        )
        ref = ResourceRef(
            resource["kind"], resource["name"], resource.get("namespace"), action.get("owner_kind")
        )
        assessment = assess(operation, ref, policy)
        extra = [i for i in action.get("extra_issues") or [] if i not in assessment.potential_issues]
        if extra:
            assessment = replace(assessment, potential_issues=[*assessment.potential_issues, *extra])
        return assessment

    def _auto_apply(self, action: dict[str, Any]) -> None:
        now = self._clock.now()
        fields = {"approved_by": AUTO_ACTOR, "approved_at": now, "execution_status": "executing"}
        if not self._store.transition(
            action["action_id"], "pending", "approved", fields, open_until_after=now
        ):
            return
        self._audit(
            action, "auto_approved", AUTO_ACTOR, {"risk_level": action["risk_assessment"]["risk_level"]}
        )
        try:
            # Applied without a human: with the rights of the investigation's requester.
            ctx = self._contexts(action.get("context"), action.get("acting_as"))
            self._execute({**action, **fields, "status": "approved"}, ctx, AUTO_ACTOR, verify=True)
        except KubiliticsError as exc:
            log.warning("auto-applied action %s did not run: %s", action["action_id"], exc.message)

    # ---- the approval queue ----------------------------------------------------------------------

    def list_pending(
        self,
        context: str | None,
        *,
        severity: str | None,
        investigation_id: str | None,
        limit: int,
        visible: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = lambda actions: actions,
    ) -> dict[str, Any]:
        """Pending actions of one cluster context, most severe first, then newest; `visible`: those
        the caller may see (their RBAC on each action's resource)."""
        now = self._clock.now()
        items = [
            a
            for a in self._store.list_status("pending")
            if a["approval_expires_at"] > now
            and (severity is None or a.get("severity") == severity)
            and (investigation_id is None or a.get("investigation_id") == investigation_id)
            and a.get("context") == context
        ]
        items = visible(items)
        items.sort(key=lambda a: (SEVERITIES.index(a.get("severity", "low")), -a["proposed_at"]))
        return {"total_count": len(items), "pending_actions": [public_view(a) for a in items[:limit]]}

    def approve(
        self, principal: Principal, action_id: str, notes: str | None, require_verification: bool
    ) -> dict[str, Any]:
        action = self._load(principal, action_id)
        # Approving makes the change: the token needs what the same change needs over REST (a pod
        # restart is a DELETE: `delete`), besides the `write` the route asks of every decision.
        require_scope(principal, required_scope(action))
        now = self._clock.now()
        self._check_open(action, now)
        if action["status"] != "pending":
            raise _decided(self._settle_interrupted(principal, action, now))
        # The approver's own rights make the change: approving is no way around the cluster's RBAC.
        # Their access is asked first, so a refused approver leaves the action pending for another.
        ctx = self._caller_context(principal, action.get("context"))
        if self._access is not None:
            resource = action["resource"]
            verb = "delete" if action["verb"] == "delete" else "patch"
            self._access.require(ctx, verb, resource["kind"], resource.get("namespace"))
        # The policy is asked again: a namespace protected (or an autonomy level lowered) since the
        # proposal wins over an old "allowed".
        assessment = self._assess(action, self._config().safety_policy)
        if not assessment.allowed:
            self._store.transition(action_id, "pending", "blocked", {"risk_assessment": assessment.to_dict()})
            self._audit(action, "blocked", principal.sub, {"reasons": assessment.blocked_reasons})
            raise _blocked(action_id, assessment.blocked_reasons)
        fields = {
            "approved_by": principal.sub,
            "approved_at": now,
            "approval_notes": notes,
            "execution_status": "executing",
        }
        if not self._store.transition(action_id, "pending", "approved", fields, open_until_after=now):
            fresh = self._store.get(action_id) or action
            self._check_open(fresh, now)
            raise _decided(self._settle_interrupted(principal, fresh, now))
        approved = {**action, **fields, "status": "approved"}
        self._audit(approved, "approved", principal.sub, {"notes": notes})
        outcome = self._execute(approved, ctx, principal.sub, verify=require_verification)
        if outcome["execution_status"] == "conflict":
            raise KubiliticsError(
                outcome["message"],
                code="resource_conflict",
                details={"action_id": action_id, **outcome.get("details", {})},
            )
        finished = self._clock.now()
        body = {
            "action_id": action_id,
            "status": "approved",
            "approved_at": rfc3339(now),
            "approved_by": principal.sub,
            "execution_status": outcome["execution_status"],
            "estimated_completion_time": rfc3339(finished),
            "completed_at": rfc3339(finished),
            "message": outcome["message"],
            "resource": action["resource"],
            "changes": action.get("changes") or {},
        }
        for key in ("verification", "rollback", "error"):
            if key in outcome:
                body[key] = outcome[key]
        return body

    def reject(self, principal: Principal, action_id: str, reason: str | None) -> dict[str, Any]:
        action = self._load(principal, action_id)
        now = self._clock.now()
        self._check_open(action, now)
        fields = {"rejected_by": principal.sub, "rejected_at": now, "rejection_reason": reason}
        if not self._store.transition(action_id, "pending", "rejected", fields, open_until_after=now):
            fresh = self._store.get(action_id) or action
            self._check_open(fresh, now)
            raise _decided(self._settle_interrupted(principal, fresh, now))
        self._audit(action, "rejected", principal.sub, {"reason": reason})
        return {
            "action_id": action_id,
            "status": "rejected",
            "rejected_at": rfc3339(now),
            "rejected_by": principal.sub,
            "reason": reason,
        }

    def _load(self, principal: Principal, action_id: str) -> dict[str, Any]:
        action = self._store.get(action_id)
        if action is None:
            raise NotFound(f"Action {action_id} not found", details={"action_id": action_id})
        if not _visible(principal, action):
            raise Forbidden(
                f"This token is limited to cluster {principal.cluster_id!r}",
                details={"token_cluster_id": principal.cluster_id, "action_context": action.get("context")},
            )
        return action

    def _check_open(self, action: dict[str, Any], now: float) -> None:
        if action["status"] == "blocked":
            raise _blocked(action["action_id"], action["risk_assessment"].get("blocked_reasons") or [])
        if action["status"] == "pending" and now >= action["approval_expires_at"]:
            if self._store.transition(action["action_id"], "pending", "expired", {"expired_at": now}):
                self._audit(action, "expired", "kubilitics", {})
            expired_at = rfc3339(action["approval_expires_at"])
            raise KubiliticsError(
                "Action approval window has expired",
                code="action_expired",
                details={"action_id": action["action_id"], "expired_at": expired_at},
                extra={"action_id": action["action_id"], "expired_at": expired_at},
            )
        if action["status"] == "expired":
            expired_at = rfc3339(action["approval_expires_at"])
            raise KubiliticsError(
                "Action approval window has expired",
                code="action_expired",
                details={"action_id": action["action_id"], "expired_at": expired_at},
                extra={"action_id": action["action_id"], "expired_at": expired_at},
            )

    def _settle_interrupted(self, principal: Principal, action: dict[str, Any], now: float) -> dict[str, Any]:
        """An approved action whose execution stopped dead (its process was killed between the
        approval and the end: still `executing` or `applied` past the execution limit) is never run
        again; the cluster tells whether the change was made, and the action and its audit trail
        (`execution_interrupted`, `details.applied`) say which. Returns the action as it is now."""
        status = action.get("execution_status")
        if action.get("status") != "approved" or status not in ("executing", "applied"):
            return action
        if now - float(action.get("approved_at") or now) < self._settings.execution_limit_seconds:
            return action  # still running, as far as anyone can tell
        applied: bool | None = True
        if status == "executing":
            try:
                applied = self._was_applied(self._caller_context(principal, action.get("context")), action)
            except KubiliticsError as exc:
                log.warning(
                    "cannot tell whether interrupted action %s was applied: %s", action["action_id"], exc
                )
                return action  # asked again at the next decision
        if applied is True:
            outcome, message = "succeeded", "Applied; the execution was interrupted before verification"
        elif applied is False:
            outcome, message = "failed", "Not applied: the execution was interrupted before the change"
        else:
            outcome = "failed"
            message = (
                "The execution was interrupted and the target changed since: whether it was applied "
                "is unknown"
            )
        fields = {"execution_status": outcome, "completed_at": now, "execution_message": message}
        # One conditional write: of two decisions that find it at once, one records the outcome.
        if not self._store.transition(
            action["action_id"], "approved", "approved", fields, execution_status=status
        ):
            return self._store.get(action["action_id"]) or action
        self._audit(
            action,
            "execution_interrupted",
            "kubilitics",
            {"applied": applied, "execution_status_found": status, "message": message},
        )
        return {**action, **fields}

    def _was_applied(self, ctx: Any, action: dict[str, Any]) -> bool | None:
        """True: the target shows the change; False: it is as it was proposed; None: neither."""
        resource, baseline = action["resource"], action["baseline"]
        rtype = self._kube.resource_type(ctx, resource["kind"])
        try:
            live = {
                **self._kube.get(ctx, rtype, resource.get("namespace"), resource["name"]),
                "kind": rtype.kind,
            }
        except KubiliticsError as exc:
            if exc.code != "not_found":
                raise
            return True if action["verb"] == "delete" else None
        if meta(live).get("uid") != baseline["uid"]:
            return True if action["verb"] == "delete" else None
        if action["verb"] == "delete":
            return bool(meta(live).get("deletionTimestamp"))
        if remediation.fingerprint(live) == baseline["fingerprint"]:
            return False
        changes = action.get("change_paths") or []
        holds = all(remediation.same(remediation.read_path(live, c["path"]), c["proposed"]) for c in changes)
        return True if changes and holds else None

    # ---- execution ------------------------------------------------------------------------------

    def _execute(self, action: dict[str, Any], ctx: Any, actor: str, *, verify: bool) -> dict[str, Any]:
        try:
            return self._run(action, ctx, actor, verify=verify)
        except KubiliticsError as exc:
            # An API server that stops answering mid-way: the action must not stay "executing".
            return self._failed(action, actor, "the execution was interrupted", exc)
        except Exception as exc:
            self._failed(action, actor, "the execution crashed", KubiliticsError(str(exc)))
            raise

    def _run(self, action: dict[str, Any], ctx: Any, actor: str, *, verify: bool) -> dict[str, Any]:
        action_id = action["action_id"]
        resource = action["resource"]
        rtype = self._kube.resource_type(ctx, resource["kind"])
        ns, name = resource.get("namespace"), resource["name"]
        baseline = action["baseline"]
        request = action["request"]
        before_pods: set[str] = set()
        applied_at = self._clock.now()
        for attempt in range(3):
            try:
                live = self._kube.get(ctx, rtype, ns, name)
            except KubiliticsError as exc:
                if exc.code != "not_found":
                    return self._failed(action, actor, "reading the target failed", exc)
                return self._conflict(action, actor, f"{resource['kind']} {name} no longer exists", {})
            live.setdefault("kind", rtype.kind)
            if (
                meta(live).get("uid") != baseline["uid"]
                or remediation.fingerprint(live) != baseline["fingerprint"]
            ):
                return self._conflict(
                    action,
                    actor,
                    f"{resource['kind']} {name} changed since the action was proposed; investigate again",
                    {
                        "proposed_resource_version": baseline["resource_version"],
                        "current_resource_version": meta(live).get("resourceVersion"),
                    },
                )
            rv = meta(live).get("resourceVersion")
            before_pods = self._pod_uids(ctx, live)
            try:
                if action["verb"] == "delete":
                    self._kube.delete(
                        ctx,
                        rtype,
                        ns,
                        name,
                        grace_period_seconds=request.get("grace_period_seconds"),
                        dry_run=True,
                        uid=baseline["uid"],
                    )
                    self._audit(action, "dry_run", actor, {"result": "accepted"})
                    applied_at = self._clock.now()
                    # Only the object just checked: one recreated under its name meanwhile (a
                    # StatefulSet's pod) fails the uid precondition with 409 and stays.
                    self._kube.delete(
                        ctx,
                        rtype,
                        ns,
                        name,
                        grace_period_seconds=request.get("grace_period_seconds"),
                        uid=baseline["uid"],
                    )
                else:
                    body = _with_precondition(request["patch"], request["patch_type"], rv)
                    self._kube.patch(ctx, rtype, ns, name, body, request["patch_type"], dry_run=True)
                    self._audit(action, "dry_run", actor, {"result": "accepted", "resource_version": rv})
                    applied_at = self._clock.now()
                    self._kube.patch(ctx, rtype, ns, name, body, request["patch_type"])
            except KubiliticsError as exc:
                if exc.code == "resource_conflict" and action["verb"] == "delete":
                    # The uid precondition failed: the name is another object's now; it is not touched.
                    return self._conflict(
                        action,
                        actor,
                        f"{resource['kind']} {name} was replaced by a new object of the same name since "
                        "the action was proposed; it was not deleted; investigate again",
                        {"proposed_uid": baseline["uid"], "api_server_message": exc.message},
                    )
                if exc.code == "resource_conflict" and attempt < 2:
                    continue  # the object moved on (a status update): read it again and re-check
                return self._failed(action, actor, "the API server refused the change", exc)
            break
        self._store.update(action_id, {"execution_status": "applied", "applied_at": applied_at})
        self._audit(action, "applied", actor, {"changes": action.get("changes") or {}})
        if not verify:
            return self._finish(action, actor, "succeeded", "Applied; verification was not requested", {})
        verification = self._verify(ctx, rtype, action, before_pods, applied_at)
        if verification["verified"]:
            self._audit(action, "verified", actor, verification)
            return self._finish(
                action,
                actor,
                "succeeded",
                f"Applied and verified: {verification['message']}",
                {"verification": verification},
            )
        self._audit(action, "verification_failed", actor, verification)
        return self._roll_back(ctx, rtype, action, actor, verification)

    def _verify(
        self, ctx: Any, rtype: Any, action: dict[str, Any], before_pods: set[str], applied_at: float
    ) -> dict[str, Any]:
        resource = action["resource"]
        ns, name = resource.get("namespace"), resource["name"]
        deadline = applied_at + self._settings.verify_timeout_seconds
        checks: list[str] = []
        if action["verb"] == "delete":
            while True:
                try:
                    pod = self._kube.get(ctx, rtype, ns, name)
                except KubiliticsError as exc:
                    if exc.code == "not_found":
                        return _verdict(True, f"{resource['kind']} {name} is gone", checks)
                    raise
                if meta(pod).get("uid") != action["baseline"]["uid"]:
                    return _verdict(True, f"{resource['kind']} {name} was replaced", checks)
                if meta(pod).get("deletionTimestamp"):
                    return _verdict(True, f"{resource['kind']} {name} is terminating", checks)
                if self._clock.now() >= deadline:
                    return _verdict(False, f"{resource['kind']} {name} is still there", checks)
                self._sleep(self._settings.poll_seconds)
        obj = {**self._kube.get(ctx, rtype, ns, name), "kind": rtype.kind}
        for change in action.get("change_paths") or []:
            actual = remediation.read_path(obj, change["path"])
            if not remediation.same(actual, change["proposed"]):
                where = remediation.path_text(change["path"])
                return _verdict(False, f"{where} is {actual!r}, not {change['proposed']!r}", checks)
        checks.append("the changed fields hold the proposed values")
        if rtype.kind not in (*TEMPLATE_KINDS, "Pod"):
            return _verdict(True, "the change is in place", checks)
        complete_since: float | None = None
        state, why = "pending", ""
        restarts = _restart_counts(obj) if rtype.kind == "Pod" else {}
        while True:
            now = self._clock.now()
            if rtype.kind == "Pod":
                failure = _pod_getting_worse(obj, restarts)
                state, why = ("complete", "the pod runs") if failure is None else ("failed", failure)
            else:
                state, why = remediation.rollout_state(obj)
                if state != "failed":
                    failure = self._new_pod_failure(ctx, obj, before_pods)
                    if failure:
                        state, why = "failed", failure
            if state == "failed":
                return _verdict(False, why, checks)
            if state == "complete":
                complete_since = complete_since or now
                if now - complete_since >= self._settings.verify_settle_seconds:
                    checks.append(f"healthy for {self._settings.verify_settle_seconds:g} s after the change")
                    return _verdict(True, why, checks)
            else:
                complete_since = None
            if now >= deadline:
                if state in ("complete", "progressing"):
                    checks.append("no failure within the verification window")
                    return _verdict(True, f"progressing: {why}", checks)
                return _verdict(False, f"{why} after {self._settings.verify_timeout_seconds:g} s", checks)
            self._sleep(self._settings.poll_seconds)
            obj = {**self._kube.get(ctx, rtype, ns, name), "kind": rtype.kind}

    def _new_pod_failure(self, ctx: Any, workload: dict[str, Any], before: set[str]) -> str | None:
        for pod in self._pods(ctx, workload):
            if meta(pod).get("uid") in before:
                continue
            failure = remediation.pod_failure(pod)
            if failure:
                return failure
        return None

    def _pods(self, ctx: Any, workload: dict[str, Any]) -> list[dict[str, Any]]:
        selector = selector_string((workload.get("spec") or {}).get("selector"))
        if not selector:
            return []
        pod_type = self._kube.resource_type(ctx, "Pod")
        result = self._kube.list_objects(
            ctx, pod_type, namespace=meta(workload).get("namespace"), label_selector=selector
        )
        return list(result.get("items") or [])

    def _pod_uids(self, ctx: Any, workload: dict[str, Any]) -> set[str]:
        if workload.get("kind") not in TEMPLATE_KINDS:
            return set()
        return {str(meta(p).get("uid")) for p in self._pods(ctx, workload)}

    def _roll_back(
        self, ctx: Any, rtype: Any, action: dict[str, Any], actor: str, verification: dict[str, Any]
    ) -> dict[str, Any]:
        resource = action["resource"]
        undo = action.get("undo")
        if not undo:
            return self._finish(
                action,
                actor,
                "failed",
                f"Verification failed ({verification['message']}); this change cannot be undone "
                "automatically",
                {"verification": verification},
            )
        try:
            self._kube.patch(ctx, rtype, resource.get("namespace"), resource["name"], undo, "strategic")
        except KubiliticsError as exc:
            self._audit(action, "rollback_failed", actor, {"error": exc.code, "message": exc.message})
            return self._finish(
                action,
                actor,
                "failed",
                f"Verification failed ({verification['message']}) and the rollback failed: {exc.message}",
                {"verification": verification, "rollback": {"succeeded": False, "error": exc.message}},
            )
        restored = {path: {"restored": c["current"]} for path, c in (action.get("changes") or {}).items()}
        self._audit(action, "rolled_back", actor, {"restored": restored})
        return self._finish(
            action,
            actor,
            "rolled_back",
            f"Verification failed ({verification['message']}); the change was rolled back",
            {"verification": verification, "rollback": {"succeeded": True, "restored": restored}},
        )

    def _finish(
        self, action: dict[str, Any], actor: str, status: str, message: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        now = self._clock.now()
        self._store.update(
            action["action_id"],
            {"execution_status": status, "completed_at": now, "execution_message": message, **extra},
        )
        return {"execution_status": status, "message": message, **extra}

    def _failed(self, action: dict[str, Any], actor: str, what: str, exc: KubiliticsError) -> dict[str, Any]:
        error = {"error": exc.code, "message": exc.message, "details": exc.details}
        self._audit(action, "execution_failed", actor, error)
        return self._finish(action, actor, "failed", f"Not applied: {what}: {exc.message}", {"error": error})

    def _conflict(
        self, action: dict[str, Any], actor: str, message: str, details: dict[str, Any]
    ) -> dict[str, Any]:
        # The proposal was made for an object that is no longer there as it was: it cannot be approved
        # again; a new investigation proposes afresh.
        self._store.transition(
            action["action_id"], "approved", "superseded", {"superseded_at": self._clock.now()}
        )
        self._audit(action, "conflict", actor, {"message": message, **details})
        self._finish(action, actor, "conflict", message, {})
        return {"execution_status": "conflict", "message": message, "details": details}

    def _audit(self, action: dict[str, Any], event: str, actor: str, details: dict[str, Any]) -> None:
        now = self._clock.now()
        self._store.add_audit(
            action["action_id"],
            {
                "at": now,
                "time": rfc3339(now),
                "event": event,
                "actor": actor,
                "action_id": action["action_id"],
                "investigation_id": action.get("investigation_id"),
                "action_type": action.get("action_type"),
                "resource": action.get("resource"),
                "context": action.get("context"),
                "details": details,
            },
            int(now) + self._settings.retention_seconds,
        )

    def audit_trail(self, action_id: str) -> list[dict[str, Any]]:
        return sorted(self._store.audit(action_id), key=lambda r: r["at"])


# ---- helpers ---------------------------------------------------------------------------------------


def public_view(action: dict[str, Any]) -> dict[str, Any]:
    view = {
        "action_id": action["action_id"],
        "investigation_id": action.get("investigation_id"),
        "severity": action.get("severity"),
        "action_type": action.get("action_type"),
        "title": action.get("title"),
        "description": action.get("description"),
        "resource": action.get("resource"),
        "changes": action.get("changes") or {},
        "risk_assessment": action.get("risk_assessment"),
        "proposed_at": rfc3339(action["proposed_at"]),
        "expires_at": rfc3339(action["approval_expires_at"]),
        "status": action.get("status"),
    }
    if not view["changes"]:
        view.pop("changes")  # a pod restart changes no field (as the reference's restart_pod example)
    return view


def required_scope(action: dict[str, Any]) -> str:
    """The scope approving this action needs (VERB_SCOPES; a verb not listed there needs `admin`)."""
    return VERB_SCOPES.get(str(action.get("verb")), "admin")


def _visible(principal: Principal, action: dict[str, Any]) -> bool:
    return not principal.cluster_id or action.get("context") == principal.cluster_id


def _blocked(action_id: str, reasons: list[str]) -> KubiliticsError:
    return Forbidden(
        "The safety policy does not allow this action to be executed",
        details={"action_id": action_id, "blocked_reasons": reasons},
    )


def _decided(action: dict[str, Any]) -> KubiliticsError:
    return KubiliticsError(
        f"Action {action['action_id']} is already {action['status']}",
        code="resource_conflict",
        details={
            "action_id": action["action_id"],
            "status": action["status"],
            "execution_status": action.get("execution_status"),
            "decided_by": action.get("approved_by") or action.get("rejected_by"),
            # what the execution came to (an interrupted one: whether the change was made)
            **({"execution_message": action["execution_message"]} if action.get("execution_message") else {}),
        },
    )


def _verdict(verified: bool, message: str, checks: list[str]) -> dict[str, Any]:
    return {"verified": verified, "message": message, "checks": list(checks)}


def _with_precondition(patch: Any, patch_type: str, resource_version: str | None) -> Any:
    """The patch, applied only to the resourceVersion just checked (409 if it moved meanwhile)."""
    if not resource_version:
        return patch
    if patch_type == "json":
        return [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}, *patch]
    body = copy.deepcopy(patch)
    body.setdefault("metadata", {})["resourceVersion"] = resource_version
    return body


def _only_replicas(patch: Any) -> bool:
    return isinstance(patch, dict) and set(patch) == {"spec"} and set(patch["spec"] or {}) == {"replicas"}


def _title(action: str, target: dict[str, Any]) -> str:
    words = action.replace("_", " ")
    return f"{words[:1].upper()}{words[1:]} of {target['kind']} {target['name']}"


def _restart_counts(pod: dict[str, Any]) -> dict[str, int]:
    return {
        str(s.get("name")): int(s.get("restartCount") or 0)
        for s in (pod.get("status") or {}).get("containerStatuses") or []
    }


def _pod_getting_worse(pod: dict[str, Any], restarts: dict[str, int]) -> str | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        name = str(status.get("name"))
        reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
        if reason in remediation.FAILING_WAITING:
            return f"container {name} is {reason}"
        if int(status.get("restartCount") or 0) > restarts.get(name, 0):
            return f"container {name} restarted after the change"
    return None


def _pod_restarts_off_dead_nodes(ev: Evidence) -> list[Plan]:
    """Pods stranded on a node that stopped reporting: deleting them lets their controller place
    replacements elsewhere (the kubelet is gone, so only a zero grace period removes them)."""
    dead = {
        str(meta(n).get("name"))
        for n in ev.of_kind("Node")
        if (node_condition(n, "Ready") or {}).get("status") in ("False", "Unknown")
    }
    plans = []
    for pod in ev.pods:
        owner = controller_of(pod)
        if pod_node(pod) not in dead or not owner or meta(pod).get("deletionTimestamp"):
            continue
        plans.append(
            Plan(
                "delete",
                "restart_pod",
                {"kind": "Pod", "namespace": meta(pod).get("namespace"), "name": meta(pod).get("name")},
                f"Restart pod {meta(pod).get('name')} away from node {pod_node(pod)}",
                f"Node {pod_node(pod)} stopped reporting; delete pod {meta(pod).get('name')} so that its "
                f"{owner.get('kind')} {owner.get('name')} creates a replacement on a node that works.",
                grace_period_seconds=0,
                potential_issues=["Force deletion: the node's kubelet cannot confirm the container stopped"],
            )
        )
    return plans[:MAX_POD_RESTARTS]
