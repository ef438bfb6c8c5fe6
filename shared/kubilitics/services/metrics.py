"""Node and pod metrics (reference section 6): usage from metrics.k8s.io, capacity from the objects.

metrics-server reports CPU and memory only; a node's network and disk figures come from its kubelet's
stats summary through the API server's node proxy (as the caller: it needs `get nodes/proxy`). Where
that is not served, they are objects whose figures are null, with `source` and `reason` saying why.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.clock import rfc3339
from kubilitics.errors import KubiliticsError, NotFound
from kubilitics.kube_paths import segment
from kubilitics.ports import KubernetesPort
from kubilitics.services.cluster import (
    check_namespace_name,
    check_object_name,
    namespace_path,
    require_namespace,
)
from kubilitics.services.quantities import format_bytes, format_cores, parse_quantity, percent

METRICS_API = "/apis/metrics.k8s.io/v1beta1"
METRICS_RETRY_AFTER_SECONDS = 30
NON_TERMINATED = "status.phase!=Succeeded,status.phase!=Failed"
STATS_TIMEOUT_SECONDS = 3.0  # per node: a kubelet that does not answer must not hold the whole answer
STATS_WORKERS = 8
STATS_SOURCE = "kubelet_stats_summary"


def node_stats(kube: KubernetesPort, context: ContextConfig, name: str) -> dict[str, Any]:
    """The kubelet's stats summary of one node (its `node` part), or {"error": why} when not served."""
    try:
        summary = kube.get_path(
            context, f"/api/v1/nodes/{segment(name)}/proxy/stats/summary", timeout=STATS_TIMEOUT_SECONDS
        )
    except KubiliticsError as exc:
        if exc.code == "forbidden":
            return {"error": "the caller may not get nodes/proxy (RBAC)"}
        return {
            "error": f"the node proxy did not serve the kubelet's stats summary ({exc.code}: {exc.message})"
        }
    except Exception as exc:  # a kubelet that times out or answers garbage leaves the figures null
        return {"error": f"the node proxy did not answer ({type(exc).__name__})"}
    node = summary.get("node") if isinstance(summary, dict) else None
    return node if isinstance(node, dict) else {"error": "the kubelet's stats summary has no node figures"}


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def network_and_disk(stats: dict[str, Any], node: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The reference's `network` and `disk` objects: figures from the stats summary, else nulls."""
    if "error" in stats:
        unavailable = {"source": "unavailable", "reason": stats["error"]}
        return (
            {"rx_bytes": None, "tx_bytes": None, "rx_errors": None, "tx_errors": None, **unavailable},
            {"usage_bytes": None, "allocatable_bytes": None, "percent": None, **unavailable},
        )
    net = stats.get("network") or {}
    interfaces = net.get("interfaces") or ([net] if net.get("name") or "rxBytes" in net else [])

    def total(field: str) -> int | None:
        values = [_count(i.get(field)) for i in interfaces if isinstance(i, dict)]
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    rx, tx = total("rxBytes"), total("txBytes")
    network = {
        "rx_bytes": None if rx is None else str(rx),
        "tx_bytes": None if tx is None else str(tx),
        "rx_errors": total("rxErrors"),
        "tx_errors": total("txErrors"),
        "source": STATS_SOURCE,
    }
    fs = stats.get("fs") or {}
    used = _count(fs.get("usedBytes"))
    allocatable = parse_quantity(
        ((node.get("status") or {}).get("allocatable") or {}).get("ephemeral-storage")
    )
    if allocatable is None:
        allocatable = _count(fs.get("capacityBytes"))
    disk = {
        "usage_bytes": format_bytes(used),
        "allocatable_bytes": format_bytes(allocatable),
        "percent": percent(used, allocatable),
        "source": STATS_SOURCE,
    }
    return network, disk


def metrics_unavailable(exc: KubiliticsError) -> KubiliticsError:
    """The 503 a client gets when metrics-server is not installed or not answering."""
    installed = exc.code != "not_found"
    reason = "metrics_server_unavailable" if installed else "metrics_api_not_installed"
    message = (
        "metrics-server is not answering (metrics.k8s.io is registered but unavailable)"
        if installed
        else "metrics.k8s.io is not served by this cluster: install metrics-server"
    )
    return KubiliticsError(
        message,
        code="service_unavailable",
        details={"reason": reason, "api": "metrics.k8s.io/v1beta1", "upstream": exc.message},
        headers={"Retry-After": str(METRICS_RETRY_AFTER_SECONDS)},
    )


def read_metrics(kube: KubernetesPort, context: ContextConfig, path: str) -> list[dict[str, Any]]:
    """Items of a metrics.k8s.io list; 503 service_unavailable when the metrics API cannot answer."""
    try:
        items: list[dict[str, Any]] = kube.get_path(context, METRICS_API + path).get("items") or []
    except KubiliticsError as exc:
        if exc.code in ("not_found", "kubernetes_api_error", "too_many_requests"):
            raise metrics_unavailable(exc) from exc
        raise
    return items


def node_status(node: dict[str, Any]) -> str:
    """Ready / NotReady / Unknown from the Ready condition, as kubectl shows it."""
    ready = next(
        (c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None
    )
    status = {"True": "Ready", "False": "NotReady"}.get((ready or {}).get("status", ""), "Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    return status


def container_resources(container: dict[str, Any]) -> dict[str, float | None]:
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    return {
        "cpu_request": parse_quantity(requests.get("cpu")),
        "cpu_limit": parse_quantity(limits.get("cpu")),
        "memory_request": parse_quantity(requests.get("memory")),
        "memory_limit": parse_quantity(limits.get("memory")),
    }


def usage_of(container_metrics: dict[str, Any]) -> tuple[float | None, float | None]:
    usage = container_metrics.get("usage") or {}
    return parse_quantity(usage.get("cpu")), parse_quantity(usage.get("memory"))


class MetricsService:
    def __init__(self, kube: KubernetesPort):
        self._kube = kube

    def nodes(
        self, context: ContextConfig, *, now: float, node_name: str | None = None, sort_by: str = "name"
    ) -> dict[str, Any]:
        if node_name:
            check_object_name(node_name, "node_name")
        selector = NON_TERMINATED + (f",spec.nodeName={node_name}" if node_name else "")
        with (
            ThreadPoolExecutor(max_workers=3) as pool,
            ThreadPoolExecutor(max_workers=STATS_WORKERS) as stats_pool,
        ):
            stats_calls = {}
            if node_name:
                nodes_call = pool.submit(self._kube.get_path, context, f"/api/v1/nodes/{segment(node_name)}")
                stats_calls[node_name] = stats_pool.submit(node_stats, self._kube, context, node_name)
            else:
                nodes_call = pool.submit(self._kube.get_path, context, "/api/v1/nodes")
            metrics_call = pool.submit(read_metrics, self._kube, context, "/nodes")
            pods_call = pool.submit(self._kube.get_path, context, "/api/v1/pods", {"fieldSelector": selector})
            try:
                result = nodes_call.result()
            except KubiliticsError as exc:
                if exc.code == "not_found" and node_name:
                    raise NotFound(f"Node {node_name!r} not found", details={"node_name": node_name}) from exc
                raise
            node_items = [result] if node_name else result.get("items") or []
            for node in node_items:  # each node's kubelet, through the node proxy, as the caller
                name = node["metadata"]["name"]
                if name not in stats_calls:
                    stats_calls[name] = stats_pool.submit(node_stats, self._kube, context, name)
            usage = {m["metadata"]["name"]: m.get("usage") or {} for m in metrics_call.result()}
            pods = pods_call.result().get("items") or []
            stats = {name: call.result() for name, call in stats_calls.items()}

        requested: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if not node:
                continue
            totals = requested[node]
            totals["pods"] += 1
            for container in (pod.get("spec") or {}).get("containers") or []:
                for key, value in container_resources(container).items():
                    totals[key] += value or 0.0

        entries = [
            self._node_entry(node, usage, requested, stats.get(node["metadata"]["name"]) or {})
            for node in node_items
        ]
        if sort_by == "cpu_usage":
            entries.sort(key=lambda e: (-(parse_quantity(e["cpu"]["usage_cores"]) or -1.0), e["name"]))
        elif sort_by == "memory_usage":
            entries.sort(key=lambda e: (-(parse_quantity(e["memory"]["usage_bytes"]) or -1.0), e["name"]))
        elif sort_by == "network":  # most traffic (rx + tx) first, nodes without figures last
            entries.sort(
                key=lambda e: (-sum(int(e["network"][k] or 0) for k in ("rx_bytes", "tx_bytes")), e["name"])
            )
        else:
            entries.sort(key=lambda e: e["name"])
        return {"timestamp": rfc3339(now), "nodes": entries}

    @staticmethod
    def _node_entry(
        node: dict[str, Any],
        usage: dict[str, dict[str, str]],
        requested: dict[str, dict[str, float]],
        stats: dict[str, Any],
    ) -> dict[str, Any]:
        name = node["metadata"]["name"]
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        cpu_alloc, mem_alloc = (
            parse_quantity(allocatable.get("cpu")),
            parse_quantity(allocatable.get("memory")),
        )
        cpu_used = parse_quantity((usage.get(name) or {}).get("cpu"))
        mem_used = parse_quantity((usage.get(name) or {}).get("memory"))
        totals = requested.get(name) or {}
        network, disk = network_and_disk(stats, node)
        return {
            "name": name,
            "cpu": {
                "usage_cores": format_cores(cpu_used),
                "allocatable_cores": format_cores(cpu_alloc),
                "percent": percent(cpu_used, cpu_alloc),
                "requests_cores": format_cores(totals.get("cpu_request", 0.0)),
                "limits_cores": format_cores(totals.get("cpu_limit", 0.0)),
                "requests_percent": percent(totals.get("cpu_request", 0.0), cpu_alloc),
                "limits_percent": percent(totals.get("cpu_limit", 0.0), cpu_alloc),
                "throttling_detected": None,  # CFS throttling is not in metrics.k8s.io
            },
            "memory": {
                "usage_bytes": format_bytes(mem_used),
                "allocatable_bytes": format_bytes(mem_alloc),
                "percent": percent(mem_used, mem_alloc),
                "requests_bytes": format_bytes(totals.get("memory_request", 0.0)),
                "limits_bytes": format_bytes(totals.get("memory_limit", 0.0)),
                "requests_percent": percent(totals.get("memory_request", 0.0), mem_alloc),
                "limits_percent": percent(totals.get("memory_limit", 0.0), mem_alloc),
            },
            "network": network,
            "disk": disk,
            "status": node_status(node),
            "pod_count": int(totals.get("pods", 0)),
        }

    def pods(
        self,
        context: ContextConfig,
        *,
        now: float,
        namespace: str | None = None,
        pod_name: str | None = None,
        sort_by: str = "name",
        limit: int = 100,
    ) -> dict[str, Any]:
        if namespace:
            check_namespace_name(namespace)
        if pod_name:
            check_object_name(pod_name, "pod_name")
        base = namespace_path(namespace) if namespace else "/api/v1"
        selector = "status.phase=Running" + (f",metadata.name={pod_name}" if pod_name else "")
        metrics_path = f"/namespaces/{segment(namespace)}/pods" if namespace else "/pods"
        with ThreadPoolExecutor(max_workers=3) as pool:
            checked = pool.submit(require_namespace, self._kube, context, namespace) if namespace else None
            pods_call = pool.submit(self._kube.get_path, context, f"{base}/pods", {"fieldSelector": selector})
            metrics_call = pool.submit(read_metrics, self._kube, context, metrics_path)
            if checked is not None:
                checked.result()
            pods = pods_call.result().get("items") or []
            metrics = {
                (m["metadata"].get("namespace"), m["metadata"]["name"]): m for m in metrics_call.result()
            }
        if pod_name and not pods:
            raise NotFound(
                f"No running pod named {pod_name!r}" + (f" in namespace {namespace!r}" if namespace else ""),
                details={"namespace": namespace, "pod_name": pod_name},
            )

        entries = [self._pod_entry(pod, metrics) for pod in pods]
        if sort_by in ("cpu_usage", "memory_usage"):
            resource = "cpu" if sort_by == "cpu_usage" else "memory"
            field = "usage_cores" if resource == "cpu" else "usage_bytes"

            def total(entry: dict[str, Any]) -> float:
                values = [parse_quantity(c[resource][field]) for c in entry["containers"]]
                known = [v for v in values if v is not None]
                return sum(known) if known else -1.0

            entries.sort(key=lambda e: (-total(e), e["namespace"], e["name"]))
        else:
            entries.sort(key=lambda e: (e["namespace"], e["name"]))
        return {"timestamp": rfc3339(now), "total_count": len(entries), "pods": entries[:limit]}

    @staticmethod
    def _pod_entry(
        pod: dict[str, Any], metrics: dict[tuple[str | None, str], dict[str, Any]]
    ) -> dict[str, Any]:
        meta = pod["metadata"]
        pod_metrics = metrics.get((meta.get("namespace"), meta["name"])) or {}
        usage = {c.get("name"): usage_of(c) for c in pod_metrics.get("containers") or []}
        containers = []
        for container in (pod.get("spec") or {}).get("containers") or []:
            res = container_resources(container)
            cpu_used, mem_used = usage.get(container.get("name"), (None, None))
            containers.append(
                {
                    "name": container.get("name"),
                    "cpu": {
                        "usage_cores": format_cores(cpu_used),
                        "requests": format_cores(res["cpu_request"]),
                        "limits": format_cores(res["cpu_limit"]),
                        "percent_of_request": percent(cpu_used, res["cpu_request"]),
                        "percent_of_limit": percent(cpu_used, res["cpu_limit"]),
                    },
                    "memory": {
                        "usage_bytes": format_bytes(mem_used),
                        "requests": format_bytes(res["memory_request"]),
                        "limits": format_bytes(res["memory_limit"]),
                        "percent_of_request": percent(mem_used, res["memory_request"]),
                        "percent_of_limit": percent(mem_used, res["memory_limit"]),
                    },
                }
            )
        return {
            "namespace": meta.get("namespace"),
            "name": meta["name"],
            "node_name": (pod.get("spec") or {}).get("nodeName"),
            "containers": containers,
        }
