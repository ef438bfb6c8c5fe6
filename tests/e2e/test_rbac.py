"""Per-caller authorization on the local server: the cluster's RBAC decides what each caller sees.

alice's token holds every scope but no group; the cluster binds her (`kubilitics:<alice>`) to the
`view` ClusterRole in namespace A only. The admin token's group is bound to cluster-admin. Every
door is tried: REST routes, the watch, logs and shell WebSockets, investigations, their listings.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.test_realtime import error_of, receive, send, socket, subscribe
from tests.pods_testbed import create_namespace, delete_namespace
from tests.support import dev_token

pytestmark = pytest.mark.cluster

ALL_SCOPES = "read,write,delete,exec"


def workload(namespace: str) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: {namespace}, labels: {{app: web}}}}
spec:
  containers:
  - {{name: app, image: busybox:1.36, command: ["sh", "-c", "echo serving; sleep infinity"]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: db, namespace: {namespace}}}
stringData: {{password: hunter2hunter2}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {namespace}}}
data: {{mode: blue}}
"""


@dataclass
class World:
    a: str  # alice may view here
    b: str  # and nothing here
    alice: str  # her token's sub

    def token(self, scopes: str = ALL_SCOPES, **claims: Any) -> str:
        claims.setdefault("groups", [])  # no group: only her own bindings count
        return dev_token(self.alice, scopes, **claims)


@pytest.fixture(scope="module")
def world(k8s_cluster) -> Iterator[World]:
    a, b = create_namespace(k8s_cluster, "rbac-a"), create_namespace(k8s_cluster, "rbac-b")
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    for ns in (a, b):
        k8s_cluster.kubectl("apply", "-f", "-", input=workload(ns))
    k8s_cluster.kubectl(
        "create", "rolebinding", "alice-view", "-n", a, "--clusterrole=view", f"--user=kubilitics:{alice}"
    )
    yield World(a, b, alice)
    delete_namespace(k8s_cluster, a)
    delete_namespace(k8s_cluster, b)


def call(
    server, method: str, path: str, token: str | None, body: Any = None, **params: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(
        method, server.url + path, headers=headers, params=params or None, json=body, timeout=60
    )


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.json().get("error")) == (status, code), response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "message", "details", "timestamp", "trace_id"}
    return body


# ---- REST -------------------------------------------------------------------------------------------


def test_alice_reads_pods_where_she_may_and_nothing_else(local_server, world, k8s_cluster):
    token = world.token()
    mine = call(local_server, "GET", "/api/v1/resources/Pod", token, namespace=world.a)
    assert mine.status_code == 200, mine.text
    assert [p["metadata"]["name"] for p in mine.json()["items"]] == ["web"]

    other = refused(
        call(local_server, "GET", "/api/v1/resources/Pod", token, namespace=world.b), 403, "forbidden"
    )
    assert f"kubilitics:{world.alice}" in other["message"] and world.b in other["message"]
    refused(call(local_server, "GET", "/api/v1/resources/Pod", token), 403, "forbidden")  # every namespace
    for ns in (world.a, world.b, None):  # `view` never includes Secrets
        listing = call(
            local_server, "GET", "/api/v1/resources/Secret", token, **({"namespace": ns} if ns else {})
        )
        assert "hunter2" not in listing.text
        refused(listing, 403, "forbidden")
    refused(call(local_server, "DELETE", f"/api/v1/resources/Pod/{world.a}/web", token), 403, "forbidden")
    exec_body = {"command": ["echo", "hi"]}
    refused(
        call(local_server, "POST", f"/api/v1/pods/{world.a}/web/exec", token, exec_body), 403, "forbidden"
    )
    refused(call(local_server, "GET", f"/api/v1/pods/{world.b}/web/logs", token), 403, "forbidden")
    refused(call(local_server, "GET", "/api/v1/events", token, namespace=world.b), 403, "forbidden")
    refused(call(local_server, "GET", "/api/v1/namespaces", token), 403, "forbidden")
    # Nothing changed: the pod alice tried to delete is still there.
    assert k8s_cluster.kubectl("get", "pod", "web", "-n", world.a, "-o", "name").stdout.strip() == "pod/web"


def test_the_admin_scope_is_no_way_around_rbac(local_server, world):
    admin_without_group = dev_token(world.alice, "admin", groups=[], token_type="admin")
    refused(
        call(local_server, "GET", "/api/v1/resources/Secret", admin_without_group, namespace=world.a),
        403,
        "forbidden",
    )


def test_investigations_follow_rbac(local_server, world):
    body = {"resource_kind": "Pod", "resource_name": "web", "investigation_scope": "quick"}
    refused(
        call(local_server, "POST", "/api/v1/ai/investigate", world.token(), {**body, "namespace": world.b}),
        403,
        "forbidden",
    )
    admin = call(
        local_server,
        "POST",
        "/api/v1/ai/investigate",
        local_server.admin_token,
        {**body, "namespace": world.b},
    )
    assert admin.status_code == 202, admin.text
    hers = call(local_server, "POST", "/api/v1/ai/investigate", world.token(), {**body, "namespace": world.a})
    assert hers.status_code == 202, hers.text

    def listed(token: str) -> set[str]:
        response = call(local_server, "GET", "/api/v1/ai/investigations", token, limit=500)
        assert response.status_code == 200, response.text
        return {i["investigation_id"] for i in response.json()["items"]}

    assert hers.json()["investigation_id"] in listed(world.token())
    assert admin.json()["investigation_id"] not in listed(world.token())
    assert admin.json()["investigation_id"] in listed(local_server.admin_token)


# ---- the authentication matrix: every REST route, every way a caller can be refused ---------------------

# (method, path, body, scope the route needs, what alice's RBAC-denied call gets: an error code, or
# "listed" for listings that leave out what she may not read). {b} is the namespace she may not see.
ROUTES = [
    ("GET", "/api/v1/resources/Pod?namespace={b}", None, "read", "forbidden"),
    ("POST", "/api/v1/resources/ConfigMap?validate_only=true", "configmap", "write", "forbidden"),
    ("PUT", "/api/v1/resources/ConfigMap/{b}/settings", "configmap", "write", "forbidden"),
    ("DELETE", "/api/v1/resources/ConfigMap/{b}/settings?dry_run=true", None, "delete", "forbidden"),
    ("GET", "/api/v1/namespaces", None, "read", "forbidden"),
    ("GET", "/api/v1/events?namespace={b}", None, "read", "forbidden"),
    ("GET", "/api/v1/metrics/nodes", None, "read", "forbidden"),
    ("GET", "/api/v1/metrics/pods?namespace={b}", None, "read", "forbidden"),
    ("GET", "/api/v1/topology?namespace={b}", None, "read", "forbidden"),
    ("GET", "/api/v1/pods/{b}/web/logs", None, "read", "forbidden"),
    ("POST", "/api/v1/pods/{b}/web/exec", {"command": ["echo", "hi"]}, "exec", "forbidden"),
    ("POST", "/api/v1/ai/investigate", "investigation", "write", "forbidden"),
    ("GET", "/api/v1/ai/investigations", None, "read", "listed"),
    ("GET", "/api/v1/ai/insights", None, "read", "listed"),
    ("GET", "/api/v1/ai/actions/pending", None, "read", "listed"),
]
WRONG_SCOPE = {"read": "exec", "write": "read", "delete": "read,write", "exec": "read,write"}


def route_call(server, world, route, token: str | None) -> httpx.Response:
    method, path, body, _, _ = route
    if body == "configmap":
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings" if method == "PUT" else "new-settings", "namespace": world.b},
            "data": {"mode": "green"},
        }
    elif body == "investigation":
        body = {
            "resource_kind": "Pod",
            "resource_name": "web",
            "namespace": world.b,
            "investigation_scope": "quick",
        }
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, server.url + path.format(b=world.b), headers=headers, json=body, timeout=60)


@pytest.fixture(scope="module")
def revoked(local_server, world) -> str:
    token = world.token(groups=["cluster-admins"])
    assert local_server.cli("token", "revoke", "--token", token).returncode == 0
    return token


@pytest.mark.parametrize("route", ROUTES, ids=[f"{r[0]} {r[1].split('?')[0]}" for r in ROUTES])
def test_every_route_refuses_each_kind_of_caller_it_must(local_server, world, revoked, route):
    _, _, _, scope, denied = route
    refused(route_call(local_server, world, route, None), 401, "unauthorized")
    expired = dev_token("late", ALL_SCOPES, exp=int(time.time()) - 10)
    refused(route_call(local_server, world, route, expired), 401, "token_expired")
    refused(route_call(local_server, world, route, revoked), 401, "token_revoked")
    wrong = refused(
        route_call(local_server, world, route, world.token(WRONG_SCOPE[scope])), 403, "insufficient_scope"
    )
    assert wrong["details"]["required_scope"] == scope

    allowed = route_call(local_server, world, route, local_server.admin_token)
    assert 200 <= allowed.status_code < 300, allowed.text
    as_alice = route_call(local_server, world, route, world.token())
    if denied == "listed":
        assert as_alice.status_code == 200, as_alice.text
        assert world.b not in as_alice.text  # nothing of the namespace she may not read
    else:
        refused(as_alice, 403, denied)


# ---- WebSockets ----------------------------------------------------------------------------------------


def test_watch_subscriptions_follow_rbac(local_server, world):
    with socket(local_server, world.token()) as ws:
        subscribe(ws, resource_kind="Pod", namespace=world.a, subscription_id="mine")
        for fields in (
            {"resource_kind": "Pod", "namespace": world.b},
            {"resource_kind": "Pod"},  # every namespace
            {"resource_kind": "Secret", "namespace": world.a},
        ):
            reply = error_of(ws, {"action": "subscribe", **fields})
            assert (reply["status"], reply["error"]["error"]) == (403, "forbidden"), reply
            assert reply["error"]["details"]["verb"] == "watch"
        for follow in (False, True):
            logs = error_of(ws, {"action": "logs", "namespace": world.b, "pod_name": "web", "follow": follow})
            assert (logs["status"], logs["error"]["error"]) == (403, "forbidden"), logs


def test_a_shell_needs_pods_exec(local_server, world):
    with socket(local_server, world.token(), "/api/v1/shell") as ws:
        send(ws, {"action": "init", "namespace": world.a, "pod_name": "web", "rows": 24, "cols": 80})
        deadline = time.monotonic() + 30
        reply = receive(ws, timeout=30)
        while reply["type"] == "output" and time.monotonic() < deadline:
            reply = receive(ws, timeout=30)
        assert reply["type"] == "ERROR", reply
        assert reply["error"]["error"] == "forbidden", reply
        assert "pods/exec" in reply["error"]["message"] or "exec" in reply["error"]["message"]


def test_chat_reads_with_the_callers_rights(local_server, world):
    from tests.e2e.test_ai_chat import ask, chat

    def about(namespace: str) -> dict[str, Any]:
        return {
            "message": "Is web ok?",
            "context": {"resource_kind": "Pod", "namespace": namespace, "resource_name": "web"},
        }

    with chat(local_server, world.token()) as ws:
        denied = ask(ws, about(world.b))
        assert (denied["type"], denied["error"]["error"]) == ("ERROR", "forbidden"), denied
        allowed = ask(ws, about(world.a))  # the same connection goes on
        assert allowed["type"] == "CHAT" and f"About Pod {world.a}/web" in allowed["response"], allowed
