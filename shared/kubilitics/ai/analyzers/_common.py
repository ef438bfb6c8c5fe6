"""Helpers the analyzers share: finding the workload behind a pod, patches of its pod template,
container events, log lines worth quoting, and how bad an outage is. No I/O."""

from __future__ import annotations

import re
from typing import Any

from kubilitics.ai.evidence import Evidence, LogTail, ObjectRef
from kubilitics.ai.kube_json import (
    ContainerView,
    containers,
    controller_of,
    event_field_container,
    meta,
    namespace_of,
    pod_finished,
    pod_is_ready,
)
from kubilitics.ai.taxonomy import Severity

# Controllers whose pod template is the place to change a pod's spec, outermost last.
TEMPLATE_KINDS = ("ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")

# Log lines that say what went wrong, in the order people look for them.
ERROR_LINE = re.compile(
    r"(panic:|fatal|exception|traceback|error|err=|failed|failure|refused|denied|forbidden|cannot|can't|"
    r"could not|unable to|not found|no such|invalid|expired|killed|timeout|timed out)",
    re.IGNORECASE,
)


def workload_of(ev: Evidence, obj: dict[str, Any]) -> dict[str, Any]:
    """The outermost controller in the evidence that owns `obj` (Pod -> ReplicaSet -> Deployment)."""
    current = obj
    for _ in range(4):
        ref = controller_of(current)
        if not ref:
            break
        owner = ev.get(str(ref.get("kind")), str(ref.get("name")), namespace_of(current))
        if owner is None or owner.get("kind") not in TEMPLATE_KINDS:
            break
        current = owner
    return current


def workload_ref(ev: Evidence, obj: dict[str, Any]) -> ObjectRef:
    return ObjectRef.of(workload_of(ev, obj))


def describe(ref: ObjectRef) -> str:
    """'Deployment web' (the namespace is the investigation's, no need to repeat it)."""
    return f"{ref.kind} {ref.name}"


def on_pod(wref: ObjectRef, pod: dict[str, Any]) -> str:
    """'Deployment web (pod web-7d9c-x2)', or just 'Pod web' when the pod is the workload."""
    name = str(meta(pod).get("name") or "")
    return describe(wref) if wref.kind == "Pod" else f"{describe(wref)} (pod {name})"


def template_patch(kind: str, pod_spec_patch: dict[str, Any]) -> dict[str, Any]:
    """A strategic-merge patch that applies `pod_spec_patch` to the pods of a `kind` object."""
    if kind == "Pod":
        return {"spec": pod_spec_patch}
    if kind == "CronJob":
        return {"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec_patch}}}}}
    return {"spec": {"template": {"spec": pod_spec_patch}}}


def container_patch(kind: str, container: ContainerView, fields: dict[str, Any]) -> dict[str, Any]:
    key = "initContainers" if container.init else "containers"
    return template_patch(kind, {key: [{"name": container.name, **fields}]})


def container_events(
    ev: Evidence, pod: dict[str, Any], container: str | None, *, reason: str | None = None
) -> list[dict[str, Any]]:
    """Events about a pod (and, when `container` is given, about that container or the whole pod)."""
    out = []
    for event in ev.events_for(pod, reason=reason):
        which = event_field_container(event)
        if container is None or which in (None, container):
            out.append(event)
    return out


def is_recent(ev: Evidence, event: dict[str, Any], seconds: float) -> bool:
    age = ev.event_age(event)
    return age is None or age <= seconds


def error_lines(tail: LogTail, limit: int = 3) -> list[str]:
    """The lines of a log tail that carry the error (the last ones, in order), else the last line."""
    lines = [line for line in tail.lines if line.strip()]
    hits = [line for line in lines if ERROR_LINE.search(line)]
    if hits:
        return hits[-limit:] if len(hits) > limit else hits
    return lines[-1:]


def crash_logs(ev: Evidence, pod: dict[str, Any], container: ContainerView) -> list[LogTail]:
    """The logs of the run that failed: the previous run while the container restarts, else the current."""
    tails = ev.logs_for(str(meta(pod).get("name")), namespace_of(pod), container.name)
    tails = [t for t in tails if t.lines]
    if container.terminated:
        tails.sort(key=lambda t: t.previous)  # the current run is the one that just ended
    else:
        tails.sort(key=lambda t: not t.previous)
    return tails


def scope_pods(ev: Evidence) -> list[dict[str, Any]]:
    return ev.pods


def outage_severity(ev: Evidence, pods: list[dict[str, Any]] | None = None) -> Severity:
    """critical when no pod of the target serves, high when some do."""
    pods = ev.pods if pods is None else pods
    live = [p for p in pods if not pod_finished(p)]
    if not live:
        return "high"
    ready = sum(1 for p in live if pod_is_ready(p))
    return "critical" if ready == 0 else "high"


def restarting(container: ContainerView) -> bool:
    return container.restarts > 0 or container.waiting.get("reason") == "CrashLoopBackOff"


def running_containers(pod: dict[str, Any]) -> list[ContainerView]:
    return [c for c in containers(pod) if c.running]


def quote(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
