"""Health signals independent of any cause: is anything wrong, and is anything still on its way?

The analyzers explain problems; this module only notices them, so that `diagnose` answers `healthy`
only when nothing at all is wrong (no warning event, no pod that is not ready, no failed Job, ...)
and `unknown` when something is wrong that no analyzer explains. "In progress" (pods being created,
a rollout within its deadline, a Job retrying) is neither healthy nor failed yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, cite_event, cite_field
from kubilitics.ai.kube_json import (
    condition,
    containers,
    controller_of,
    event_field_container,
    labels_of,
    map_selector_matches,
    meta,
    name_of,
    namespace_of,
    parse_time,
    pod_is_ready,
    pod_node,
    pod_phase,
)

RECENT_WARNING_SECONDS = 600  # a warning older than this on an object that is fine now is history
STARTUP_GRACE_SECONDS = 90  # how long a new pod may be Pending / not Ready before it counts as a problem


@dataclass
class Signal:
    text: str
    citation: Citation | None = None


@dataclass
class HealthSignals:
    problems: list[Signal] = field(default_factory=list)
    in_progress: list[Signal] = field(default_factory=list)
    retrying: bool = False  # a Job with failed pods and retries left: the outcome is not decided yet
    ready_pods: int = 0
    live_pods: int = 0


def health_signals(ev: Evidence) -> HealthSignals:
    s = HealthSignals()
    now = ev.collected_at
    if ev.target_object is None:
        s.problems.append(Signal(f"{ev.target} does not exist"))
        return s
    for pod in ev.pods:
        _pod(ev, pod, now, s)
    for obj in ev.objects.values():
        kind = obj.get("kind")
        if kind == "Deployment":
            _deployment(obj, s)
        elif kind in ("StatefulSet", "ReplicaSet"):
            _replicated(ev, obj, s)
        elif kind == "Job":
            _job(ev, obj, s)
        elif kind == "Node" and (
            ev.target.kind == "Node" or any(pod_node(p) == name_of(obj) for p in ev.pods)
        ):
            _node(obj, s)
        elif kind == "Service":
            _service(ev, obj, s)
        elif kind == "PersistentVolumeClaim":
            _claim(obj, now, s)
        elif kind == "HorizontalPodAutoscaler":
            _hpa(obj, s)
    if ev.target.kind == "Node":
        for pod in ev.nearby_pods:
            if (pod.get("status") or {}).get("reason") == "Evicted":
                s.problems.append(Signal(f"pod {name_of(pod)} on the node was evicted"))
    for event in ev.events:
        if event.get("type") != "Warning":
            continue
        age = ev.event_age(event)
        if age is not None and age > RECENT_WARNING_SECONDS:
            continue
        if not _about_scope(ev, event) or _resolved(ev, event):
            continue
        s.problems.append(
            Signal(
                f"warning {event.get('reason')} on {ObjectRef.involved_in(event)}: "
                f"{str(event.get('message') or '')[:160]}",
                cite_event(event),
            )
        )
    return s


def _about_scope(ev: Evidence, event: dict[str, Any]) -> bool:
    """Warnings about the target, its owners, its pods, and its pods' nodes (not every node listed)."""
    ref = ObjectRef.involved_in(event)
    if ref.kind == "Node":
        return ev.target.kind == "Node" or any(pod_node(p) == ref.name for p in ev.pods)
    if ref.kind == "Pod":
        pod = ev.get("Pod", ref.name, ref.namespace)
        uid = (event.get("involvedObject") or {}).get("uid")
        return pod is not None and (not uid or meta(pod).get("uid") == uid)
    return ref.key in ev.objects


def _resolved(ev: Evidence, event: dict[str, Any]) -> bool:
    """A warning that the current state has since answered (a pod scheduled after FailedScheduling,
    a container running and ready after pull errors or failed probes, a ReplicaSet complete again)."""
    ref = ObjectRef.involved_in(event)
    reason = event.get("reason")
    obj = ev.get_ref(ref)
    if obj is None:
        return False
    if ref.kind == "Pod":
        if reason == "FailedScheduling":
            return bool(pod_node(obj))
        which = event_field_container(event)
        views = [c for c in containers(obj) if which is None or c.name == which]
        if reason == "FailedMount":
            return bool(views) and all(c.running or c.terminated for c in views)
        return which is not None and bool(views) and all(c.running and (c.ready or c.init) for c in views)
    if reason == "FailedCreate" and ref.kind in ("ReplicaSet", "StatefulSet", "Job"):
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if ref.kind == "Job":
            return int(status.get("active") or 0) >= int(spec.get("parallelism", 1)) or bool(
                (condition(obj, "Complete") or {}).get("status") == "True"
            )
        return int(status.get("replicas") or 0) >= int(spec.get("replicas", 1))
    if ref.kind == "HorizontalPodAutoscaler":
        active = condition(obj, "ScalingActive")
        return bool(active and active.get("status") == "True")
    return False


def _age(obj: dict[str, Any], now: float) -> float:
    created = parse_time(meta(obj).get("creationTimestamp"))
    return now - created if created else 1e9


def _pod(ev: Evidence, pod: dict[str, Any], now: float, s: HealthSignals) -> None:
    name = name_of(pod)
    phase = pod_phase(pod)
    status = pod.get("status") or {}
    if phase == "Succeeded":
        return
    if phase == "Failed":
        owner = controller_of(pod) or {}
        job = ev.get("Job", str(owner.get("name")), namespace_of(pod)) if owner.get("kind") == "Job" else None
        complete = condition(job, "Complete") if job else None
        if not (complete and complete.get("status") == "True"):
            why = status.get("reason") or "a container failed"
            s.problems.append(Signal(f"pod {name} failed ({why})", cite_field(pod, "status.phase", "Failed")))
        return
    s.live_pods += 1
    if pod_is_ready(pod):
        s.ready_pods += 1
    if phase == "Unknown":
        s.problems.append(Signal(f"pod {name} is in phase Unknown", cite_field(pod, "status.phase", phase)))
    young = _age(pod, now) < STARTUP_GRACE_SECONDS
    if not pod_node(pod):
        scheduled = condition(pod, "PodScheduled")
        if scheduled and scheduled.get("reason") == "Unschedulable":
            s.problems.append(
                Signal(
                    f"pod {name} cannot be scheduled",
                    cite_field(pod, "status.conditions[PodScheduled].message", scheduled.get("message")),
                )
            )
        elif young:
            s.in_progress.append(Signal(f"pod {name} is waiting to be scheduled"))
        else:
            s.problems.append(Signal(f"pod {name} has not been scheduled"))
        return
    if not status.get("containerStatuses") and phase == "Pending":
        # Bound to a node that has not reported the containers yet.
        (s.in_progress if young else s.problems).append(
            Signal(f"pod {name} is waiting for its node to start it")
        )
        return
    for c in containers(pod):
        reason = c.waiting.get("reason")
        if reason in ("ContainerCreating", "PodInitializing"):
            (s.in_progress if young else s.problems).append(
                Signal(f"container {c.name} of pod {name} is {reason}")
            )
        elif reason:
            s.problems.append(
                Signal(
                    f"container {c.name} of pod {name} is waiting: {reason}",
                    cite_field(pod, f"{c.status_path}.state.waiting.reason", reason),
                )
            )
        if c.terminated and c.terminated.get("exitCode"):
            s.problems.append(
                Signal(f"container {c.name} of pod {name} exited with code {c.terminated.get('exitCode')}")
            )
        last = c.last_terminated
        finished = parse_time(last.get("finishedAt"))
        if (
            last
            and (last.get("exitCode") or last.get("reason") == "OOMKilled")
            and (finished is None or now - finished < RECENT_WARNING_SECONDS)
        ):
            s.problems.append(
                Signal(
                    f"container {c.name} of pod {name} restarted after exit code "
                    f"{last.get('exitCode')} ({last.get('reason')})"
                )
            )
        if c.running and not c.ready and not c.init:
            started = parse_time(c.running.get("startedAt"))
            if started is not None and now - started < STARTUP_GRACE_SECONDS + _probe_delay(c.spec):
                s.in_progress.append(Signal(f"container {c.name} of pod {name} is starting (not Ready yet)"))
            else:
                s.problems.append(
                    Signal(
                        f"container {c.name} of pod {name} is running but not Ready",
                        cite_field(pod, f"{c.status_path}.ready", False),
                    )
                )
    ready = condition(pod, "Ready")
    if (
        ready
        and ready.get("status") != "True"
        and phase == "Running"
        and ready.get("reason")
        not in (
            "ContainersNotReady",
            "PodCompleted",
        )
    ):
        s.problems.append(
            Signal(
                f"pod {name} is not Ready ({ready.get('reason') or 'no reason given'})",
                cite_field(pod, "status.conditions[Ready].status", ready.get("status")),
            )
        )


def _probe_delay(cspec: dict[str, Any]) -> float:
    probe = cspec.get("readinessProbe") or cspec.get("startupProbe") or {}
    return float(probe.get("initialDelaySeconds") or 0) + float(probe.get("periodSeconds") or 10) * float(
        probe.get("failureThreshold") or 3
    )


def _deployment(dep: dict[str, Any], s: HealthSignals) -> None:
    name = name_of(dep)
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    progressing = condition(dep, "Progressing")
    if progressing and progressing.get("status") == "False":
        s.problems.append(
            Signal(
                f"Deployment {name} stopped progressing ({progressing.get('reason')})",
                cite_field(dep, "status.conditions[Progressing]", progressing.get("reason")),
            )
        )
        return
    failure = condition(dep, "ReplicaFailure")
    if failure and failure.get("status") == "True":
        s.problems.append(
            Signal(
                f"Deployment {name} cannot create pods: {failure.get('message')}",
                cite_field(dep, "status.conditions[ReplicaFailure]", failure.get("message")),
            )
        )
    want = int(spec.get("replicas", 1))
    if spec.get("paused"):
        if int(status.get("availableReplicas") or 0) < want:
            s.problems.append(Signal(f"Deployment {name} is paused short of its replicas"))
        return
    done = progressing and progressing.get("reason") == "NewReplicaSetAvailable"
    behind = (
        int(status.get("updatedReplicas") or 0) < want
        or int(status.get("availableReplicas") or 0) < want
        or int(status.get("replicas") or 0) > want
        or int(status.get("observedGeneration") or 0) < int(meta(dep).get("generation") or 0)
    )
    if behind or not done:
        s.in_progress.append(
            Signal(
                f"Deployment {name} is rolling out ({status.get('availableReplicas', 0)}/{want} available)"
            )
        )


def _replicated(ev: Evidence, obj: dict[str, Any], s: HealthSignals) -> None:
    if obj.get("kind") == "ReplicaSet" and controller_of(obj):
        return  # a Deployment's ReplicaSet: the Deployment speaks for it
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = int(spec.get("replicas", 1))
    if int(status.get("readyReplicas") or 0) < want:
        s.in_progress.append(
            Signal(f"{obj.get('kind')} {name_of(obj)} has {status.get('readyReplicas', 0)}/{want} ready")
        )


def _job(ev: Evidence, job: dict[str, Any], s: HealthSignals) -> None:
    name = name_of(job)
    failed = condition(job, "Failed")
    if failed and failed.get("status") == "True":
        s.problems.append(
            Signal(
                f"Job {name} failed ({failed.get('reason')})",
                cite_field(job, "status.conditions[Failed]", failed.get("reason")),
            )
        )
        return
    complete = condition(job, "Complete")
    if complete and complete.get("status") == "True":
        return
    status = job.get("status") or {}
    if int(status.get("failed") or 0) > 0:
        s.retrying = True
        s.in_progress.append(Signal(f"Job {name} is retrying after {status.get('failed')} failed pod(s)"))
    elif not any((controller_of(p) or {}).get("uid") == meta(job).get("uid") for p in ev.pods):
        s.in_progress.append(Signal(f"Job {name} has not started a pod yet"))


def _node(node: dict[str, Any], s: HealthSignals) -> None:
    ready = condition(node, "Ready")
    if not ready or ready.get("status") != "True":
        s.problems.append(
            Signal(
                f"node {name_of(node)} is not Ready",
                cite_field(node, "status.conditions[Ready].status", (ready or {}).get("status")),
            )
        )
    for ctype in ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable"):
        cond = condition(node, ctype)
        if cond and cond.get("status") == "True":
            s.problems.append(
                Signal(
                    f"node {name_of(node)} has {ctype}",
                    cite_field(node, f"status.conditions[{ctype}]", "True"),
                )
            )


def _service(ev: Evidence, svc: dict[str, Any], s: HealthSignals) -> None:
    spec = svc.get("spec") or {}
    selector = spec.get("selector") or {}
    if not selector or spec.get("type") == "ExternalName":
        return
    selected = [p for p in ev.pods if map_selector_matches(selector, labels_of(p))]
    if not selected and ev.target.kind == "Service":
        s.problems.append(
            Signal(f"Service {name_of(svc)} selects no pod", cite_field(svc, "spec.selector", selector))
        )
    elif selected and not any(pod_is_ready(p) for p in selected) and ev.target.kind == "Service":
        s.problems.append(Signal(f"Service {name_of(svc)} has no ready endpoint"))


def _claim(claim: dict[str, Any], now: float, s: HealthSignals) -> None:
    phase = (claim.get("status") or {}).get("phase")
    if phase == "Bound":
        return
    if phase == "Pending" and _age(claim, now) < 60:
        s.in_progress.append(Signal(f"PersistentVolumeClaim {name_of(claim)} is being bound"))
    else:
        s.problems.append(
            Signal(
                f"PersistentVolumeClaim {name_of(claim)} is {phase}", cite_field(claim, "status.phase", phase)
            )
        )


def _hpa(hpa: dict[str, Any], s: HealthSignals) -> None:
    for ctype in ("AbleToScale", "ScalingActive"):
        cond = condition(hpa, ctype)
        if cond and cond.get("status") == "False" and cond.get("reason") != "ScalingDisabled":
            s.problems.append(
                Signal(
                    f"HorizontalPodAutoscaler {name_of(hpa)}: {ctype} False ({cond.get('reason')})",
                    cite_field(hpa, f"status.conditions[{ctype}]", cond.get("message")),
                )
            )
