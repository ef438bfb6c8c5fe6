"""The observability function's Lambda handler (events, metrics, topology), driven with events/ payloads.

DynamoDB is moto; Kubernetes is the real test cluster. The metrics and topology tests share one
world (module scope): a KWOK node of their own, tainted so nothing else lands on it, with a
Deployment, a lone pod, a pod no node can take, the other workload kinds, a quota, network policies
and a Service, so every figure the endpoints compute can be checked exactly.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubilitics_testbed_cluster import NAMESPACE_LABEL, wait_until

from tests.support import expect_error, invoke, load_event, revoke, with_query

EVENTS = "observability/list_events.json"
NODE_METRICS = "observability/get_node_metrics.json"
POD_METRICS = "observability/get_pod_metrics.json"
TOPOLOGY = "observability/get_topology.json"
METRICS_WAIT_SECONDS = 150


@pytest.fixture()
def handler(aws):
    return importlib.import_module("functions.observability.app").handler


def call(handler, event_file: str, token: str, **query) -> dict:
    status, _, body = invoke(handler, with_query(load_event(event_file, token=token), **query))
    assert status == 200, body
    return body


def error_of(handler, event_file: str, token: str, status: int, code: str, **query) -> dict:
    return expect_error(handler, with_query(load_event(event_file, token=token), **query), status, code)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- events -------------------------------------------------------------------------------------


@dataclass
class Story:
    namespace: str
    now: datetime


def make_event(ns: str, name: str, *, kind: str, obj: str, type_: str, reason: str, first: datetime,
               last: datetime, count: int, component: str, host: str = "") -> dict:  # fmt: skip
    source = {"component": component, **({"host": host} if host else {})}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": kind, "namespace": ns, "name": obj, "uid": f"uid-{obj}"},
        "type": type_,
        "reason": reason,
        "message": f"{reason} of {obj}",
        "firstTimestamp": rfc3339(first),
        "lastTimestamp": rfc3339(last),
        "count": count,
        "source": source,
    }


@pytest.fixture()
def story(k8s_cluster, k8s_namespace) -> Story:
    """Events with known times in an otherwise quiet namespace."""
    now = datetime.now(UTC).replace(microsecond=0)
    ns = k8s_namespace
    m = timedelta(minutes=1)
    events = [
        make_event(ns, "backoff", kind="Pod", obj="crash-1", type_="Warning", reason="BackOff",
                   first=now - 50 * m, last=now - 1 * m, count=12, component="kubelet", host="node-a"),
        make_event(ns, "scheduled", kind="Pod", obj="crash-1", type_="Normal", reason="Scheduled",
                   first=now - 30 * m, last=now - 30 * m, count=1, component="default-scheduler"),
        make_event(ns, "custom", kind="Deployment", obj="web", type_="Warning", reason="QuotaNearlyFull",
                   first=now - 20 * m, last=now - 20 * m, count=1, component="quota-watcher"),
        make_event(ns, "old-mount", kind="Pod", obj="other", type_="Warning", reason="FailedMount",
                   first=now - 180 * m, last=now - 170 * m, count=3, component="kubelet", host="node-b"),
        make_event(ns, "pulled", kind="Pod", obj="other", type_="Normal", reason="Pulled",
                   first=now - 10 * m, last=now - 10 * m, count=1, component="kubelet", host="node-b"),
    ]  # fmt: skip
    k8s_cluster.kubectl(
        "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": events})
    )
    return Story(ns, now)


def reasons(body: dict) -> list[str]:
    return [item["reason"] for item in body["items"]]


def test_events_of_the_last_hour_newest_first(aws, on_cluster, handler, mint, story):
    body = call(handler, EVENTS, mint(), namespace=story.namespace)
    # FailedMount ended 170 minutes ago: outside the default one-hour window.
    assert reasons(body) == ["BackOff", "Pulled", "QuotaNearlyFull", "Scheduled"]
    assert body["total_count"] == 4
    backoff = body["items"][0]
    assert backoff == {
        "type": "Warning",
        "reason": "BackOff",
        "message": "BackOff of crash-1",
        "involved_object": {
            "kind": "Pod",
            "namespace": story.namespace,
            "name": "crash-1",
            "uid": "uid-crash-1",
        },
        "first_timestamp": rfc3339(story.now - timedelta(minutes=50)),
        "last_timestamp": rfc3339(story.now - timedelta(minutes=1)),
        "count": 12,
        "source": {"component": "kubelet", "host": "node-a"},
    }
    assert body["items"][3]["source"] == {"component": "default-scheduler"}


def test_events_ascending_and_limited(aws, on_cluster, handler, mint, story):
    body = call(handler, EVENTS, mint(), namespace=story.namespace, sort_order="asc", limit=2)
    assert reasons(body) == ["Scheduled", "QuotaNearlyFull"]
    assert body["total_count"] == 4


def test_events_by_type(aws, on_cluster, handler, mint, story):
    token = mint()
    assert reasons(call(handler, EVENTS, token, namespace=story.namespace, event_type="Warning")) == [
        "BackOff",
        "QuotaNearlyFull",
    ]
    assert reasons(call(handler, EVENTS, token, namespace=story.namespace, event_type="normal")) == [
        "Pulled",
        "Scheduled",
    ]
    # Error: the Warnings whose reason names a failure (QuotaNearlyFull is a warning, not a failure).
    assert reasons(call(handler, EVENTS, token, namespace=story.namespace, event_type="Error")) == ["BackOff"]


def test_events_by_kind_and_name(aws, on_cluster, handler, mint, story):
    token = mint()
    pods = call(handler, EVENTS, token, namespace=story.namespace, resource_kind="pods")
    assert reasons(pods) == ["BackOff", "Pulled", "Scheduled"]
    assert {i["involved_object"]["kind"] for i in pods["items"]} == {"Pod"}
    crash = call(
        handler, EVENTS, token, namespace=story.namespace, resource_kind="Pod", resource_name="crash-1"
    )
    assert reasons(crash) == ["BackOff", "Scheduled"]
    deploy = call(
        handler, EVENTS, token, namespace=story.namespace, resource_kind="deploy", resource_name="web"
    )
    assert reasons(deploy) == ["QuotaNearlyFull"]


def test_events_in_an_explicit_window(aws, on_cluster, handler, mint, story):
    token = mint()
    since = rfc3339(story.now - timedelta(hours=4))
    everything = call(handler, EVENTS, token, namespace=story.namespace, since_time=since)
    assert reasons(everything) == ["BackOff", "Pulled", "QuotaNearlyFull", "Scheduled", "FailedMount"]
    # Up to 25 minutes ago: BackOff (running since 50 min) overlaps; Pulled (10 min ago) does not.
    until = (story.now - timedelta(minutes=25)).isoformat()  # "+00:00" offset form
    older = call(handler, EVENTS, token, namespace=story.namespace, since_time=since, until_time=until)
    assert reasons(older) == ["BackOff", "Scheduled", "FailedMount"]


def test_events_across_namespaces_include_ours(aws, on_cluster, handler, mint, story):
    body = call(handler, EVENTS, mint(), limit=1000, resource_name="crash-1")
    assert {(i["involved_object"]["namespace"], i["reason"]) for i in body["items"]} >= {
        (story.namespace, "BackOff"),
        (story.namespace, "Scheduled"),
    }


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"since_time": "yesterday"}, "since_time"),
        ({"since_time": "2026-01-01"}, "since_time"),
        ({"until_time": "2026-02-30T00:00:00Z"}, "until_time"),
        ({"since_time": "2026-02-10T15:00:00Z", "until_time": "2026-02-10T14:00:00Z"}, "since_time"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"sort_order": "up"}, "sort_order"),
        ({"event_type": "Fatal"}, "event_type"),
        ({"namespace": "Not_A_Namespace"}, "namespace"),
    ],
)
def test_bad_event_parameters_are_400(aws, on_cluster, handler, mint, query, parameter):
    body = error_of(handler, EVENTS, mint(), 400, "invalid_parameter", **query)
    assert body["details"]["parameter"] == parameter


def test_events_of_an_unknown_kind_are_400_with_the_valid_kinds(aws, on_cluster, handler, mint):
    body = error_of(handler, EVENTS, mint(), 400, "invalid_resource_kind", resource_kind="Gizmo")
    assert {"Pod", "Deployment", "Node"} <= set(body["details"]["valid_kinds"])


def test_events_of_a_missing_namespace_are_404(aws, on_cluster, handler, mint):
    body = error_of(handler, EVENTS, mint(), 404, "not_found", namespace="no-such-namespace-here")
    assert body["details"] == {"namespace": "no-such-namespace-here"}


# ---- the shared world for metrics and topology --------------------------------------------------


@dataclass
class World:
    namespace: str
    node: str
    web_pods: list[str]


def _manifests(ns: str, node: str) -> list[dict]:
    usage = lambda cpu, mem: {"kwok.x-k8s.io/usage-cpu": cpu, "kwok.x-k8s.io/usage-memory": mem}  # noqa: E731
    nginx = {"name": "app", "image": "nginx:1.27"}
    web_resources = {
        "requests": {"cpu": "200m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    nowhere = {"kubilitics.test/nowhere": "true"}
    meta = lambda name: {"name": name, "namespace": ns}  # noqa: E731
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web"), "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}, "annotations": usage("250m", "300Mi")},
                         "spec": {"nodeName": node, "containers": [{**nginx, "resources": web_resources}]}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {**meta("idle"), "annotations": usage("50m", "64Mi")},
         "spec": {"nodeName": node, "containers": [{"name": "app", "image": "memcached:1.6", "resources": {
             "requests": {"cpu": "100m", "memory": "128Mi"}}}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta("stuck"),
         "spec": {"nodeSelector": nowhere, "containers": [nginx]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("db"), "spec": {
            "replicas": 0, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [nginx]}}}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("agent"), "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"nodeSelector": nowhere, "containers": [nginx]}}}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("once"), "spec": {
            "suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [nginx]}}}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta("nightly"), "spec": {
            "schedule": "0 3 * * *", "suspend": True, "jobTemplate": {"spec": {"template": {
                "spec": {"restartPolicy": "Never", "containers": [nginx]}}}}}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta("pods"),
         "spec": {"hard": {"pods": "20"}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("deny-all"),
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("allow-web"),
         "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta("web"),
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def world(k8s_cluster) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:6]
    ns, node = f"t-obs-{suffix}", f"t-obs-node-{suffix}"
    node_manifest = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node,
            "labels": {"type": "kwok", "node-role.kubernetes.io/infra": "", "kubernetes.io/hostname": node},
            # where metrics-server finds this node's figures (kwok serves them)
            "annotations": {
                "metrics.k8s.io/resource-metrics-path": f"/metrics/nodes/{node}/metrics/resource"
            },
        },
        "spec": {"taints": [{"key": "kubilitics.test/dedicated", "value": suffix, "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
        },
    }
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": {NAMESPACE_LABEL: "true"}},
    }
    k8s_cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [node_manifest, namespace]}),
    )
    try:
        wait_until(
            lambda: k8s_cluster.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0,
            timeout=30,
            what="default ServiceAccount",
        )
        items = _manifests(ns, node)
        k8s_cluster.kubectl(
            "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        )

        def running_web_pods():
            out = k8s_cluster.kubectl("get", "pods", "-n", ns, "-o", "json").stdout
            pods = json.loads(out)["items"]
            running = {p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"}
            web = sorted(n for n in running if n.startswith("web-"))
            return web if len(web) == 2 and "idle" in running else None

        web = wait_until(running_web_pods, timeout=90, what="web pods and idle Running")
        yield World(ns, node, web)
    finally:
        k8s_cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
        k8s_cluster.kubectl("delete", "node", node, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def metered(world, k8s_cluster) -> World:
    """The world once metrics-server reports its node and all three running pods."""

    def reported():
        node = k8s_cluster.kubectl(
            "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/nodes/{world.node}", check=False
        )
        pods = k8s_cluster.kubectl(
            "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{world.namespace}/pods", check=False
        )
        return node.returncode == 0 and pods.returncode == 0 and len(json.loads(pods.stdout)["items"]) == 3

    wait_until(
        reported,
        timeout=METRICS_WAIT_SECONDS,
        interval=2,
        what="metrics-server to report the test node and pods",
    )
    return world


# ---- metrics --------------------------------------------------------------------------------------


@dataclass
class Truth:
    """What metrics-server itself says about the world, in cores and bytes."""

    node_cpu: float
    node_memory: float
    pods: dict[str, tuple[float, float]]  # pod name -> (cpu, memory) of its one container


def truth(cluster, world: World) -> Truth:
    from kubilitics.services.quantities import parse_quantity

    node = json.loads(
        cluster.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/nodes/{world.node}").stdout
    )
    pods = json.loads(
        cluster.kubectl(
            "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{world.namespace}/pods"
        ).stdout
    )
    usage = {
        p["metadata"]["name"]: (parse_quantity(c["usage"]["cpu"]), parse_quantity(c["usage"]["memory"]))
        for p in pods["items"]
        for c in p["containers"]
    }
    return Truth(parse_quantity(node["usage"]["cpu"]), parse_quantity(node["usage"]["memory"]), usage)


def steady(cluster, world: World, request):
    """The answer to `request` with metrics-server's figures from the same scrape (read before and after)."""
    for _ in range(5):
        before = truth(cluster, world)
        body = request()
        if truth(cluster, world) == before:
            return body, before
    raise AssertionError("metrics-server's figures kept changing")


def cores(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def test_node_metrics_of_one_node(aws, on_cluster, handler, mint, metered):
    token = mint()
    body, seen = steady(
        on_cluster, metered, lambda: call(handler, NODE_METRICS, token, node_name=metered.node)
    )
    assert [n["name"] for n in body["nodes"]] == [metered.node]
    node = body["nodes"][0]
    # two web pods (200m/256Mi requests, 500m/512Mi limits) and idle (100m/128Mi, no limits)
    assert node["cpu"] == {
        "usage_cores": cores(seen.node_cpu),
        "allocatable_cores": "8",
        "percent": round(seen.node_cpu * 100 / 8, 1),
        "requests_cores": "0.5",
        "limits_cores": "1",
        "requests_percent": 6.2,
        "limits_percent": 12.5,
        "throttling_detected": None,
    }
    assert node["memory"] == {
        "usage_bytes": str(round(seen.node_memory)),
        "allocatable_bytes": str(32 * 2**30),
        "percent": round(seen.node_memory * 100 / (32 * 2**30), 1),
        "requests_bytes": str(640 * 2**20),
        "limits_bytes": str(1024 * 2**20),
        "requests_percent": 2.0,
        "limits_percent": 3.1,
    }
    # The testbed's API server does not proxy to kwok's nodes (400 "address not allowed"): objects
    # with null figures, saying why, rather than a bare null a client would index into.
    assert node["network"]["rx_bytes"] is None and node["network"]["source"] == "unavailable"
    assert node["disk"]["usage_bytes"] is None and node["disk"]["source"] == "unavailable"
    assert "stats summary" in node["disk"]["reason"]
    assert node["status"] == "Ready" and node["pod_count"] == 3
    assert set(body) == {"timestamp", "nodes"}


def test_node_metrics_sorted_by_usage(aws, on_cluster, handler, mint, metered):
    token = mint()
    by_name = call(handler, NODE_METRICS, token)["nodes"]
    names = [n["name"] for n in by_name]
    assert names == sorted(names) and metered.node in names
    for sort_by, field, resource in (
        ("cpu_usage", "usage_cores", "cpu"),
        ("memory_usage", "usage_bytes", "memory"),
    ):
        nodes = call(handler, NODE_METRICS, token, sort_by=sort_by)["nodes"]
        values = [float(n[resource][field]) if n[resource][field] is not None else -1.0 for n in nodes]
        assert values == sorted(values, reverse=True)  # largest first, nodes without figures last
        assert metered.node in {n["name"] for n in nodes}  # (other tests add and remove nodes meanwhile)


def test_pod_metrics_against_requests_and_limits(aws, on_cluster, handler, mint, metered):
    token = mint()
    body, seen = steady(
        on_cluster, metered, lambda: call(handler, POD_METRICS, token, namespace=metered.namespace)
    )
    assert [p["name"] for p in body["pods"]] == ["idle", *metered.web_pods]  # running pods only, by name
    assert body["total_count"] == 3
    web = body["pods"][1]
    assert web["namespace"] == metered.namespace and web["node_name"] == metered.node
    cpu, memory = seen.pods[web["name"]]
    assert web["containers"] == [
        {
            "name": "app",
            "cpu": {
                "usage_cores": cores(cpu),
                "requests": "0.2",
                "limits": "0.5",
                "percent_of_request": round(cpu * 100 / 0.2, 1),
                "percent_of_limit": round(cpu * 100 / 0.5, 1),
            },
            "memory": {
                "usage_bytes": str(round(memory)),
                "requests": str(256 * 2**20),
                "limits": str(512 * 2**20),
                "percent_of_request": round(memory * 100 / (256 * 2**20), 1),
                "percent_of_limit": round(memory * 100 / (512 * 2**20), 1),
            },
        }
    ]
    idle = body["pods"][0]["containers"][0]
    assert (idle["cpu"]["requests"], idle["cpu"]["limits"], idle["cpu"]["percent_of_limit"]) == (
        "0.1",
        None,
        None,
    )
    assert idle["memory"]["percent_of_request"] == round(seen.pods["idle"][1] * 100 / (128 * 2**20), 1)


def test_pod_metrics_sorted_limited_and_by_name(aws, on_cluster, handler, mint, metered):
    token = mint()
    for sort_by, index in (("cpu_usage", 0), ("memory_usage", 1)):
        body, seen = steady(
            on_cluster,
            metered,
            lambda sort_by=sort_by: call(
                handler, POD_METRICS, token, namespace=metered.namespace, sort_by=sort_by
            ),
        )
        # largest first, ties by name
        expected = sorted(
            seen.pods, key=lambda name, i=index: (-round(seen.pods[name][i], 3 if i == 0 else 0), name)
        )
        assert [p["name"] for p in body["pods"]] == expected
    top = call(handler, POD_METRICS, token, namespace=metered.namespace, sort_by="memory_usage", limit=1)
    assert len(top["pods"]) == 1 and top["total_count"] == 3
    one = call(handler, POD_METRICS, token, namespace=metered.namespace, pod_name="idle")
    assert [p["name"] for p in one["pods"]] == ["idle"]
    anywhere = call(handler, POD_METRICS, token, pod_name="idle", limit=1000)
    assert (metered.namespace, "idle") in {(p["namespace"], p["name"]) for p in anywhere["pods"]}


def test_pod_metrics_of_a_pod_that_is_not_running_is_404(aws, on_cluster, handler, mint, world):
    body = error_of(
        handler, POD_METRICS, mint(), 404, "not_found", namespace=world.namespace, pod_name="stuck"
    )
    assert body["details"] == {"namespace": world.namespace, "pod_name": "stuck"}
    error_of(handler, POD_METRICS, mint(), 404, "not_found", namespace=world.namespace, pod_name="ghost")


@pytest.mark.parametrize(
    ("event_file", "query", "status", "code"),
    [
        (NODE_METRICS, {"node_name": "no-such-node"}, 404, "not_found"),
        (NODE_METRICS, {"node_name": "Bad_Node"}, 400, "invalid_parameter"),
        (NODE_METRICS, {"sort_by": "disk"}, 400, "invalid_parameter"),
        (POD_METRICS, {"namespace": "no-such-namespace-here"}, 404, "not_found"),
        (POD_METRICS, {"namespace": "Bad_NS"}, 400, "invalid_parameter"),
        (POD_METRICS, {"pod_name": "bad/name"}, 400, "invalid_parameter"),
        (POD_METRICS, {"limit": 0}, 400, "invalid_parameter"),
        (POD_METRICS, {"limit": 1001}, 400, "invalid_parameter"),
        (POD_METRICS, {"sort_by": "network"}, 400, "invalid_parameter"),
    ],
)
def test_bad_metrics_requests(aws, on_cluster, handler, mint, event_file, query, status, code):
    error_of(handler, event_file, mint(), status, code, **query)


# ---- metrics-server absent or down: a proxy in front of the test cluster -----------------------


class _MetricsBlockingProxy(BaseHTTPRequestHandler):
    """Forwards to the test cluster; metrics.k8s.io is either not served or answers 503."""

    mode = "absent"
    upstream = None

    def do_GET(self) -> None:
        path = self.path
        if path.startswith("/apis/metrics.k8s.io"):
            if self.mode == "down":  # what the aggregator answers when metrics-server is gone
                body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "message": "service unavailable", "reason": "ServiceUnavailable",
                                   "code": 503}).encode()  # fmt: skip
                self._reply(503, body)
                return
            path = path.replace("/apis/metrics.k8s.io", "/apis/metrics-absent.k8s.io", 1)  # a real 404
        pool, server = self.upstream
        response = pool.request("GET", server + path, headers={"Accept": self.headers.get("Accept", "*/*")})
        self._reply(response.status, response.data, response.headers.get("Content-Type", "application/json"))

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(params=["absent", "down"])
def without_metrics(request, settings_env, k8s_cluster, tmp_path: Path):
    import urllib3
    from kubilitics import container
    from kubilitics.adapters.kube_rest import KubeRestClient
    from kubilitics.adapters.kubeconfig import KubeconfigSource

    # the testbed's TLS and client certificate, as the product itself loads them
    context = KubeconfigSource(path=Path(k8s_cluster.kubeconfig)).get().resolve(k8s_cluster.context)
    upstream = (
        urllib3.PoolManager(ssl_context=KubeRestClient(context).ssl_context, maxsize=32),
        context.server,
    )
    handler_class = type("Proxy", (_MetricsBlockingProxy,), {"mode": request.param, "upstream": upstream})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: proxied\n"
        f"clusters: [{{name: proxied, cluster: {{server: 'http://127.0.0.1:{server.server_port}'}}}}]\n"
        "users: [{name: u, user: {}}]\ncontexts: [{name: proxied, context: {cluster: proxied, user: u}}]\n"
    )
    settings_env.setenv("KUBILITICS_KUBECONFIG", str(kubeconfig))
    container.reset()
    yield request.param
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("event_file", [NODE_METRICS, POD_METRICS])
def test_metrics_without_metrics_server_are_503(aws, without_metrics, handler, mint, event_file):
    status, headers, body = invoke(handler, load_event(event_file, token=mint()))
    assert (status, body["error"]) == (503, "service_unavailable"), body
    assert headers["retry-after"] == "30"
    expected = "metrics_api_not_installed" if without_metrics == "absent" else "metrics_server_unavailable"
    assert body["details"]["reason"] == expected
    assert body["details"]["api"] == "metrics.k8s.io/v1beta1"


def test_topology_degrades_without_metrics_server(aws, without_metrics, handler, mint):
    body = call(handler, TOPOLOGY, mint(), depth=3)
    assert body["metrics_available"] is False
    assert body["nodes"] and all(node["metrics"] is None for node in body["nodes"])
    assert body["cluster"]["total_nodes"] == len(body["nodes"])


# ---- topology -------------------------------------------------------------------------------------


def my_node(body: dict, world: World) -> dict:
    return next(n for n in body["nodes"] if n["name"] == world.node)


def test_topology_of_a_namespace(aws, on_cluster, handler, mint, world):
    body = call(handler, TOPOLOGY, mint(), namespace=world.namespace, include_metrics=False)
    server_version = json.loads(on_cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    cluster_name = on_cluster.kubectl(
        "config", "view", "--minify", "-o", "jsonpath={.clusters[0].name}"
    ).stdout
    assert body["cluster"] == {
        "name": cluster_name,
        "version": server_version["gitVersion"].lstrip("v"),
        "total_nodes": len(body["nodes"]),
        "total_pods": 4,  # two web pods, idle, stuck
        "total_services": 1,
    }
    assert body["namespaces"] == [
        {
            "name": world.namespace,
            "status": "Active",
            "pod_count": 4,
            "resource_quota_enforced": True,
            "workloads": {"deployments": 1, "statefulsets": 1, "daemonsets": 1, "jobs": 1, "cronjobs": 1},
        }
    ]
    assert body["network_policies"] == {"total": 2, "by_namespace": {world.namespace: 2}}
    node = my_node(body, world)
    assert {
        k: node[k] for k in ("role", "status", "cpu_available_cores", "memory_available_bytes", "pod_count")
    } == {
        "role": "infra",
        "status": "Ready",
        "cpu_available_cores": "8",
        "memory_available_bytes": str(32 * 2**30),
        "pod_count": 3,
    }
    assert node["taints"] == [
        {"key": "kubilitics.test/dedicated", "value": world.node.rsplit("-", 1)[1], "effect": "NoSchedule"}
    ]
    assert node["pods"] == [
        {"namespace": world.namespace, "name": name, "status": "Running"}
        for name in ["idle", *world.web_pods]
    ]
    assert body["unscheduled_pods"] == [{"namespace": world.namespace, "name": "stuck", "status": "Pending"}]
    assert "metrics_available" not in body and "metrics" not in node
    # the other nodes are listed, without pods of this namespace
    assert all(n["pods"] == [] and n["pod_count"] == 0 for n in body["nodes"] if n["name"] != world.node)


def test_topology_depths(aws, on_cluster, handler, mint, world):
    token = mint()
    one = call(handler, TOPOLOGY, token, namespace=world.namespace, depth=1)
    assert (one["nodes"], one["namespaces"]) == ([], [])
    assert one["cluster"]["total_pods"] == 4 and one["cluster"]["total_services"] == 1
    assert one["cluster"]["total_nodes"] >= 4  # the testbed's three and ours
    assert one["network_policies"]["total"] == 2
    assert "unscheduled_pods" not in one and "metrics_available" not in one

    two = call(handler, TOPOLOGY, token, namespace=world.namespace, depth=2, include_metrics=False)
    node = my_node(two, world)
    assert "pods" not in node and node["pod_count"] == 3
    assert two["namespaces"][0]["pod_count"] == 4 and "unscheduled_pods" not in two

    four = call(handler, TOPOLOGY, token, namespace=world.namespace, depth=4, include_metrics=False)
    owners = {p["name"]: p["owner"] for p in my_node(four, world)["pods"]}
    assert owners == {
        "idle": None,
        **{name: {"kind": "Deployment", "name": "web"} for name in world.web_pods},
    }
    assert four["unscheduled_pods"][0]["owner"] is None

    five = call(handler, TOPOLOGY, token, namespace=world.namespace, depth=5, include_metrics=False)
    web = next(p for p in my_node(five, world)["pods"] if p["name"] == world.web_pods[0])
    assert web["containers"] == [
        {"name": "app", "image": "nginx:1.27", "ready": True, "restart_count": 0, "state": "running"}
    ]
    assert web["status"] == "Running" and web["owner"] == {"kind": "Deployment", "name": "web"}


def test_topology_with_metrics(aws, on_cluster, handler, mint, metered):
    token = mint()
    body, seen = steady(
        on_cluster, metered, lambda: call(handler, TOPOLOGY, token, namespace=metered.namespace, depth=4)
    )
    assert body["metrics_available"] is True
    node = my_node(body, metered)
    assert node["metrics"] == {
        "cpu_usage_cores": cores(seen.node_cpu),
        "cpu_percent": round(seen.node_cpu * 100 / 8, 1),
        "memory_usage_bytes": str(round(seen.node_memory)),
        "memory_percent": round(seen.node_memory * 100 / (32 * 2**30), 1),
    }
    web = next(p for p in node["pods"] if p["name"] == metered.web_pods[0])
    cpu, memory = seen.pods[web["name"]]
    assert web["metrics"] == {"cpu_usage_cores": cores(cpu), "memory_usage_bytes": str(round(memory))}
    assert body["unscheduled_pods"][0]["metrics"] is None
    # depth 3 (the default): the nodes' figures only, not the pods'
    three = call(handler, TOPOLOGY, token, namespace=metered.namespace)
    assert my_node(three, metered)["metrics"] is not None
    assert all("metrics" not in p for p in my_node(three, metered)["pods"])


def test_topology_with_recent_warnings(aws, on_cluster, handler, mint, world, k8s_cluster):
    def failed_scheduling():
        out = k8s_cluster.kubectl(
            "get",
            "events",
            "-n",
            world.namespace,
            "--field-selector",
            "reason=FailedScheduling",
            "-o",
            "name",
        )
        return out.stdout.strip()

    wait_until(failed_scheduling, timeout=60, what="the scheduler's FailedScheduling event for stuck")
    body = call(
        handler, TOPOLOGY, mint(), namespace=world.namespace, include_events=True, include_metrics=False
    )
    events = body["events"]
    assert events["window_seconds"] == 3600 and events["warning_count"] >= 1
    stuck = [e for e in events["recent_warnings"] if e["involved_object"].get("name") == "stuck"]
    assert stuck and stuck[0]["reason"] == "FailedScheduling" and stuck[0]["type"] == "Warning"
    assert stuck[0]["source"]["component"] == "default-scheduler"
    assert "events" not in call(handler, TOPOLOGY, mint(), namespace=world.namespace, include_metrics=False)


def test_topology_of_the_whole_cluster(aws, on_cluster, handler, mint, world):
    body = call(handler, TOPOLOGY, mint(), include_metrics=False)
    namespaces = {n["name"]: n for n in body["namespaces"]}
    assert {"default", "kube-system", world.namespace} <= set(namespaces)
    assert namespaces[world.namespace]["pod_count"] == 4
    assert my_node(body, world)["pod_count"] == 3
    # every pod is on a node or unscheduled, and counted once
    placed = sum(len(n["pods"]) for n in body["nodes"]) + len(body["unscheduled_pods"])
    assert body["cluster"]["total_pods"] == sum(n["pod_count"] for n in body["namespaces"]) >= placed
    assert body["network_policies"]["by_namespace"][world.namespace] == 2


def test_topology_follows_namespaces_made_and_deleted_since_the_last_call(
    aws, on_cluster, handler, mint, k8s_cluster, k8s_namespace
):
    # A repeated topology starts the pod tables of the namespaces it saw last time before the
    # namespace list is in: one made since must still be read, one deleted since must be gone.
    token = mint()
    assert k8s_namespace in {
        n["name"] for n in call(handler, TOPOLOGY, token, include_metrics=False)["namespaces"]
    }
    made = k8s_namespace[:55] + "-made"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "waiting", "namespace": made},
        "spec": {"schedulerName": "no-such-scheduler", "containers": [{"name": "c", "image": "busybox"}]},
    }
    k8s_cluster.kubectl("create", "namespace", made)
    try:
        k8s_cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))
        k8s_cluster.kubectl("delete", "namespace", k8s_namespace, "--wait=true", "--timeout=60s")

        body = call(handler, TOPOLOGY, token, include_metrics=False)
        namespaces = {n["name"]: n for n in body["namespaces"]}
        assert k8s_namespace not in namespaces
        assert namespaces[made]["pod_count"] == 1
        assert {"namespace": made, "name": "waiting", "status": "Pending"} in body["unscheduled_pods"]
    finally:
        k8s_cluster.kubectl("delete", "namespace", made, "--wait=false", check=False)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"depth": 0}, 400, "invalid_parameter"),
        ({"depth": 6}, 400, "invalid_parameter"),
        ({"depth": "deep"}, 400, "invalid_parameter"),
        ({"include_metrics": "perhaps"}, 400, "invalid_parameter"),
        ({"include_events": "2"}, 400, "invalid_parameter"),
        ({"namespace": "UPPER"}, 400, "invalid_parameter"),
        ({"namespace": "no-such-namespace-here"}, 404, "not_found"),
    ],
)
def test_bad_topology_requests(aws, on_cluster, handler, mint, query, status, code):
    error_of(handler, TOPOLOGY, mint(), status, code, **query)


# ---- auth and rate limits (every endpoint) ----------------------------------------------------

ALL = [EVENTS, NODE_METRICS, POD_METRICS, TOPOLOGY]


@pytest.mark.parametrize("event_file", ALL)
def test_without_a_token_is_401(aws, on_cluster, handler, event_file):
    expect_error(handler, load_event(event_file, token=None), 401, "unauthorized")


@pytest.mark.parametrize("event_file", ALL)
def test_expired_token_is_401(aws, on_cluster, handler, mint, event_file):
    token = mint(now=time.time() - 7200, ttl_seconds=3600)
    expect_error(handler, load_event(event_file, token=token), 401, "token_expired")


@pytest.mark.parametrize("event_file", ALL)
def test_revoked_token_is_401(aws, on_cluster, handler, mint, event_file):

    token = mint()
    revoke(token)
    expect_error(handler, load_event(event_file, token=token), 401, "token_revoked")


@pytest.mark.parametrize("event_file", ALL)
def test_a_token_without_read_scope_is_403(aws, on_cluster, handler, mint, event_file):
    body = expect_error(handler, load_event(event_file, token=mint(scopes="exec")), 403, "insufficient_scope")
    assert body["details"]["required_scope"] == "read"


@pytest.mark.parametrize(("event_file", "limit"), [(EVENTS, "200"), (NODE_METRICS, "100"), (TOPOLOGY, "50")])
def test_rate_limit_categories(aws, on_cluster, handler, mint, event_file, limit):
    query = {"namespace": "default"} if event_file != NODE_METRICS else {}
    status, headers, _ = invoke(
        handler, with_query(load_event(event_file, token=mint(sub=f"rl-{limit}")), **query)
    )
    assert status in (200, 503)  # metrics may be unavailable; the limit headers are there either way
    assert headers["x-ratelimit-limit"] == limit
    assert headers["x-ratelimit-remaining"] == str(int(limit) - 1)


def test_a_token_bound_to_another_cluster_is_403(aws, on_cluster, handler, mint):
    event = load_event(
        TOPOLOGY, token=mint(cluster_id="elsewhere"), headers={"x-kubeconfig-context": on_cluster.context}
    )
    expect_error(handler, event, 403, "forbidden")
