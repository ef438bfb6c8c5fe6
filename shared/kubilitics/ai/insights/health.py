"""Health insights: the analyzers' diagnosis of every workload that is failing right now.

`failing_targets` picks, from the snapshot alone, what is visibly in trouble (containers waiting with
an error, pods stuck Pending or not Ready past the start-up grace, failed Jobs, stalled rollouts,
nodes that are not Ready), grouped by top controller. The scanner gathers evidence for each and runs
`diagnose`; `detection` turns the diagnosis into an insight scoped to that workload, with the root
cause category as the rule.
"""

from __future__ import annotations

from typing import Any

from kubilitics.ai.insights.base import Detection, ScanPolicy, Severity, Snapshot, WorkloadRef, in_scope
from kubilitics.ai.kube_json import condition, containers, meta, name_of, pod_is_ready, pod_phase
from kubilitics.ai.taxonomy import CATEGORIES, HEALTHY, UNKNOWN

CATEGORY = "health"
ERROR_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RunContainerError",
        "ContainerCannotRun",
        "StartError",
    }
)
_SEVERITY: dict[str, Severity] = {
    "critical": "critical",
    "high": "critical",
    "medium": "warning",
    "low": "info",
}


def failing_targets(snapshot: Snapshot, policy: ScanPolicy) -> list[tuple[WorkloadRef, str]]:
    """(what to diagnose, why it was picked), most urgent first, at most `max_health_targets`."""
    found: dict[WorkloadRef, str] = {}
    for pod in snapshot.live_pods():
        ns = meta(pod).get("namespace")
        if not in_scope(snapshot, policy, ns):
            continue
        why = _pod_trouble(snapshot, policy, pod)
        if why:
            found.setdefault(snapshot.owner_of(pod), why)
    for job in snapshot.jobs:
        ns = meta(job).get("namespace")
        failed = condition(job, "Failed")
        if in_scope(snapshot, policy, ns) and failed and failed.get("status") == "True":
            # A CronJob's failed Job is diagnosed through the CronJob (the thing a user owns).
            ref = snapshot.owner_of(job) if meta(job).get("ownerReferences") else None
            target = ref if ref and ref.kind == "CronJob" else WorkloadRef("Job", ns, name_of(job))
            found.setdefault(target, f"Job {name_of(job)} failed: {failed.get('reason')}")
    for deployment in snapshot.deployments:
        ns = meta(deployment).get("namespace")
        progressing = condition(deployment, "Progressing")
        if (
            in_scope(snapshot, policy, ns)
            and progressing
            and progressing.get("status") == "False"
            and progressing.get("reason") == "ProgressDeadlineExceeded"
        ):
            found.setdefault(WorkloadRef("Deployment", ns, name_of(deployment)), "rollout stalled")
    if snapshot.full:
        for node in snapshot.nodes:
            ready = condition(node, "Ready")
            if not ready or ready.get("status") != "True":
                found.setdefault(WorkloadRef("Node", None, name_of(node)), "node not Ready")
    ranked = sorted(found.items(), key=lambda kv: (kv[0].kind != "Node", str(kv[0])))
    return ranked[: policy.max_health_targets]


def _pod_trouble(snapshot: Snapshot, policy: ScanPolicy, pod: dict[str, Any]) -> str | None:
    for view in containers(pod):
        reason = view.waiting.get("reason")
        if reason in ERROR_WAITING:
            return f"container {view.name}: {reason}"
        if (view.last_terminated or {}).get("reason") == "OOMKilled" and view.restarts > 0:
            return f"container {view.name}: OOMKilled"
    if snapshot.age(pod) < policy.startup_grace_seconds:
        return None
    phase = pod_phase(pod)
    if phase == "Pending":
        return "Pending"
    if phase == "Running" and not pod_is_ready(pod):
        return "not Ready"
    return None


def detection(target: WorkloadRef, diagnosis: Any) -> Detection | None:
    """The insight for one diagnosed workload; None when it turned out healthy or still starting."""
    root = diagnosis.root_cause
    if root.category == HEALTHY or (root.category == UNKNOWN and not diagnosis.problems):
        return None
    steps = [str(r.get("details") or r.get("action")) for r in diagnosis.recommendations] or [
        "Start an investigation of the workload (POST /api/v1/ai/investigate)"
    ]
    first = diagnosis.recommendations[0]["action"] if diagnosis.recommendations else "investigate"
    what = CATEGORIES.get(root.category, root.category).rstrip(".")
    subjects = [f.subject for f in diagnosis.findings if f.category == root.category]
    resources = list(dict.fromkeys([str(target), *(_label(s) for s in subjects)]))
    return Detection(
        category=CATEGORY,
        rule=root.category,
        scope=f"workload/{target}",
        namespace=target.namespace,
        severity=_SEVERITY.get(diagnosis.severity, "warning") if root.category != UNKNOWN else "warning",
        title=f"{target.kind} {target.name}: {what}"
        if root.category != UNKNOWN
        else f"{target.kind} {target.name} has problems the rules cannot explain",
        description=root.summary,
        resources=resources,
        recommendation={
            "action": str(first).replace("_", " ").capitalize(),
            "steps": steps,
            "estimated_effort_hours": 0.5 if root.category != UNKNOWN else 1.0,
            "risk_level": "low",
        },
        details=[{"resource": _label(c.object), "detail": c.describe()} for c in diagnosis.evidence],
        extra={"root_cause": root.to_dict()},
    )


def _label(ref: Any) -> str:
    """An ObjectRef as the insights name resources: namespace/Kind/name."""
    return f"{ref.namespace}/{ref.kind}/{ref.name}" if ref.namespace else f"{ref.kind}/{ref.name}"
