"""Cost insights: capacity that is paid for and not used, priced with the configured unit prices.

Rules: requests far above measured usage (right-size them to usage x headroom), idle workloads
(Deployments and StatefulSets whose pods use next to no CPU), and PersistentVolumeClaims no pod
mounts. `monthly_savings_usd` is what the recommended change frees, at the unit prices of
`ScanPolicy.prices` (settings: KUBILITICS_PRICE_*).
"""

from __future__ import annotations

from typing import Any

from kubilitics.ai.insights.base import (
    Detection,
    Hit,
    RuleSpec,
    ScanPolicy,
    Snapshot,
    WorkloadRef,
    group,
    in_scope,
)
from kubilitics.ai.kube_json import containers, meta, name_of, parse_quantity, pod_is_ready, pod_node

CATEGORY = "cost_optimization"
CPU_FLOOR_CORES = 0.01
MEMORY_FLOOR_BYTES = 16 * 2**20
METRICS_GRACE_SECONDS = 45  # metrics-server needs two scrapes (15 s apart) before a pod has usage

OVERPROVISIONED = RuleSpec(
    CATEGORY,
    "overprovisioned_requests",
    "{count} container(s) request far more than they use in {where}",
    "Requests reserve node capacity whether it is used or not; these containers request several "
    "times what they use ({count} in {where}).",
    "Right-size resource requests",
    (
        "Set resources.requests to the measured usage plus headroom (see details)",
        "Watch usage over a full business cycle before lowering further (a VerticalPodAutoscaler in "
        "recommendation mode helps)",
        "Let the cluster autoscaler remove the nodes that free up",
    ),
    1.0,
    "low",
    0.25,
)
IDLE = RuleSpec(
    CATEGORY,
    "idle_workload",
    "{count} idle workload(s) in {where}",
    "These workloads run pods that use next to no CPU: they may be forgotten, or only needed at "
    "times ({count} in {where}).",
    "Scale idle workloads down",
    (
        "Confirm with the owners that the workload is not needed",
        "Scale it to zero (kubectl scale --replicas=0) or delete it",
        "For workloads needed only at times, scale on a schedule or on demand (KEDA)",
    ),
    0.5,
    "medium",
    0.25,
)
UNATTACHED_PVC = RuleSpec(
    CATEGORY,
    "unattached_pvc",
    "{count} PersistentVolumeClaim(s) not mounted by any pod in {where}",
    "Storage of these claims is paid for while no pod uses it ({count} in {where}).",
    "Delete or snapshot unused volumes",
    (
        "Check that the data is not needed (or take a VolumeSnapshot first)",
        "Delete the PersistentVolumeClaim (with reclaimPolicy Delete the volume goes with it)",
    ),
    0.5,
    "medium",
    0.1,
)

RULES = (OVERPROVISIONED, IDLE, UNATTACHED_PVC)


def detect(snapshot: Snapshot, policy: ScanPolicy) -> list[Detection]:
    detections: list[Detection] = []
    if snapshot.pod_metrics is not None:
        idle_hits, idle_refs = _idle(snapshot, policy)
        detections += group(OVERPROVISIONED, _overprovisioned(snapshot, policy, idle_refs))
        detections += group(IDLE, idle_hits)
    detections += group(UNATTACHED_PVC, _unattached(snapshot, policy))
    return detections


def _requests(cspec: dict[str, Any]) -> tuple[float, float]:
    requests = (cspec.get("resources") or {}).get("requests") or {}
    return (
        parse_quantity(requests.get("cpu"), cpu=True) or 0.0,
        parse_quantity(requests.get("memory")) or 0.0,
    )


def _usage(snapshot: Snapshot, pod: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    return (snapshot.pod_metrics or {}).get((str(meta(pod).get("namespace")), name_of(pod)), {})


def _idle(snapshot: Snapshot, policy: ScanPolicy) -> tuple[list[Hit], set[WorkloadRef]]:
    hits, refs = [], set()
    # metrics-server leaves out containers that used no CPU at all; a running pod missing from the
    # metrics while its node is reported (so was scraped) used none.
    scraped = snapshot.scraped_nodes
    for ref, pods in snapshot.workloads().items():
        if ref.kind not in ("Deployment", "StatefulSet") or not in_scope(snapshot, policy, ref.namespace):
            continue
        if not all(pod_is_ready(p) for p in pods):
            continue  # a workload that is failing or starting is not idle
        if min(snapshot.age(p) for p in pods) < policy.min_age_seconds:
            continue
        cpu_total, cost = 0.0, 0.0
        for pod in pods:
            usage = _usage(snapshot, pod)
            if not usage and (pod_node(pod) not in scraped or snapshot.age(pod) < METRICS_GRACE_SECONDS):
                break  # no sample for a pod: not enough to call the workload idle
            cpu_total += sum(cpu or 0.0 for cpu, _ in usage.values())
            for view in containers(pod, init=False):
                cores, memory = _requests(view.spec)
                cost += policy.prices.compute(cores, memory)
        else:
            if cpu_total / len(pods) < policy.idle_cpu_cores:
                refs.add(ref)
                detail = f"{len(pods)} pod(s), {cpu_total * 1000:.1f}m CPU in total"
                hits.append(Hit(ref.namespace, str(ref), "info", detail, savings_usd=cost, current_usd=cost))
    return hits, refs


def _overprovisioned(snapshot: Snapshot, policy: ScanPolicy, idle: set[WorkloadRef]) -> list[Hit]:
    per_container: dict[str, dict[str, Any]] = {}
    for pod in snapshot.live_pods():
        ns = meta(pod).get("namespace")
        ref = snapshot.owner_of(pod)
        if ref in idle or not in_scope(snapshot, policy, ns):
            continue
        usage = _usage(snapshot, pod)
        for view in containers(pod, init=False):
            cpu_used, memory_used = usage.get(view.name, (None, None))
            cpu_req, memory_req = _requests(view.spec)
            changes = []
            cpu_target, memory_target = cpu_req, memory_req
            if (
                cpu_used is not None
                and cpu_req >= policy.min_cpu_request_cores
                and cpu_req >= policy.overprovision_factor * cpu_used
            ):
                cpu_target = max(cpu_used * policy.headroom, CPU_FLOOR_CORES)
                changes.append(f"cpu request {cpu_req:g} -> {_cores(cpu_target)} (uses {_cores(cpu_used)})")
            if (
                memory_used is not None
                and memory_req >= policy.min_memory_request_bytes
                and memory_req >= policy.overprovision_factor * memory_used
            ):
                memory_target = max(memory_used * policy.headroom, MEMORY_FLOOR_BYTES)
                changes.append(
                    f"memory request {_mib(memory_req)} -> {_mib(memory_target)} (uses {_mib(memory_used)})"
                )
            if not changes:
                continue
            key = f"{ref} container {view.name}"
            entry = per_container.setdefault(
                key, {"ns": ns, "pods": 0, "savings": 0.0, "current": 0.0, "changes": changes}
            )
            entry["pods"] += 1
            entry["current"] += policy.prices.compute(cpu_req, memory_req)
            entry["savings"] += policy.prices.compute(cpu_req - cpu_target, memory_req - memory_target)
    return [
        Hit(
            e["ns"],
            key,
            "warning" if e["savings"] >= 50 else "info",
            f"{'; '.join(e['changes'])}; {e['pods']} pod(s)",
            savings_usd=e["savings"],
            current_usd=e["current"],
        )
        for key, e in per_container.items()
    ]


def _unattached(snapshot: Snapshot, policy: ScanPolicy) -> list[Hit]:
    mounted = {
        (meta(pod).get("namespace"), (v.get("persistentVolumeClaim") or {}).get("claimName"))
        for pod in snapshot.live_pods()
        for v in (pod.get("spec") or {}).get("volumes") or []
        if v.get("persistentVolumeClaim")
    }
    hits = []
    for claim in snapshot.pvcs:
        ns, name = meta(claim).get("namespace"), name_of(claim)
        if (
            (ns, name) in mounted
            or not in_scope(snapshot, policy, ns)
            or meta(claim).get("deletionTimestamp")
        ):
            continue
        if snapshot.age(claim) < policy.min_age_seconds:
            continue
        status = claim.get("status") or {}
        phase = status.get("phase") or "Pending"
        size = parse_quantity((status.get("capacity") or {}).get("storage")) or parse_quantity(
            (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
        )
        # Only a bound claim has a volume behind it that costs money.
        cost = (size or 0.0) / 2**30 * policy.prices.storage_gib_month if phase == "Bound" else 0.0
        detail = f"{phase}, {_gib(size)}" if size else phase
        hits.append(
            Hit(ns, f"{ns}/PersistentVolumeClaim/{name}", "info", detail, savings_usd=cost, current_usd=cost)
        )
    return hits


def _cores(value: float) -> str:
    return f"{value * 1000:.0f}m"


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f}Mi"


def _gib(value: float) -> str:
    return f"{value / 2**30:g}Gi"
