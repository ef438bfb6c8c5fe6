"""Running but failing: the current logs of ready pods, read where no list shows trouble.

A pod that is Running and Ready can still fail every request it makes (a database that refuses
connections, a Role it lacks, a full disk). Lists and events do not show it; its log does. The triage
of a namespace, a node or the cluster therefore reads the tail of the current log of one ready pod per
workload that is not already a suspect (at most `max_pods` pods, `lines` lines and `max_bytes` bytes
each, `workers` reads at a time) and makes a workload a suspect when a cause persists in it
(`log_patterns.persistent`: at least 5 lines and one line in ten name it). The tail read travels with
the suspect, so its diagnosis judges the same lines.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubilitics.ai.analyzers.log_patterns import causes, persistent
from kubilitics.ai.evidence import Evidence, LogTail, ObjectRef
from kubilitics.ai.insights.base import Snapshot
from kubilitics.ai.kube_json import containers, name_of, namespace_of, pod_is_ready, pod_phase
from kubilitics.errors import KubiliticsError
from kubilitics.ports import KubernetesPort


@dataclass(frozen=True)
class LogScanLimits:
    max_pods: int = 10  # ready pods whose logs are read (one per workload)
    lines: int = 300  # tail of each container's current log
    max_bytes: int = 256 * 1024  # and at most this much of it (limitBytes: a few long lines)
    max_containers: int = 3  # containers read per pod
    workers: int = 8


def candidates(
    pods: list[dict[str, Any]], snapshot: Snapshot, suspects: set[str]
) -> list[tuple[dict[str, Any], ObjectRef]]:
    """The newest Running and Ready pod of each workload that is not a suspect yet, oldest first (a
    failing dependency usually shows in every replica, so one is enough)."""
    chosen: dict[str, tuple[dict[str, Any], ObjectRef]] = {}
    for pod in sorted(pods, key=_created):
        if (
            pod_phase(pod) != "Running"
            or not pod_is_ready(pod)
            or (pod.get("metadata") or {}).get("deletionTimestamp")
        ):
            continue
        top = snapshot.owner_of(pod)
        owner = ObjectRef(top.kind, top.name, top.namespace or None)
        if owner.key not in suspects:
            chosen[owner.key] = (pod, owner)
    return sorted(chosen.values(), key=lambda item: _created(item[0]))


def _created(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def scan(
    kube: KubernetesPort,
    context: Any,
    chosen: list[tuple[dict[str, Any], ObjectRef]],
    limits: LogScanLimits,
    notes: list[str],
) -> list[dict[str, Any]]:
    """Suspects (`subject`, `why`, the `logs` read and the `pod`) for the workloads whose ready pod
    logs a cause that persists."""

    def read(item: tuple[dict[str, Any], ObjectRef]) -> list[LogTail]:
        pod, _ = item
        tails = []
        for c in [c for c in containers(pod, init=False) if c.running][: limits.max_containers]:
            tails.append(_tail(kube, context, pod, c.name, limits))
        return tails

    if not chosen:
        return []
    with ThreadPoolExecutor(max_workers=limits.workers) as pool:
        read_tails = list(pool.map(read, chosen))
    suspects = []
    failed = 0
    for (pod, owner), tails in zip(chosen, read_tails, strict=True):
        failed += sum(1 for t in tails if t.error)
        lasting = [
            (category, tail, lines)
            for tail in tails
            for category, lines in causes(tail.lines).items()
            if persistent(len(lines), len(tail.lines))
        ]
        if not lasting:
            continue
        category, tail, lines = lasting[0]
        why = (
            f"ready, but {len(lines)} of the last {len(tail.lines)} lines of container {tail.container} "
            f"of pod {tail.pod} name one cause ({category}): {lines[-1][:160]}"
        )
        suspects.append(
            {
                "subject": owner.to_dict(),
                "why": why,
                "logs": [t.to_dict() for t in tails if t.lines],
                "pod": pod,
            }
        )
    if failed:
        notes.append(f"could not read {failed} container log(s) of ready pods")
    return suspects


def _tail(
    kube: KubernetesPort, context: Any, pod: dict[str, Any], container: str, limits: LogScanLimits
) -> LogTail:
    ns, name = namespace_of(pod) or "", name_of(pod)
    params = {"container": container, "tailLines": limits.lines, "limitBytes": limits.max_bytes}
    try:
        text = kube.pod_logs(context, ns, name, params)
    except KubiliticsError as exc:
        return LogTail(ns, name, container, error=exc.message)
    lines = tuple(line for line in text.splitlines() if line.strip())[-limits.lines :]
    return LogTail(ns, name, container, lines=lines)


def with_scanned_logs(evidence: Evidence, suspect: dict[str, Any]) -> Evidence:
    """The suspect's evidence with the tails the scan read (in place of the same containers' shorter
    tails) and the pod they came from (a workload with many pods may not have it among those kept)."""
    scanned = [LogTail.from_dict(t) for t in suspect.get("logs") or []]
    if not scanned:
        return evidence
    keys = {t.key for t in scanned}
    evidence.logs = scanned + [t for t in evidence.logs if t.key not in keys]
    pod = suspect.get("pod")
    if isinstance(pod, dict) and not any(
        name_of(p) == name_of(pod) and namespace_of(p) == namespace_of(pod) for p in evidence.pods
    ):
        evidence.add(pod)
    return evidence
