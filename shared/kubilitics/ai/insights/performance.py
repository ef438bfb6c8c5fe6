"""Performance insights from measured usage (metrics.k8s.io) against the containers' specs.

Rules: CPU near its limit (throttling), memory near its limit (the next spike is an OOM kill), and
containers that restarted repeatedly within the restart window. Usage is a point-in-time sample;
the thresholds are set so that one sample above them is already worth a look.
"""

from __future__ import annotations

from kubilitics.ai.insights.base import Detection, Hit, RuleSpec, ScanPolicy, Snapshot, group, in_scope
from kubilitics.ai.kube_json import containers, meta, name_of, parse_quantity, parse_time

CATEGORY = "performance"

CPU_NEAR_LIMIT = RuleSpec(
    CATEGORY,
    "cpu_near_limit",
    "{count} container(s) run at their CPU limit in {where}",
    "These containers use (nearly) all of their CPU limit: the kernel throttles them, which shows "
    "as latency ({count} in {where}).",
    "Raise CPU limits or scale out",
    (
        "Raise resources.limits.cpu of the listed containers (or remove the CPU limit and keep the request)",
        "Or add replicas / a HorizontalPodAutoscaler on CPU so the load spreads",
        "Check the container's throttling (container_cpu_cfs_throttled_periods_total) after the change",
    ),
    0.5,
    "low",
    0.1,
)
MEMORY_NEAR_LIMIT = RuleSpec(
    CATEGORY,
    "memory_near_limit",
    "{count} container(s) close to their memory limit in {where}",
    "These containers use most of their memory limit: the next spike gets them OOM-killed "
    "({count} in {where}).",
    "Raise memory limits",
    (
        "Raise resources.limits.memory of the listed containers (keep requests close to real usage)",
        "Look for leaks if usage keeps growing between restarts",
    ),
    0.5,
    "low",
    0.1,
)
RESTARTS = RuleSpec(
    CATEGORY,
    "frequent_restarts",
    "{count} container(s) restart repeatedly in {where}",
    "Containers that keep restarting lose their in-flight work and their caches ({count} in {where}).",
    "Find out why the containers restart",
    (
        "Read the previous run's log (kubectl logs --previous) and lastState.terminated (reason, exit code)",
        "Start an investigation of the workload (POST /api/v1/ai/investigate) for the root cause",
        "Fix the cause (memory limit, probe settings, crash) rather than the symptom",
    ),
    1.0,
    "low",
    0.25,
)

RULES = (CPU_NEAR_LIMIT, MEMORY_NEAR_LIMIT, RESTARTS)


def detect(snapshot: Snapshot, policy: ScanPolicy) -> list[Detection]:
    cpu_hits: list[Hit] = []
    memory_hits: list[Hit] = []
    restart_hits: list[Hit] = []
    for pod in snapshot.live_pods():
        ns = meta(pod).get("namespace")
        if not in_scope(snapshot, policy, ns):
            continue
        owner = str(snapshot.owner_of(pod))
        usage = (snapshot.pod_metrics or {}).get((str(ns), name_of(pod)), {})
        for view in containers(pod):
            where = f"{owner} container {view.name}"
            resources = view.spec.get("resources") or {}
            limits = resources.get("limits") or {}
            cpu_used, memory_used = usage.get(view.name, (None, None))
            cpu_limit = parse_quantity(limits.get("cpu"), cpu=True)
            memory_limit = parse_quantity(limits.get("memory"))
            if cpu_used is not None and cpu_limit and cpu_used / cpu_limit >= policy.cpu_near_limit:
                share = cpu_used / cpu_limit
                cpu_hits.append(
                    Hit(
                        ns,
                        where,
                        "critical" if share >= 0.98 else "warning",
                        f"pod {name_of(pod)}: cpu {cpu_used:.3f} of limit {cpu_limit:g} cores ({share:.0%})",
                    )
                )
            if (
                memory_used is not None
                and memory_limit
                and memory_used / memory_limit >= policy.memory_near_limit
            ):
                share = memory_used / memory_limit
                memory_hits.append(
                    Hit(
                        ns,
                        where,
                        "critical" if share >= policy.memory_near_limit_critical else "warning",
                        f"pod {name_of(pod)}: memory {memory_used / 2**20:.0f}Mi of limit "
                        f"{memory_limit / 2**20:.0f}Mi ({share:.0%})",
                    )
                )
            last = view.last_terminated or view.terminated
            finished = parse_time(last.get("finishedAt")) if last else None
            recent = (
                finished is not None and snapshot.collected_at - finished <= policy.restart_window_seconds
            )
            if view.restarts >= policy.restarts_warning and recent:
                reason = last.get("reason") or f"exit code {last.get('exitCode')}"
                restart_hits.append(
                    Hit(
                        ns,
                        where,
                        "critical" if view.restarts >= policy.restarts_critical else "warning",
                        f"pod {name_of(pod)}: {view.restarts} restarts, last: {reason}",
                    )
                )
    return [
        *group(CPU_NEAR_LIMIT, cpu_hits),
        *group(MEMORY_NEAR_LIMIT, memory_hits),
        *group(RESTARTS, restart_hits),
    ]
