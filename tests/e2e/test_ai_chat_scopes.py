"""Chat at any scope through the local server's WebSocket, on the test cluster (issue 15, item 5).

A namespace of our own holds a healthy `web` Deployment and an `orders` Deployment that crash-loops
behind its Service. Without an AI key (the shared `local_server`) a partial context or a question
that names the namespace or the workload gets the ranked roll-up in plain language with an
`investigate` suggestion per problem; with the fake Messages API the model receives the roll-up and
calls the investigation's read-only tools, as the caller, within the chat's turn limit. A caller
bound to `view` in one namespace gets that one's roll-up and a 403 for the other.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import start_local_server
from tests.e2e.test_ai_chat import ask, chat
from tests.fakes.messages_api import FakeMessagesAPI
from tests.investigations_testbed import NODES, wait_for
from tests.pods_testbed import create_namespace, delete_namespace
from tests.support import dev_token

pytestmark = pytest.mark.cluster

WORKLOADS = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      {NODES}
      containers:
        - name: nginx
          image: nginx:1.27
          resources: {{requests: {{cpu: 10m, memory: 32Mi}}, limits: {{memory: 128Mi}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: orders}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: orders}}}}
  template:
    metadata: {{labels: {{app: orders}}}}
    spec:
      {NODES}
      containers:
        - name: orders
          image: ghcr.io/kubilitics-demo/orders:2.3.1
          ports: [{{containerPort: 8080, name: http}}]
          resources: {{requests: {{cpu: 10m, memory: 32Mi}}, limits: {{memory: 128Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: orders}}
spec:
  selector: {{app: orders}}
  ports: [{{port: 80, targetPort: http}}]
"""


def _jsonpath(cluster, kind: str, ns: str, path: str, *names: str) -> str:
    args = ["get", kind, *names, "-n", ns, "-o", f"jsonpath={path}"]
    return str(cluster.kubectl(*args, check=False).stdout)


@dataclass
class Shop:
    ns: str  # web healthy, orders crash-looping
    other: str  # web healthy only: alice may not read it
    alice: str  # bound to `view` in `ns` only


@pytest.fixture(scope="module")
def shop(k8s_cluster) -> Iterator[Shop]:
    ns, other = create_namespace(k8s_cluster, "chat-scope"), create_namespace(k8s_cluster, "chat-other")
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    try:
        k8s_cluster.kubectl("apply", "-n", ns, "-f", "-", input=WORKLOADS)
        k8s_cluster.kubectl("apply", "-n", other, "-f", "-", input=WORKLOADS.split("---")[0])
        k8s_cluster.kubectl(
            "create",
            "rolebinding",
            "alice-view",
            "-n",
            ns,
            "--clusterrole=view",
            f"--user=kubilitics:{alice}",
        )
        wait_for(
            lambda: _jsonpath(k8s_cluster, "deployment", ns, "{.status.readyReplicas}", "web") == "1",
            timeout=120,
            what="web ready",
        )
        wait_for(
            lambda: (
                "CrashLoopBackOff"
                in _jsonpath(
                    k8s_cluster, "pods", ns, "{.items[*].status.containerStatuses[*].state.waiting.reason}"
                )
            ),
            timeout=120,
            what="orders crash-looping",
        )
        yield Shop(ns, other, alice)
    finally:
        delete_namespace(k8s_cluster, ns)
        delete_namespace(k8s_cluster, other)


def investigate_texts(answer: dict[str, Any]) -> list[str]:
    return [s["text"] for s in answer["suggestions"] if s["type"] == "investigate"]


# ---- rules only (no AI key) ----------------------------------------------------------------------


def test_namespace_alone_is_its_ranked_roll_up(local_server, shop):
    with chat(local_server, dev_token("chat-scope-ns")) as ws:
        answer = ask(ws, {"message": "What is broken here?", "context": {"namespace": shop.ns}})
    assert answer["type"] == "CHAT", answer
    assert answer["source"] == "rules"
    assert answer["scope"] == {"kind": "Namespace", "name": shop.ns, "routed": "context"}
    assert answer["root_cause"]["category"] == "app_crash"
    assert answer["root_cause"]["subject"] == {"kind": "Deployment", "namespace": shop.ns, "name": "orders"}
    lines = answer["response"].splitlines()
    # orders and the Service it empties; web is fine
    assert lines[0] == f"What is broken in Namespace {shop.ns}: 2 of 3 workload(s) affected, " + (
        "1 problem(s), most severe first:"
    )
    assert lines[1].startswith(
        f"1. Deployment {shop.ns}/orders [critical, app crash] (takes down Service/{shop.ns}/orders): "
    )
    assert investigate_texts(answer) == [f"Investigate Deployment {shop.ns}/orders: app crash"]


def test_a_question_naming_the_namespace_or_the_workload_is_routed_to_it(local_server, shop):
    with chat(local_server, dev_token("chat-scope-words")) as ws:
        named = ask(ws, {"message": f"what is broken in {shop.ns}?"})
        assert named["scope"] == {"kind": "Namespace", "name": shop.ns, "routed": "words"}, named
        assert investigate_texts(named) == [f"Investigate Deployment {shop.ns}/orders: app crash"]

        healthy = ask(ws, {"message": f"Is anything wrong in {shop.other}?"})
        assert healthy["scope"] == {"kind": "Namespace", "name": shop.other, "routed": "words"}
        assert healthy["root_cause"]["category"] == "healthy"
        assert healthy["response"].startswith(f"Namespace {shop.other} is healthy: 0 of 1 workloads affected")

    # The caller's default namespace (the token's `namespace`) is where an unqualified name is looked for.
    with chat(local_server, dev_token("chat-scope-home", namespace=shop.ns)) as ws:
        workload = ask(ws, {"message": "why is the orders deployment failing"})
    assert workload["scope"] == {
        "kind": "Deployment",
        "namespace": shop.ns,
        "name": "orders",
        "routed": "words",
    }
    assert workload["root_cause"]["category"] == "app_crash"
    assert workload["response"].startswith(f"About Deployment {shop.ns}/orders:")


def test_a_kind_without_a_name_and_no_context_at_all(local_server, shop):
    with chat(local_server, dev_token("chat-scope-kind")) as ws:
        services = ask(
            ws,
            {"message": "Are my services ok?", "context": {"resource_kind": "Service", "namespace": shop.ns}},
        )
        assert services["scope"] == {
            "kind": "Namespace",
            "name": shop.ns,
            "resource_kind": "Service",
            "routed": "context",
        }
        assert investigate_texts(services) == [f"Investigate Service {shop.ns}/orders: app crash"]

        cluster = ask(ws, {"message": "What is broken in my cluster?"}, timeout=120)
        assert cluster["type"] == "CHAT", cluster
        assert cluster["scope"] == {"kind": "Cluster", "routed": "words"}
        assert cluster["root_cause"]["category"] != "healthy"  # our orders crash-loops, at least
        assert cluster["response"].startswith("What is broken in the cluster: ")
        assert investigate_texts(cluster) and all(
            t.startswith(("Investigate ", "Start a full investigation of "))
            for t in investigate_texts(cluster)
        )

        hello = ask(ws, {"message": "hello"})
        assert "scope" not in hello and hello["source"] == "rules"


def test_a_caller_gets_the_roll_up_of_what_they_may_read_only(local_server, shop):
    token = dev_token(shop.alice, groups=[])  # no group: only her RoleBinding in shop.ns counts
    with chat(local_server, token) as ws:
        mine = ask(ws, {"message": "?", "context": {"namespace": shop.ns}})
        assert mine["type"] == "CHAT", mine
        assert mine["root_cause"]["subject"]["name"] == "orders"

        refused = ask(ws, {"message": "?", "context": {"namespace": shop.other}})
        assert refused["type"] == "ERROR" and refused["status"] == 403, refused
        assert refused["error"]["error"] == "forbidden"
        assert f"kubilitics:{shop.alice}" in refused["error"]["message"]
        assert set(refused["error"]) >= {"error", "message", "details", "timestamp", "trace_id"}

        # Named in words: she may not list namespaces, so the other one is not recognised, and the
        # cluster it then falls to is refused as a whole; its roll-up never reaches her.
        worded = ask(ws, {"message": f"what is broken in {shop.other}?"})
        assert worded["type"] == "ERROR" and worded["status"] == 403
        assert "scope" not in worded

    # With her default namespace in the token, "the cluster" is the part of it she may read.
    with chat(local_server, dev_token(shop.alice, groups=[], namespace=shop.ns)) as ws:
        home = ask(ws, {"message": "What is broken in my cluster?"})
    assert home["type"] == "CHAT", home
    assert home["scope"] == {"kind": "Namespace", "name": shop.ns, "routed": "words"}
    assert home["response"].startswith("You may not read the whole cluster (")
    assert shop.other not in home["response"]


# ---- with Claude (the fake Messages API) --------------------------------------------------------


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as api:
        yield api


@pytest.fixture(scope="module")
def llm_server(k8s_cluster, tmp_path_factory, fake_api):
    env = {
        "KUBILITICS_ANTHROPIC_API_KEY": str(fake_api.api_key),
        "KUBILITICS_ANTHROPIC_BASE_URL": fake_api.url,
        "KUBILITICS_INSIGHT_SCAN_INTERVAL_SECONDS": "0",
    }
    with start_local_server(k8s_cluster, tmp_path_factory, env) as server:
        yield server


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        block
        for message in body["messages"]
        if message["role"] == "user" and isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def test_claude_gets_the_roll_up_and_reads_the_cluster_with_a_tool(llm_server, fake_api, shop):
    fake_api.requests.clear()
    fake_api.reply_tool_use("get_object", {"kind": "Deployment", "namespace": shop.ns, "name": "orders"})
    fake_api.reply_text(
        json.dumps(
            {
                "response": "orders crash-loops: its container exits at start. Fix the panic.",
                "suggestions": [{"type": "investigate", "text": "Investigate Deployment orders"}],
            }
        )
    )
    with chat(llm_server, dev_token("chat-scope-llm")) as ws:
        answer = ask(ws, {"message": f"What is broken in {shop.ns}?"}, timeout=120)
    assert answer["type"] == "CHAT", answer
    assert answer["source"] == "llm"
    assert answer["response"] == "orders crash-loops: its container exits at start. Fix the panic."
    assert answer["scope"] == {"kind": "Namespace", "name": shop.ns, "routed": "words"}

    first, second = (r.body for r in fake_api.message_requests)
    prompt = first["messages"][0]["content"]
    assert '"category": "app_crash"' in prompt and f'"name": "{shop.ns}"' in prompt  # the roll-up
    assert {t["name"] for t in first["tools"]} >= {"get_object", "list_events", "read_logs"}
    [result] = tool_results(second)
    assert not result.get("is_error")
    content = result["content"]  # the object as the cluster serves it (JSON text)
    assert '"kind":"Deployment"' in content and '"image":"ghcr.io/kubilitics-demo/orders:2.3.1"' in content

    usage = httpx.get(
        llm_server.url + "/api/v1/ai/usage",
        headers={"Authorization": f"Bearer {llm_server.admin_token}"},
        timeout=30,
    ).json()
    assert usage["usage_by_operation"]["chat"]["count"] == 2  # both model calls metered


def test_the_tools_read_as_the_caller_within_the_turn_limit(llm_server, fake_api, shop):
    fake_api.requests.clear()
    other_web = {"kind": "Deployment", "namespace": shop.other, "name": "web"}
    fake_api.reply_tool_use("get_object", other_web)  # refused: alice may not read it
    fake_api.reply_tool_use("list_events", {"namespace": shop.ns})
    # A third look is asked for on the last turn: not made, the text of that turn is the answer.
    fake_api.reply_tool_use(
        "get_object",
        {"kind": "Service", "namespace": shop.ns, "name": "orders"},
        text='{"response": "Done looking.", "suggestions": []}',
    )
    with chat(llm_server, dev_token(shop.alice, groups=[])) as ws:
        answer = ask(ws, {"message": "What is wrong?", "context": {"namespace": shop.ns}}, timeout=120)
    sent = [r.body for r in fake_api.message_requests]
    assert answer["type"] == "CHAT" and answer["response"] == "Done looking.", (answer, sent[-1])
    assert len(sent) == 3  # the chat's turn limit: three model calls, the last told to answer
    assert "tool_choice" not in sent[1] and sent[2]["tool_choice"] == {"type": "none"}
    assert len(tool_results(sent[2])) == 2  # the third tool call was never made
    refused = tool_results(sent[1])[0]
    assert refused["is_error"] is True
    assert '"error":"forbidden"' in refused["content"] and shop.alice in refused["content"]
    events = tool_results(sent[2])[1]
    assert not events.get("is_error") and '"reason":"BackOff"' in events["content"]
