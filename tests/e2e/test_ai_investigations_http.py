"""Investigations and actions over real HTTP on the local server: the state machine runs on moto's
interpreter inside the server process, its tasks on the server's own code, against the test cluster."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.investigations_testbed import CRASHING_POD, oom_deployment, pod_terminated_reason, wait_for


def call(
    base: str, method: str, path: str, token: str, body: object | None = None, **params
) -> httpx.Response:
    return httpx.request(
        method,
        base + path,
        headers={"Authorization": f"Bearer {token}"},
        json=body,
        params=params,
        timeout=60,
    )


@pytest.fixture(scope="module")
def troubled(k8s_cluster):
    """A crashlooping pod and an OOMKilled Deployment whose doubled memory limit is enough."""
    from tests.pods_testbed import create_namespace, delete_namespace

    ns = create_namespace(k8s_cluster, "inv-http")
    k8s_cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=CRASHING_POD + "\n---\n" + oom_deployment("worker", "400Mi")
    )
    wait_for(
        lambda: "OOMKilled" in pod_terminated_reason(k8s_cluster, ns, "app=worker"), 120, "worker OOMKilled"
    )
    wait_for(lambda: "Error" in pod_terminated_reason(k8s_cluster, ns, "app=orders"), 120, "orders to crash")
    yield ns
    delete_namespace(k8s_cluster, ns)


def investigate(server, namespace: str, kind: str, name: str) -> dict:
    token = server.admin_token
    started = call(
        server.ai_url,
        "POST",
        "/api/v1/ai/investigate",
        token,
        {"resource_kind": kind, "namespace": namespace, "resource_name": name},
    )
    assert started.status_code == 202, started.text
    investigation_id = started.json()["investigation_id"]
    deadline = time.monotonic() + 90
    while True:
        listed = call(
            server.url,
            "GET",
            "/api/v1/ai/investigations",
            token,
            namespace=namespace,
            include_findings="true",
        )
        assert listed.status_code == 200, listed.text
        item = next(i for i in listed.json()["items"] if i["investigation_id"] == investigation_id)
        if item["status"] in ("completed", "failed"):
            return item
        assert time.monotonic() < deadline, item
        time.sleep(0.2)


def test_an_investigation_over_http(local_server, troubled):
    item = investigate(local_server, troubled, "Pod", "orders")
    assert item["status"] == "completed", item
    assert item["root_cause"]["category"] == "app_crash"
    assert item["progress_percent"] == 100 and item["evidence"]


def test_an_unknown_target_is_refused(local_server, troubled):
    response = call(
        local_server.url,
        "POST",
        "/api/v1/ai/investigate",
        local_server.admin_token,
        {"resource_kind": "Pod", "namespace": troubled, "resource_name": "ghost"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_investigation_request"
    assert response.json()["details"] == {
        "namespace": troubled,
        "resource_name": "ghost",
        "resource_kind": "Pod",
    }


def test_an_action_proposed_approved_and_verified_over_http(local_server, troubled, k8s_cluster):
    item = investigate(local_server, troubled, "Deployment", "worker")
    assert item["root_cause"]["category"] == "oom_killed", item
    token = local_server.admin_token
    pending = call(
        local_server.ai_url,
        "GET",
        "/api/v1/ai/actions/pending",
        token,
        investigation_id=item["investigation_id"],
    )
    assert pending.status_code == 200, pending.text
    [action] = pending.json()["pending_actions"]
    assert action["changes"] == {
        "spec.template.spec.containers[worker].resources.limits.memory": {
            "current": "400Mi",
            "proposed": "800Mi",
        }
    }
    approved = call(
        local_server.url,
        "POST",
        f"/api/v1/ai/actions/{action['action_id']}/approve",
        token,
        {"approval_notes": "e2e"},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["execution_status"] == "succeeded", approved.json()
    limit = k8s_cluster.kubectl(
        "get",
        "deployment",
        "worker",
        "-n",
        troubled,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}",
    ).stdout
    assert limit == "800Mi"
    again = call(local_server.url, "POST", f"/api/v1/ai/actions/{action['action_id']}/approve", token)
    assert again.status_code == 409 and again.json()["error"] == "resource_conflict"
