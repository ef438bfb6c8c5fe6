"""Namespaces, contexts, events, metrics and topology over real HTTP on the local server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx


def get(server, path: str, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.admin_token}", "X-Request-ID": "req-e2e-observability"}
    return httpx.get(server.url + path, params=params, headers=headers, timeout=60)


def test_namespaces_list_ours_and_hide_the_system_ones(local_server, k8s_namespace):
    response = get(local_server, "/api/v1/namespaces", limit=1000)
    assert response.status_code == 200, response.text
    names = {item["name"]: item for item in response.json()["items"]}
    assert k8s_namespace in names and "kube-system" not in names
    assert names[k8s_namespace]["pod_count"] == 0 and names[k8s_namespace]["status"] == "Active"
    assert response.headers["x-ratelimit-limit"] == "2000"  # admin token: 10x the 200 reads a minute


def test_contexts_show_the_test_cluster_reachable(local_server, k8s_cluster):
    response = get(local_server, "/api/v1/contexts")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current_context"] == k8s_cluster.context
    (context,) = [c for c in body["contexts"] if c["name"] == k8s_cluster.context]
    version = json.loads(k8s_cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert context["is_reachable"] is True and context["kubernetes_version"] == version.lstrip("v")


def test_events_of_a_namespace(local_server, k8s_cluster, k8s_namespace):
    now = datetime.now(UTC)
    stamp = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e2e-backoff", "namespace": k8s_namespace},
        "involvedObject": {"kind": "Pod", "namespace": k8s_namespace, "name": "crashy"},
        "type": "Warning",
        "reason": "BackOff",
        "message": "Back-off restarting failed container",
        "firstTimestamp": stamp(now - timedelta(minutes=5)),
        "lastTimestamp": stamp(now - timedelta(minutes=1)),
        "count": 4,
        "source": {"component": "kubelet", "host": "testbed-node-1"},
    }
    k8s_cluster.kubectl("create", "-f", "-", input=json.dumps(event))
    response = get(local_server, "/api/v1/events", namespace=k8s_namespace, event_type="Error")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total_count"] == 1
    assert {k: body["items"][0][k] for k in ("reason", "count", "source")} == {
        "reason": "BackOff",
        "count": 4,
        "source": {"component": "kubelet", "host": "testbed-node-1"},
    }


def ready_status(cluster, node: str) -> str:
    """The node's STATUS as kubectl derives it from the Ready condition."""
    query = '{.status.conditions[?(@.type=="Ready")].status}'
    ready = cluster.kubectl("get", "node", node, "-o", f"jsonpath={query}").stdout.strip()
    return {"True": "Ready", "False": "NotReady"}.get(ready, "Unknown")


def test_node_metrics_list_the_test_nodes(local_server, k8s_cluster):
    response = get(local_server, "/api/v1/metrics/nodes", sort_by="name")
    assert response.status_code == 200, response.text
    nodes = {n["name"]: n for n in response.json()["nodes"]}
    node = nodes["testbed-node-1"]
    assert node["cpu"]["allocatable_cores"] == "4" and node["memory"]["allocatable_bytes"] == str(16 * 2**30)
    assert node["status"] == ready_status(k8s_cluster, "testbed-node-1")
    # The testbed's nodes serve no kubelet stats summary: objects with null figures, and why.
    assert node["network"]["rx_bytes"] is None and node["network"]["source"] == "unavailable"
    assert node["disk"]["usage_bytes"] is None and node["disk"]["source"] == "unavailable"


def test_topology_summary_and_nodes(local_server, k8s_cluster, k8s_namespace):
    response = get(local_server, "/api/v1/topology", depth=2, include_metrics="false")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cluster"]["total_nodes"] == len(body["nodes"]) >= 3
    namespaces = {n["name"] for n in body["namespaces"]}
    assert {"default", "kube-system", k8s_namespace} <= namespaces
    node = next(n for n in body["nodes"] if n["name"] == "testbed-node-1")
    assert node["cpu_available_cores"] == "4" and "pods" not in node
    assert node["status"] == ready_status(k8s_cluster, "testbed-node-1")


def test_bad_topology_depth_is_a_400_with_the_standard_body(local_server):
    response = get(local_server, "/api/v1/topology", depth=9)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_parameter" and body["details"]["parameter"] == "depth"
    assert body["trace_id"] == response.headers["x-request-id"] == "req-e2e-observability"
