"""Chat at any scope on the test cluster, through the WebSocket API's `chat` route (functions/websocket;
DynamoDB and API Gateway's management API are moto, every post_to_connection recorded).

Our namespace holds a bare pod `orders` that crash-loops. Rules only (no AI key): a namespace alone,
a question naming the namespace, a kind without a name, a node and the cluster's nodes are each
answered with their roll-up, read as the caller; a caller without a binding gets the API server's 403.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_websocket_functions import ENDPOINT, connect, event, posted
from tests.investigations_testbed import CRASHING_POD, wait_for
from tests.pods_testbed import create_namespace, delete_namespace
from tests.support import LambdaContext

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def crashing(k8s_cluster) -> Iterator[str]:
    ns = create_namespace(k8s_cluster, "chat-int")
    try:
        k8s_cluster.kubectl("apply", "-n", ns, "-f", "-", input=CRASHING_POD)
        wait_for(
            lambda: "CrashLoopBackOff"
            in str(
                k8s_cluster.kubectl(
                    "get", "pod", "orders", "-n", ns, "-o",
                    "jsonpath={.status.containerStatuses[*].state.waiting.reason}", check=False,
                ).stdout
            ),
            timeout=120,
            what="orders crash-looping",
        )  # fmt: skip
        yield ns
    finally:
        delete_namespace(k8s_cluster, ns)


@pytest.fixture()
def ws(aws, on_cluster, settings_env):
    from kubilitics import container

    settings_env.setenv("KUBILITICS_WEBSOCKET_ENDPOINT", ENDPOINT)
    container.reset()
    return importlib.import_module("functions.websocket.app").handler


def say(ws, connection_id: str, body: dict[str, Any]) -> dict[str, Any]:
    before = len(posted(connection_id))
    assert (
        ws(event("chat.json", connection_id, {"action": "chat", **body}), LambdaContext())["statusCode"]
        == 200
    )
    sent = posted(connection_id)
    assert len(sent) == before + 1, sent
    answer: dict[str, Any] = sent[-1]
    return answer


def test_namespace_and_words_and_a_kind_without_a_name(ws, mint, crashing):
    connect(ws, "scope-1", mint(sub="sam", scopes="read"))
    by_context = say(ws, "scope-1", {"message": "What is broken here?", "context": {"namespace": crashing}})
    assert by_context["type"] == "CHAT", by_context
    assert by_context["scope"] == {"kind": "Namespace", "name": crashing, "routed": "context"}
    assert by_context["root_cause"]["category"] == "app_crash"
    assert by_context["root_cause"]["subject"] == {"kind": "Pod", "namespace": crashing, "name": "orders"}
    assert (
        by_context["response"].splitlines()[1].startswith(f"1. Pod {crashing}/orders [critical, app crash]: ")
    )
    assert [s for s in by_context["suggestions"] if s["type"] == "investigate"] == [
        {"type": "investigate", "text": f"Investigate Pod {crashing}/orders: app crash"}
    ]

    by_words = say(ws, "scope-1", {"message": f"is anything failing in {crashing}?"})
    assert by_words["scope"] == {"kind": "Namespace", "name": crashing, "routed": "words"}
    assert by_words["response"] == by_context["response"]

    pods = say(
        ws,
        "scope-1",
        {"message": "and the pods?", "context": {"resource_kind": "Pod", "namespace": crashing}},
    )
    assert pods["scope"]["resource_kind"] == "Pod" and pods["root_cause"]["subject"]["name"] == "orders"
    deployments = say(
        ws,
        "scope-1",
        {"message": "deployments?", "context": {"resource_kind": "Deployment", "namespace": crashing}},
    )
    assert deployments["root_cause"]["category"] == "healthy"  # there are none: nothing of that kind broken
    assert deployments["response"].startswith(f"Namespace {crashing} is healthy: 0 of 0 workloads affected")

    # The exchanges are kept with what each one read.
    from kubilitics.container import get_container

    history = get_container().chat_history.recent(by_context["session_id"], 10)
    assert [h["scope"]["kind"] for h in history] == ["Namespace"] * 4
    assert history[1]["context"] is None and history[1]["scope"]["routed"] == "words"


def test_a_node_and_the_clusters_nodes(ws, mint, k8s_cluster, crashing):
    node = str(
        k8s_cluster.kubectl("get", "pod", "orders", "-n", crashing, "-o", "jsonpath={.spec.nodeName}").stdout
    )
    assert node
    connect(ws, "scope-2", mint(sub="sam", scopes="read"))
    one = say(
        ws, "scope-2", {"message": "how is it?", "context": {"resource_kind": "Node", "resource_name": node}}
    )
    assert one["type"] == "CHAT", one
    assert one["scope"] == {"kind": "Node", "name": node, "routed": "context"}
    assert one["root_cause"]["category"] == "healthy"  # orders fails for reasons of its own, not the node's
    assert node in one["response"]

    nodes = say(ws, "scope-2", {"message": "and all nodes?", "context": {"resource_kind": "Node"}})
    assert nodes["scope"] == {"kind": "Cluster", "resource_kind": "Node", "routed": "context"}
    # The cluster's nodes only: the namespaces (our crash-looping pod's among them) are not rolled up.
    assert crashing not in nodes["response"] and "orders" not in nodes["response"]
    total = len(k8s_cluster.kubectl("get", "nodes", "-o", "name").stdout.split())
    assert nodes["response"].startswith(
        (
            f"The cluster's {total} node(s) are healthy: all ready, none under pressure.",
            "What is broken in the cluster (its nodes): ",
        )
    ), nodes
    looked_at = [
        s["text"] for s in nodes["suggestions"] if s["type"] == "investigate" and "insights" not in s["text"]
    ]
    assert all(t.startswith(("Investigate Node ", "Start a full investigation of Node ")) for t in looked_at)


def test_a_caller_without_a_binding_gets_a_403(ws, mint, crashing):
    connect(ws, "scope-3", mint(sub=f"nobody-{crashing}", scopes="read", groups=()))
    refused = say(ws, "scope-3", {"message": "?", "context": {"namespace": crashing}})
    assert refused["type"] == "ERROR" and refused["status"] == 403, refused
    assert refused["error"]["error"] == "forbidden" and crashing in refused["error"]["message"]
    assert "orders" not in json.dumps(refused)
    cluster = say(ws, "scope-3", {"message": "what is broken in the cluster?"})
    assert cluster["type"] == "ERROR" and cluster["status"] == 403
