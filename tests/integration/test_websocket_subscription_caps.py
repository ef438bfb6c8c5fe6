"""Watch subscription caps on API Gateway's WebSocket path: the websocket Lambda with events/
payloads, DynamoDB and post_to_connection on moto, the real test cluster (review M4)."""

from __future__ import annotations

import importlib

import pytest

from tests.integration.test_websocket_functions import ENDPOINT, Invocations, connect, event, posted
from tests.support import LambdaContext

pytestmark = pytest.mark.cluster


@pytest.fixture()
def ws(aws, settings_env, k8s_cluster):
    from kubilitics import container

    settings_env.setenv("KUBILITICS_KUBECONFIG", k8s_cluster.kubeconfig)
    settings_env.setenv("KUBILITICS_WEBSOCKET_ENDPOINT", ENDPOINT)
    settings_env.setenv("KUBILITICS_WATCH_RELAY_FUNCTION", "watch-relay")
    settings_env.setenv("KUBILITICS_WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", "4")
    settings_env.setenv("KUBILITICS_WS_MAX_SUBSCRIPTIONS_PER_USER", "6")
    container.reset()
    container.get_container().__dict__["lambda_invoker"] = Invocations()
    return importlib.import_module("functions.websocket.app").handler


def subscribe(ws, connection_id: str, subscription_id: str, namespace: str) -> dict:
    body = {
        "action": "subscribe",
        "resource_kind": "Pod",
        "namespace": namespace,
        "subscription_id": subscription_id,
    }
    ws(event("subscribe.json", connection_id, body), LambdaContext())
    return posted(connection_id)[-1]


def test_subscriptions_are_capped_per_connection_and_per_user(ws, mint, k8s_namespace):
    token = mint(sub="watcher")
    for connection_id in ("w1", "w2", "w3"):
        assert connect(ws, connection_id, token) == {"statusCode": 200}
    answers = [subscribe(ws, "w1", f"s{i}", k8s_namespace) for i in range(5)]
    assert [a["type"] for a in answers] == ["SUBSCRIBED"] * 4 + ["ERROR"]
    refused = answers[-1]
    assert (refused["status"], refused["subscription_id"]) == (429, "s4")
    assert refused["error"]["error"] == "rate_limit_exceeded"
    assert refused["error"]["details"] == {
        "category": "watch_subscriptions",
        "concurrent_limit": 4,
        "scope": "connection",
    }

    answers = [subscribe(ws, "w2", f"t{i}", k8s_namespace) for i in range(3)]
    assert [a["type"] for a in answers] == ["SUBSCRIBED"] * 2 + ["ERROR"]
    assert answers[-1]["error"]["details"]["scope"] == "user"
    assert answers[-1]["error"]["details"]["concurrent_limit"] == 6

    # Closing a connection gives its subscriptions back ($disconnect).
    ws(event("disconnect.json", "w1"), LambdaContext())
    assert [subscribe(ws, "w3", f"u{i}", k8s_namespace)["type"] for i in range(4)] == ["SUBSCRIBED"] * 4
    assert subscribe(ws, "w3", "u4", k8s_namespace)["error"]["details"]["scope"] == "connection"
