"""The resources endpoints over real HTTP on the local server (section 3 of the reference)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.support import dev_token


def token(scope: str) -> str:
    return dev_token(f"e2e-resources-{uuid.uuid4().hex[:6]}", scope)


@pytest.fixture()
def http(local_server):
    client = httpx.Client(
        base_url=local_server.url + "/api/v1/resources",
        headers={"Authorization": f"Bearer {token('read,write,delete')}"},
        timeout=30,
    )
    yield client
    client.close()


def configmap(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"key": name},
    }


def names(response: httpx.Response) -> list[str]:
    return [item["metadata"]["name"] for item in response.json()["items"]]


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code and body["trace_id"] == response.headers["x-request-id"]
    return body


def test_paging_over_http(http, k8s_cluster, k8s_namespace):
    items = [configmap(f"cm-{i:02d}", k8s_namespace, batch="pages") for i in range(23)]
    k8s_cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )

    first = http.get(
        "/ConfigMap", params={"namespace": k8s_namespace, "label_selector": "batch=pages", "limit": 10}
    )
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit"] == "200"
    body = first.json()
    assert (body["kind"], body["api_version"], body["total_count"]) == ("ConfigMap", "v1", 23)
    assert body["page"] == {"limit": 10, "offset": 0, "returned": 10, "has_more": True}
    assert names(first) == [f"cm-{i:02d}" for i in range(10)]

    last = http.get(
        "/configmaps", params={"namespace": k8s_namespace, "label_selector": "batch", "offset": 20}
    )
    assert last.json()["page"] == {"limit": 50, "offset": 20, "returned": 3, "has_more": False}

    everything = http.get("/cm", params={"namespace": k8s_namespace, "limit": 5, "offset": 20})
    assert everything.json()["total_count"] == 24  # and kube-root-ca.crt
    assert names(everything) == ["cm-20", "cm-21", "cm-22", "kube-root-ca.crt"]

    newest_name = http.get(
        "/ConfigMap", params={"namespace": k8s_namespace, "sort_by": "name", "sort_order": "desc", "limit": 2}
    )
    assert names(newest_name) == ["kube-root-ca.crt", "cm-22"]


def test_create_update_delete_over_http(http, k8s_cluster, k8s_namespace):
    dry = http.post(
        "/ConfigMap", params={"validate_only": "true"}, json=configmap("app-config", k8s_namespace)
    )
    assert dry.status_code == 201 and dry.json()["metadata"]["name"] == "app-config"

    created = http.post("/ConfigMap", json=configmap("app-config", k8s_namespace, app="web"))
    assert created.status_code == 201, created.text
    assert created.headers["x-ratelimit-limit"] == "50"
    error(http.post("/ConfigMap", json=configmap("app-config", k8s_namespace)), 409, "already_exists")

    path = f"/ConfigMap/{k8s_namespace}/app-config"
    replaced = http.put(path, json={**created.json(), "data": {"key1": "value1"}})
    assert replaced.status_code == 200 and replaced.json()["data"] == {"key1": "value1"}
    error(http.put(path, json={**created.json(), "data": {"stale": "1"}}), 409, "resource_conflict")

    merged = http.put(path, params={"patch_strategy": "merge_patch"}, json={"data": {"key2": "value2"}})
    assert merged.json()["data"] == {"key1": "value1", "key2": "value2"}
    stored = json.loads(
        k8s_cluster.kubectl("get", "cm", "app-config", "-n", k8s_namespace, "-o", "json").stdout
    )
    assert stored["data"] == {"key1": "value1", "key2": "value2"}

    deleted = http.delete(path)
    assert deleted.status_code == 200 and deleted.json()["details"]["name"] == "app-config"
    missing = error(http.delete(path), 404, "not_found")
    assert missing["resource_kind"] == "ConfigMap"


def test_input_errors_over_http(http, k8s_namespace):
    body = error(http.get("/Gizmo"), 400, "invalid_resource_kind")
    assert "Pod" in body["details"]["valid_kinds"]
    error(http.get("/Pod", params={"label_selector": "app=("}), 400, "invalid_label_selector")
    error(http.get("/Pod", params={"field_selector": "status.phase"}), 400, "invalid_field_selector")
    for limit in (0, 501):
        assert (
            error(http.get("/Pod", params={"limit": limit}), 400, "invalid_parameter")["details"]["parameter"]
            == "limit"
        )
    error(http.get("/Pod", params={"namespace": "no-such-namespace-e2e"}), 404, "not_found")
    bad_name = error(
        http.post("/ConfigMap", json=configmap("Bad_Name", k8s_namespace)), 400, "validation_failed"
    )
    assert bad_name["violations"][0]["reason"] == "invalid_dns1123"
    mismatch = error(http.post("/Secret", json=configmap("x", k8s_namespace)), 400, "validation_failed")
    assert mismatch["violations"][0]["field"] == "kind"
    error(
        http.post("/ConfigMap", content=b"{oops", headers={"content-type": "application/json"}),
        400,
        "validation_failed",
    )
    # An HTTP client resolves a literal ".." itself; encoded, it reaches the server and is refused there.
    dots = error(http.delete(f"/ConfigMap/{k8s_namespace}/%2E%2E"), 400, "invalid_parameter")
    assert dots["message"] == "'..' is not a valid object name"


def test_cluster_scoped_kind_over_http(http, k8s_cluster):
    nodes = k8s_cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
    listed = http.get("/Node")
    assert listed.status_code == 200 and listed.json()["total_count"] == len(nodes)
    error(http.delete("/Node/default/some-node"), 400, "invalid_parameter")


def test_scopes_over_http(local_server, k8s_namespace):
    url = local_server.url + "/api/v1/resources"
    assert httpx.get(f"{url}/Pod", timeout=30).json()["error"] == "unauthorized"
    reader = {"Authorization": f"Bearer {token('read')}"}
    listed = httpx.get(f"{url}/Pod", params={"namespace": k8s_namespace}, headers=reader, timeout=30)
    assert listed.status_code == 200 and listed.json()["total_count"] == 0
    refused = httpx.post(f"{url}/ConfigMap", json=configmap("x", k8s_namespace), headers=reader, timeout=30)
    body = error(refused, 403, "insufficient_scope")
    assert body["details"]["required_scope"] == "write"
    writer = {"Authorization": f"Bearer {token('write')}"}
    refused = httpx.delete(f"{url}/ConfigMap/{k8s_namespace}/x", headers=writer, timeout=30)
    assert error(refused, 403, "insufficient_scope")["details"]["required_scope"] == "delete"


def test_openapi_lists_the_resources_routes(local_server):
    spec = httpx.get(local_server.url + "/openapi.json", timeout=10).json()
    assert {"/api/v1/resources/{kind}", "/api/v1/resources/{kind}/{namespace}/{name}"} <= set(spec["paths"])
