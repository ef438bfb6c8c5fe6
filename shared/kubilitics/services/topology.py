"""Cluster topology (reference section 7): nodes with their pods, namespaces with their workloads.

Every list it needs is fetched at once (threads) as raw JSON; lists that are only counted or grouped
are fetched as metadata only. `depth` decides how far the tree goes, and so which lists are read:

  1  cluster summary and network policy counts (counts only: nothing is listed in full)
  2  + nodes (role, status, capacity, taints, pod_count) and namespaces (pods, workloads, quota)
  3  + the pods on each node (namespace, name, status); unscheduled pods apart
  4  + each pod's owning workload (a ReplicaSet's Deployment, a Job's CronJob) and its metrics
  5  + each pod's containers (image, ready, restarts, state)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.errors import KubiliticsError
from kubilitics.ports import KubernetesPort
from kubilitics.services.cluster import check_namespace_name, count_of, namespace_path, require_namespace
from kubilitics.services.events import DEFAULT_WINDOW_SECONDS, EventsService
from kubilitics.services.metrics import METRICS_API, node_status
from kubilitics.services.quantities import format_bytes, format_cores, parse_quantity, percent

RECENT_WARNINGS = 20
TABLE_WORKERS = 64  # pod tables at once: fewer leave the API server idle between waves (2 CPUs here)
# Threads kept between requests (and shared by every instance of the service): a thread started per
# call waits ~1 ms for the GIL while the answers already in are parsed, and a topology makes dozens.
_CALL_THREADS = ThreadPoolExecutor(max_workers=24, thread_name_prefix="topology")
_TABLE_THREADS = ThreadPoolExecutor(max_workers=TABLE_WORKERS, thread_name_prefix="pod-tables")
WORKLOADS = {
    "deployments": "/apis/apps/v1",
    "statefulsets": "/apis/apps/v1",
    "daemonsets": "/apis/apps/v1",
    "jobs": "/apis/batch/v1",
    "cronjobs": "/apis/batch/v1",
}


@dataclass(slots=True)
class PodRow:
    """What the topology knows of a pod: a table row, or (depth 4-5) the full object too."""

    namespace: str
    name: str
    status: str
    node: str | None
    pod: dict[str, Any] | None = None


def _row_of(pod: dict[str, Any]) -> PodRow:
    meta = pod["metadata"]
    node = (pod.get("spec") or {}).get("nodeName") or None
    return PodRow(meta.get("namespace", ""), meta["name"], pod_status(pod), node, pod)


def _scoped(prefix: str, plural: str, namespace: str | None) -> str:
    return f"{prefix}{'/namespaces/' + namespace if namespace else ''}/{plural}"


def node_role(node: dict[str, Any]) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(
        "control-plane" if key[len(prefix) :] == "master" else key[len(prefix) :]
        for key in (node["metadata"].get("labels") or {})
        if key.startswith(prefix) and key[len(prefix) :]
    )
    return ",".join(dict.fromkeys(roles)) or "worker"


def pod_status(pod: dict[str, Any]) -> str:
    """The STATUS column of `kubectl get pods` (CrashLoopBackOff, Init:0/1, Terminating, ...)."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    init_statuses = status.get("initContainerStatuses") or []
    initializing = False
    for index, init in enumerate(init_statuses):
        state = init.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        initializing = True
        if terminated:
            reason = "Init:" + (terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}")
        elif waiting and waiting.get("reason") not in (None, "PodInitializing"):
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(init_statuses)}"
        break
    if not initializing:
        running = False
        for container in reversed(status.get("containerStatuses") or []):
            state = container.get("state") or {}
            terminated, waiting = state.get("terminated"), state.get("waiting")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                reason = f"ExitCode:{terminated.get('exitCode')}"
            elif state.get("running") and container.get("ready"):
                running = True
        if reason == "Completed" and running:
            reason = "Running"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return str(reason)


def _controller(meta: dict[str, Any]) -> dict[str, Any] | None:
    refs = meta.get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), refs[0] if refs else None)


class TopologyService:
    def __init__(self, kube: KubernetesPort, events: EventsService):
        self._kube = kube
        self._events = events
        self._seen_namespaces: dict[str, list[str]] = {}  # per context: the last answer's namespaces

    def topology(
        self,
        context: ContextConfig,
        *,
        now: float,
        depth: int = 3,
        namespace: str | None = None,
        include_metrics: bool = True,
        include_events: bool = False,
    ) -> dict[str, Any]:
        if namespace:
            check_namespace_name(namespace)
        got = self._fetch(context, now, depth, namespace, include_metrics, include_events)
        rows: list[PodRow] = got.get("pods") or []
        body: dict[str, Any] = {
            "cluster": {
                "name": context.cluster_name or context.name,
                "version": str(got["version"].get("gitVersion", "")).lstrip("v"),
                "total_nodes": count_of(got["nodes"]) if depth == 1 else len(got["nodes"].get("items") or []),
                "total_pods": count_of(got["pod_count"]) if depth == 1 else len(rows),
                "total_services": count_of(got["services"]),
            },
            "nodes": [],
            "namespaces": [],
            "network_policies": self._network_policies(got["networkpolicies"]),
        }
        if include_metrics and depth >= 2:
            body["metrics_available"] = not isinstance(got.get("node_metrics"), Exception)
        if depth >= 2:
            namespaces = [got["namespace"]] if namespace else got["namespaces"].get("items") or []
            body["namespaces"] = self._namespaces(namespaces, rows, got)
            body["nodes"], unscheduled = self._nodes(got["nodes"].get("items") or [], rows, got, depth)
            if depth >= 3:
                body["unscheduled_pods"] = unscheduled
        if include_events:
            events = got["events"]
            body["events"] = {
                "window_seconds": DEFAULT_WINDOW_SECONDS,
                "warning_count": events["total_count"],
                "recent_warnings": events["items"],
            }
        return body

    # ---- fetching --------------------------------------------------------------------------

    def _fetch(
        self,
        context: ContextConfig,
        now: float,
        depth: int,
        namespace: str | None,
        include_metrics: bool,
        include_events: bool,
    ) -> dict[str, Any]:
        """Every list at once. Metrics failures are kept (the answer degrades); the others raise."""
        kube = self._kube
        scope = namespace_path(namespace) if namespace else "/api/v1"
        calls: dict[str, Callable[[], Any]] = {}
        if namespace:  # first, so that a missing namespace is the error reported
            calls["namespace"] = lambda: require_namespace(kube, context, namespace)
        elif depth >= 2:
            calls["namespaces"] = lambda: kube.get_path(context, "/api/v1/namespaces")
        calls["version"] = lambda: kube.get_path(context, "/version")
        calls["services"] = lambda: kube.get_path(context, f"{scope}/services", {"limit": 1})
        calls["networkpolicies"] = self._metadata_call(
            context, "/apis/networking.k8s.io/v1", "networkpolicies", namespace
        )
        if depth == 1:
            calls["nodes"] = lambda: kube.get_path(context, "/api/v1/nodes", {"limit": 1})
            calls["pod_count"] = lambda: kube.get_path(context, f"{scope}/pods", {"limit": 1})
        else:
            calls["nodes"] = lambda: kube.get_path(context, "/api/v1/nodes")
            calls["resourcequotas"] = self._metadata_call(context, "/api/v1", "resourcequotas", namespace)
            for plural, group in WORKLOADS.items():
                calls[plural] = self._metadata_call(context, group, plural, namespace)
            if include_metrics:
                calls["node_metrics"] = lambda: kube.get_path(context, f"{METRICS_API}/nodes")
        if depth >= 4 and include_metrics:  # a pod metrics list costs as much as the rest of depth 3
            calls["pod_metrics"] = lambda: kube.get_path(
                context, METRICS_API + _scoped("", "pods", namespace)
            )
        if depth >= 4:
            calls["replicasets"] = self._metadata_call(context, "/apis/apps/v1", "replicasets", namespace)
            # Owners and containers are only in the full objects.
            calls["pods"] = lambda: [
                _row_of(p) for p in kube.get_path(context, f"{scope}/pods").get("items") or []
            ]
        if include_events:
            calls["events"] = lambda: self._events.list_events(
                context, now=now, namespace=namespace, event_type="Warning", limit=RECENT_WARNINGS
            )

        futures: dict[str, Future[Any]] = {name: _CALL_THREADS.submit(call) for name, call in calls.items()}
        pods: list[PodRow] | KubiliticsError = []
        if depth in (2, 3):  # waits here, on this thread: no pool thread ever waits on another
            if namespace:
                names: Callable[[], list[str]] = lambda: [namespace]  # noqa: E731
            else:
                names = lambda: [  # noqa: E731
                    n["metadata"]["name"] for n in futures["namespaces"].result().get("items") or []
                ]
            try:
                pods = self._pod_rows_from_tables(context, names, guess=not namespace)
            except KubiliticsError as exc:  # raised below, after the errors of the earlier calls
                pods = exc
        results: dict[str, Any] = {}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except KubiliticsError as exc:
                if not name.endswith("_metrics"):
                    raise
                results[name] = exc
        if isinstance(pods, KubiliticsError):
            raise pods
        if depth in (2, 3):
            results["pods"] = pods
        return results

    def _metadata_call(
        self, context: ContextConfig, group: str, plural: str, namespace: str | None
    ) -> Callable[[], Any]:
        return lambda: self._kube.list_metadata(context, _scoped(group, plural, namespace))

    def _pod_rows_from_tables(
        self, context: ContextConfig, names: Callable[[], list[str]], guess: bool
    ) -> list[PodRow]:
        """Pods as kubectl's table, one namespace at a time (table rows do not name their namespace).

        `guess`: the tables of the namespaces the last answer listed start at once, without waiting
        for the namespace list; namespaces new since then follow it, and the tables of those gone
        are dropped.
        """
        guessed = self._seen_namespaces.get(context.name, []) if guess else []
        tables = {ns: _TABLE_THREADS.submit(self._pod_table, context, ns) for ns in guessed}
        current = names()
        for ns in current:
            if ns not in tables:
                tables[ns] = _TABLE_THREADS.submit(self._pod_table, context, ns)
        for ns in tables.keys() - set(current):
            tables[ns].cancel()
        if guess:
            self._seen_namespaces[context.name] = current
        return [row for ns in current for row in tables[ns].result()]

    def _pod_table(self, context: ContextConfig, ns: str) -> list[PodRow]:
        listing = self._kube.list_table(context, f"{namespace_path(ns)}/pods")
        if "rows" not in listing:  # a server without tables answered with the plain list
            return [_row_of(p) for p in listing.get("items") or []]
        columns = [c.get("name") for c in listing.get("columnDefinitions") or []]
        if not {"Name", "Status", "Node"} <= set(columns):
            raise KubiliticsError(
                "The API server's pod table lacks Name, Status or Node", code="kubernetes_api_error"
            )
        name_at, status_at, node_at = columns.index("Name"), columns.index("Status"), columns.index("Node")
        rows = []
        for row in listing["rows"]:
            cells = row["cells"]
            node = cells[node_at]
            rows.append(
                PodRow(ns, cells[name_at], cells[status_at], node if node and node != "<none>" else None)
            )
        return rows

    # ---- shaping ---------------------------------------------------------------------------

    @staticmethod
    def _network_policies(listing: dict[str, Any]) -> dict[str, Any]:
        by_namespace = Counter(p["metadata"].get("namespace") for p in listing.get("items") or [])
        return {"total": sum(by_namespace.values()), "by_namespace": dict(sorted(by_namespace.items()))}

    @staticmethod
    def _namespaces(
        namespaces: list[dict[str, Any]], pods: list[PodRow], got: dict[str, Any]
    ) -> list[dict[str, Any]]:
        pod_counts = Counter(p.namespace for p in pods)
        with_quota = {q["metadata"].get("namespace") for q in got["resourcequotas"].get("items") or []}
        workloads = {
            plural: Counter(w["metadata"].get("namespace") for w in got[plural].get("items") or [])
            for plural in WORKLOADS
        }
        entries = []
        for ns in sorted(namespaces, key=lambda n: n["metadata"]["name"]):
            name = ns["metadata"]["name"]
            entries.append(
                {
                    "name": name,
                    "status": (ns.get("status") or {}).get("phase", "Active"),
                    "pod_count": pod_counts.get(name, 0),
                    "resource_quota_enforced": name in with_quota,
                    "workloads": {plural: counts.get(name, 0) for plural, counts in workloads.items()},
                }
            )
        return entries

    def _nodes(
        self, nodes: list[dict[str, Any]], pods: list[PodRow], got: dict[str, Any], depth: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        node_usage = self._usage_by_name(got.get("node_metrics"))
        pod_usage = self._pod_usage(got.get("pod_metrics"))
        owners = self._owner_resolver(got) if depth >= 4 else None
        by_node: dict[str, list[dict[str, Any]]] = {n["metadata"]["name"]: [] for n in nodes}
        counts = Counter(pod.node for pod in pods if pod.node) if depth < 3 else None  # else len(pods)
        unscheduled: list[dict[str, Any]] = []
        # Depth 3 shows a pod by its row alone: built here, not by _pod_entry (10,000 calls saved).
        plain = depth == 3 and pod_usage is None
        for pod in pods if depth >= 3 else ():
            if plain:
                shown = {"namespace": pod.namespace, "name": pod.name, "status": pod.status}
            else:
                shown = self._pod_entry(pod, depth, pod_usage, owners)
            if pod.node in by_node:
                by_node[pod.node].append(shown)
            elif not pod.node:
                unscheduled.append(shown)
        entries = []
        for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
            name = node["metadata"]["name"]
            allocatable = (node.get("status") or {}).get("allocatable") or {}
            entry: dict[str, Any] = {
                "name": name,
                "role": node_role(node),
                "status": node_status(node),
                "cpu_available_cores": format_cores(parse_quantity(allocatable.get("cpu"))),
                "memory_available_bytes": format_bytes(parse_quantity(allocatable.get("memory"))),
                "pod_count": counts.get(name, 0) if counts is not None else len(by_node[name]),
            }
            if "node_metrics" in got:  # asked for: null when metrics-server has no figures
                entry["metrics"] = self._node_metrics((node_usage or {}).get(name), allocatable)
            if depth >= 3:
                entry["pods"] = by_node[name]
            entry["taints"] = [
                {"key": t.get("key"), "value": t.get("value"), "effect": t.get("effect")}
                for t in (node.get("spec") or {}).get("taints") or []
            ]
            entries.append(entry)
        return entries, unscheduled

    @staticmethod
    def _usage_by_name(listing: Any) -> dict[str, dict[str, Any]] | None:
        if listing is None or isinstance(listing, Exception):
            return None
        return {m["metadata"]["name"]: m.get("usage") or {} for m in listing.get("items") or []}

    @staticmethod
    def _pod_usage(listing: Any) -> dict[tuple[str, str], tuple[float, float]] | None:
        """None when not asked for; empty (every pod's metrics null) when metrics-server failed."""
        if listing is None:
            return None
        if isinstance(listing, Exception):
            return {}
        usage = {}
        for item in listing.get("items") or []:
            cpu = memory = 0.0
            for container in item.get("containers") or []:
                cpu += parse_quantity((container.get("usage") or {}).get("cpu")) or 0.0
                memory += parse_quantity((container.get("usage") or {}).get("memory")) or 0.0
            usage[(item["metadata"].get("namespace"), item["metadata"]["name"])] = (cpu, memory)
        return usage

    @staticmethod
    def _node_metrics(usage: dict[str, Any] | None, allocatable: dict[str, Any]) -> dict[str, Any] | None:
        if usage is None:
            return None
        cpu, memory = parse_quantity(usage.get("cpu")), parse_quantity(usage.get("memory"))
        return {
            "cpu_usage_cores": format_cores(cpu),
            "cpu_percent": percent(cpu, parse_quantity(allocatable.get("cpu"))),
            "memory_usage_bytes": format_bytes(memory),
            "memory_percent": percent(memory, parse_quantity(allocatable.get("memory"))),
        }

    @staticmethod
    def _owner_resolver(got: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
        """Maps a pod to its top workload: ReplicaSet -> Deployment, Job -> CronJob."""
        parents: dict[tuple[str, str, str], dict[str, Any] | None] = {}
        for kind, plural in (("ReplicaSet", "replicasets"), ("Job", "jobs")):
            for item in got[plural].get("items") or []:
                meta = item["metadata"]
                parents[(kind, meta.get("namespace", ""), meta["name"])] = _controller(meta)

        def owner(pod: dict[str, Any]) -> dict[str, Any] | None:
            ref = _controller(pod["metadata"])
            if ref is None:
                return None
            parent = parents.get(
                (ref.get("kind", ""), pod["metadata"].get("namespace", ""), ref.get("name", ""))
            )
            top = parent or ref
            return {"kind": top.get("kind"), "name": top.get("name")}

        return owner

    @staticmethod
    def _pod_entry(
        row: PodRow,
        depth: int,
        usage: dict[tuple[str, str], tuple[float, float]] | None,
        owner: Callable[[dict[str, Any]], dict[str, Any] | None] | None,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"namespace": row.namespace, "name": row.name, "status": row.status}
        if usage is not None:
            used = usage.get((row.namespace, row.name))
            entry["metrics"] = (
                {"cpu_usage_cores": format_cores(used[0]), "memory_usage_bytes": format_bytes(used[1])}
                if used
                else None
            )
        pod = row.pod or {"metadata": {}}
        if owner is not None:
            entry["owner"] = owner(pod)
        if depth >= 5:
            statuses = {c.get("name"): c for c in (pod.get("status") or {}).get("containerStatuses") or []}
            entry["containers"] = [
                {
                    "name": c.get("name"),
                    "image": c.get("image"),
                    "ready": bool(statuses.get(c.get("name"), {}).get("ready")),
                    "restart_count": int(statuses.get(c.get("name"), {}).get("restartCount") or 0),
                    "state": next(
                        iter(statuses.get(c.get("name"), {}).get("state") or {"waiting": {}}), "waiting"
                    ),
                }
                for c in (pod.get("spec") or {}).get("containers") or []
            ]
        return entry
