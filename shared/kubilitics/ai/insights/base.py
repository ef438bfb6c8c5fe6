"""What insight rules read (a `Snapshot` of the cluster) and what they report (`Hit`s, grouped into
`Detection`s). Rules are pure functions of the snapshot: the scanner (services/insights.py) does the
reading, tests build snapshots from JSON documents.

A detection is one insight: a rule's hits in one scope (a namespace, the cluster, or one workload for
health). Its id is derived from (context, category, rule, scope) only, so a rescan finds the same
insight again instead of making a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from kubilitics.ai.kube_json import controller_of, meta, name_of, parse_time, pod_finished

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "warning", "info")
CATEGORIES = ("health", "security", "performance", "cost_optimization")
MAX_EXAMPLES = 5
MAX_DETAILS = 20


def insight_id(context: str, category: str, rule: str, scope: str) -> str:
    digest = hashlib.sha256(f"{context}|{category}|{rule}|{scope}".encode()).hexdigest()
    return f"ins-{digest[:16]}"


def worst(severities: Iterable[str]) -> Severity:
    present = set(severities)
    return next((s for s in SEVERITIES if s in present), "info")


@dataclass(frozen=True)
class UnitPrices:
    """USD per month: one CPU core, one GiB of memory, one GiB of persistent storage."""

    cpu_core_month: float = 29.55
    memory_gib_month: float = 3.24
    storage_gib_month: float = 0.08

    def compute(self, cores: float, memory_bytes: float) -> float:
        return cores * self.cpu_core_month + memory_bytes / 2**30 * self.memory_gib_month


@dataclass(frozen=True)
class ScanPolicy:
    """Thresholds of the rules (the defaults are what the scanner uses; tests may tighten them)."""

    excluded_namespaces: frozenset[str] = frozenset({"kube-system", "kube-public", "kube-node-lease"})
    prices: UnitPrices = field(default_factory=UnitPrices)
    security: bool = True  # feature_flags.security_recommendations
    cost: bool = True  # feature_flags.cost_optimization
    min_age_seconds: float = 1800.0  # idle workloads and unattached PVCs: only once this old
    cpu_near_limit: float = 0.9  # usage / limit
    memory_near_limit: float = 0.85
    memory_near_limit_critical: float = 0.95
    restarts_warning: int = 3
    restarts_critical: int = 10
    restart_window_seconds: float = 86400.0  # restarts count only if the last one is this recent
    overprovision_factor: float = 3.0  # requests at least this many times the measured usage
    min_cpu_request_cores: float = 0.1  # smaller requests are not worth a recommendation
    min_memory_request_bytes: float = 128 * 2**20
    headroom: float = 1.5  # recommended request = usage x headroom
    idle_cpu_cores: float = 0.0005  # a workload whose pods use less than this on average is idle
    startup_grace_seconds: float = 90.0  # health: pods younger than this are still starting
    max_health_targets: int = 25  # workloads diagnosed per scan (the analyzers read their evidence)


@dataclass(frozen=True)
class WorkloadRef:
    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


@dataclass
class Snapshot:
    """The cluster as the rules see it: raw Kubernetes JSON, metrics by pod, and notes on gaps."""

    context: str
    collected_at: float
    pods: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    replica_sets: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    stateful_sets: list[dict[str, Any]] = field(default_factory=list)
    service_accounts: list[dict[str, Any]] = field(default_factory=list)
    network_policies: list[dict[str, Any]] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)
    cluster_roles: list[dict[str, Any]] = field(default_factory=list)
    pvcs: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    # (namespace, pod) -> container -> (cpu cores, memory bytes); None: metrics.k8s.io did not answer
    pod_metrics: dict[tuple[str, str], dict[str, tuple[float | None, float | None]]] | None = None
    # Nodes metrics-server reports: their pods missing from pod_metrics used no CPU at all.
    scraped_nodes: frozenset[str] = frozenset()
    # Only these namespaces were read (None: all); cluster-scoped rules run only on a full scan.
    namespaces_in_scope: frozenset[str] | None = None
    notes: list[str] = field(default_factory=list)
    _owners: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def full(self) -> bool:
        return self.namespaces_in_scope is None

    def owner_of(self, pod: dict[str, Any]) -> WorkloadRef:
        """The pod's top controller: Deployment (through its ReplicaSet), CronJob (through its Job),
        StatefulSet, DaemonSet, ...; the pod itself when nothing owns it."""
        if not self._owners:
            for kind, items in (("ReplicaSet", self.replica_sets), ("Job", self.jobs)):
                for obj in items:
                    self._owners[(kind, meta(obj).get("namespace") or "", name_of(obj))] = obj
        ns = meta(pod).get("namespace") or ""
        current: dict[str, Any] = pod
        ref = WorkloadRef("Pod", ns, name_of(pod))
        for _ in range(3):
            owner = controller_of(current)
            if not owner:
                break
            ref = WorkloadRef(str(owner.get("kind")), ns, str(owner.get("name")))
            parent = self._owners.get((ref.kind, ns, ref.name))
            if parent is None:
                break
            current = parent
        return ref

    def live_pods(self) -> Iterator[dict[str, Any]]:
        """Pods that are not finished and not being deleted."""
        for pod in self.pods:
            if not pod_finished(pod) and not meta(pod).get("deletionTimestamp"):
                yield pod

    def workloads(self) -> dict[WorkloadRef, list[dict[str, Any]]]:
        """Live pods grouped by their top controller."""
        groups: dict[WorkloadRef, list[dict[str, Any]]] = {}
        for pod in self.live_pods():
            groups.setdefault(self.owner_of(pod), []).append(pod)
        return groups

    def age(self, obj: dict[str, Any]) -> float:
        created = parse_time(meta(obj).get("creationTimestamp"))
        return self.collected_at - created if created is not None else 0.0


@dataclass(frozen=True)
class Hit:
    """One affected resource of a rule, with what makes it one."""

    namespace: str | None
    resource: str  # "team-a/Deployment/web" (+ " container app")
    severity: Severity
    detail: str = ""
    savings_usd: float = 0.0  # cost rules: what the change saves per month
    current_usd: float = 0.0  # cost rules: what the resource costs per month now


@dataclass(frozen=True)
class RuleSpec:
    """How a rule's hits read as an insight. `{count}` and `{where}` are filled in."""

    category: str
    rule: str
    title: str
    description: str
    action: str
    steps: tuple[str, ...]
    effort_hours: float
    risk_level: str
    per_item_effort_hours: float = 0.0  # added per affected resource (bounded at 5x the base)


@dataclass
class Detection:
    category: str
    rule: str
    scope: str  # "namespace/<ns>", "cluster", "workload/<ns>/<Kind>/<name>"
    namespace: str | None
    severity: Severity
    title: str
    description: str
    resources: list[str]
    recommendation: dict[str, Any]
    details: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the health insight's root_cause

    def affected_resources(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": len(self.resources), "examples": self.resources[:MAX_EXAMPLES]}
        if self.details:
            out["details"] = self.details[:MAX_DETAILS]
        return out


def group(spec: RuleSpec, hits: Iterable[Hit], *, per_namespace: bool = True) -> list[Detection]:
    """One detection per namespace (or one for the cluster) from a rule's hits."""
    buckets: dict[str | None, list[Hit]] = {}
    for hit in hits:
        buckets.setdefault(hit.namespace if per_namespace else None, []).append(hit)
    detections = []
    for namespace, items in sorted(buckets.items(), key=lambda kv: kv[0] or ""):
        items.sort(key=lambda h: (SEVERITIES.index(h.severity), h.resource))
        where = f"namespace {namespace}" if namespace else "the cluster"
        count = len({h.resource for h in items})
        effort = spec.effort_hours + min(spec.per_item_effort_hours * count, spec.effort_hours * 5)
        recommendation: dict[str, Any] = {
            "action": spec.action,
            "steps": list(spec.steps),
            "estimated_effort_hours": round(effort, 1),
            "risk_level": spec.risk_level,
        }
        current = sum(h.current_usd for h in items)
        savings = sum(h.savings_usd for h in items)
        if spec.category == "cost_optimization":
            recommendation["monthly_savings_usd"] = round(savings, 2)
            recommendation["potential_savings_percent"] = round(savings * 100 / current) if current else 0
        resources = list(dict.fromkeys(h.resource for h in items))
        detections.append(
            Detection(
                category=spec.category,
                rule=spec.rule,
                scope=f"namespace/{namespace}" if namespace else "cluster",
                namespace=namespace,
                severity=worst(h.severity for h in items),
                title=spec.title.format(count=count, where=where),
                description=spec.description.format(count=count, where=where),
                resources=resources,
                recommendation=recommendation,
                details=[{"resource": h.resource, "detail": h.detail} for h in items if h.detail],
            )
        )
    return detections


def in_scope(snapshot: Snapshot, policy: ScanPolicy, namespace: str | None) -> bool:
    """Namespaced objects outside the excluded namespaces (and inside a scoped scan's namespaces)."""
    if not namespace or namespace in policy.excluded_namespaces:
        return False
    return snapshot.namespaces_in_scope is None or namespace in snapshot.namespaces_in_scope


def representative_pods(snapshot: Snapshot, policy: ScanPolicy) -> list[tuple[WorkloadRef, dict[str, Any]]]:
    """One pod per workload (replicas share a spec), running ones preferred, in scope only."""
    out = []
    for ref, pods in sorted(snapshot.workloads().items(), key=lambda kv: str(kv[0])):
        if not in_scope(snapshot, policy, ref.namespace):
            continue
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        out.append((ref, (running or pods)[0]))
    return out
