"""Chat at any scope (services/chat_scope.py, services/chat.py): what a message is about, and the
rules answer for a namespace or the cluster.

The cluster is an in-memory KubernetesPort over objects captured on the test cluster
(tests/unit/ai/fixtures): a namespace whose `orders` Deployment crash-loops and one with a healthy
`web` Deployment.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
from kubilitics.adapters.kubernetes import ResourceType
from kubilitics.auth.tokens import Principal
from kubilitics.services.chat import ChatService, ChatSession
from kubilitics.services.chat_scope import (
    MAX_WORDS,
    asks_about_state,
    candidates,
    kind_hint,
    match_namespace,
    match_workload,
    rollup_answer,
    rollup_suggestions,
    words,
)

from tests.unit.ai.test_ai_gather import FakeKube, cluster

CRASH_DOC, CRASH = cluster("crashloop-app-error")
HEALTHY_DOC, HEALTHY = cluster("healthy-deployment")
CRASH_NS = CRASH_DOC["target"]["namespace"]  # eval-crashloop-app-error-d3594
HEALTHY_NS = HEALTHY_DOC["target"]["namespace"]  # eval-healthy-deployment-25eed
NOW = float(CRASH_DOC["collected_at"])


# ---- words and routing (pure) ----------------------------------------------------------------------


def test_words_are_names_as_kubernetes_spells_them():
    assert words("What is broken in Demo-Orders? (the api.v1 thing...)") == [
        "what",
        "is",
        "broken",
        "in",
        "demo-orders",
        "the",
        "api.v1",
        "thing",
    ]
    assert words("why is the orders deployment failing") == [
        "why",
        "is",
        "the",
        "orders",
        "deployment",
        "failing",
    ]
    assert candidates(words("Why is the orders deployment failing?")) == ["orders"]
    assert candidates(words("hello 42, what can you do? and now?")) == []
    assert kind_hint(words("why is the orders deployment failing")) == "Deployment"
    assert kind_hint(words("is node kwok-1 ready")) == "Node"
    assert kind_hint(words("what is broken in shop")) is None
    assert asks_about_state(words("What is broken in my cluster?"))
    assert not asks_about_state(words("What can you do?"))


def test_words_are_bounded_and_linear():
    hostile = "a-" * 4000 + "!" + "x." * 2000  # 10,000 characters of separators and name characters
    started = time.perf_counter()
    found = words(hostile)
    assert time.perf_counter() - started < 0.1
    assert len(words(" ".join(f"w{n}" for n in range(1000)))) == MAX_WORDS
    assert found == []  # both runs are longer than any Kubernetes name (253)
    assert words("a" * 253 + " " + "b" * 254) == ["a" * 253]


def test_a_name_is_matched_against_what_was_listed_the_named_kind_first():
    names = candidates(words("is orders in demo-orders failing?"))
    assert names == ["orders", "demo-orders"]
    assert match_namespace(names, {"default", "demo-orders"}) == "demo-orders"
    assert match_namespace(names, {"default"}) is None
    listed = {"Deployment": {"orders", "web"}, "Service": {"orders"}}
    assert match_workload(["orders"], listed, None) == ("Deployment", "orders")
    assert match_workload(["orders"], listed, "Service") == ("Service", "orders")
    assert match_workload(["billing"], listed, None) is None


# ---- the rules answer of a roll-up --------------------------------------------------------------------


def _rollup_facts() -> dict[str, Any]:
    """A namespace roll-up as services/chat.py builds it (slim_rollup over diagnose_namespace)."""
    subject = {"kind": "Deployment", "namespace": "shop", "name": "orders"}
    return {
        "scope": {"kind": "Namespace", "name": "shop", "routed": "words"},
        "root_cause": {"category": "app_crash", "summary": "Deployment orders: exits with code 1"},
        "triage": {"workloads": 4, "affected": 2},
        "recommendations": [{"priority": 1, "action": "fix_app", "details": "Fix the panic at start"}],
        "findings": [
            {
                "subject": subject,
                "category": "app_crash",
                "severity": "critical",
                "summary": "exits with code 1 (panic: boom)",
                "affects": ["Service/shop/orders"],
                "citations": [{"source": "log"}],
            },
            {
                "subject": {"kind": "Job", "namespace": "shop", "name": "db-migrate"},
                "category": "job_backoff_limit",
                "severity": "high",
                "summary": "failed once, backoffLimit 0",
                "affects": [],
                "citations": [],
            },
        ],
    }


def test_the_rules_answer_ranks_problems_in_plain_language():
    text = rollup_answer(_rollup_facts())
    assert text.splitlines()[:4] == [
        "What is broken in Namespace shop: 2 of 4 workload(s) affected, 2 problem(s), most severe first:",
        "1. Deployment shop/orders [critical, app crash] (takes down Service/shop/orders): "
        "exits with code 1 (panic: boom)",
        "2. Job shop/db-migrate [high, job backoff limit]: failed once, backoffLimit 0",
        "Start with Deployment shop/orders: Fix the panic at start",
    ]


def test_one_investigate_suggestion_per_problem():
    assert rollup_suggestions(_rollup_facts()) == [
        {"type": "investigate", "text": "Investigate Deployment shop/orders: app crash"},
        {"type": "investigate", "text": "Investigate Job shop/db-migrate: job backoff limit"},
        {"type": "action", "text": "Fix the panic at start"},
        {
            "type": "follow_up",
            "text": "What changed in Deployment shop/orders recently (image, config, limits)?",
        },
    ]
    healthy = {**_rollup_facts(), "findings": [], "root_cause": {"category": "healthy", "summary": "ok"}}
    assert [s["type"] for s in rollup_suggestions(healthy)] == ["follow_up", "investigate"]
    assert rollup_answer(healthy) == "ok"


# ---- the chat service over an in-memory cluster -------------------------------------------------------


class Cluster(FakeKube):
    """The captured objects plus their Namespace objects (FakeKube serves namespaced kinds only)."""

    def resource_type(self, context: Any, kind: str) -> ResourceType:
        if kind == "Namespace":
            return ResourceType("", "v1", "Namespace", "namespaces", "namespace", (), False, ("get", "list"))
        return super().resource_type(context, kind)

    def get_path(self, context: Any, path: str) -> dict[str, Any]:
        return {"items": []}  # no metrics server


class History:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def recent(self, session_id: str, count: int) -> list[dict[str, Any]]:
        return self.items[-count:]

    def append(self, session_id: str, item: dict[str, Any], expires_at: int) -> None:
        self.items.append(item)


@pytest.fixture()
def kube() -> Cluster:
    namespaces = [{"kind": "Namespace", "metadata": {"name": ns}} for ns in (CRASH_NS, HEALTHY_NS, "default")]
    pods = [o for o in CRASH if o["kind"] == "Pod"]
    logs = {(p["metadata"]["name"], "orders", prev): "panic: boom\n" for p in pods for prev in (False, True)}
    return Cluster([*CRASH, *HEALTHY, *namespaces], logs)


def ask(kube: Cluster, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    allowed = SimpleNamespace(allowed=True, limit=50, reset_after=0)
    chat = ChatService(
        kube=kube,
        contexts=lambda *_args: SimpleNamespace(name="testbed", namespace=None, acting_as=None),
        history=History(),
        ledger=None,
        provider=lambda: SimpleNamespace(name="offline (rules)"),
        config=SimpleNamespace(
            effective=lambda: SimpleNamespace(chat_settings=SimpleNamespace(context_window_messages=10))
        ),
        rate_limiter=SimpleNamespace(hit=lambda *_args: allowed),
        revocations=SimpleNamespace(is_revoked=lambda *_args: False),
        clock=SimpleNamespace(now=lambda: NOW),
    )
    principal = Principal(
        sub="erin",
        scopes=frozenset({"read"}),
        token_type="user",
        jti="jti-1",
        expires_at=int(NOW) + 3600,
        namespace=namespace,
    )
    session = ChatSession("chat-unit", principal, "testbed", NOW, NOW)
    answer: dict[str, Any] = json.loads(chat.answer(session, json.dumps(body), "trace-1").text)
    return answer


def test_namespace_alone_is_that_namespaces_ranked_roll_up(kube):
    answer = ask(kube, {"message": "What is broken here?", "context": {"namespace": CRASH_NS}})
    assert answer["type"] == "CHAT", answer
    assert answer["scope"] == {"kind": "Namespace", "name": CRASH_NS, "routed": "context"}
    assert answer["root_cause"]["category"] == "app_crash"
    assert answer["root_cause"]["subject"] == {"kind": "Deployment", "namespace": CRASH_NS, "name": "orders"}
    first = answer["response"].splitlines()
    # 2 of 2: the Deployment, and the Service it empties
    assert first[0] == f"What is broken in Namespace {CRASH_NS}: 2 of 2 workload(s) affected, " + (
        "1 problem(s), most severe first:"
    )
    assert first[1].startswith(
        f"1. Deployment {CRASH_NS}/orders [critical, app crash] (takes down Service/{CRASH_NS}/orders): "
    )
    assert answer["suggestions"][0] == {
        "type": "investigate",
        "text": f"Investigate Deployment {CRASH_NS}/orders: app crash",
    }


def test_a_namespace_named_in_words_is_routed_to(kube):
    answer = ask(kube, {"message": f"what is broken in {HEALTHY_NS}?"})
    assert answer["scope"] == {"kind": "Namespace", "name": HEALTHY_NS, "routed": "words"}
    assert answer["root_cause"]["category"] == "healthy"
    assert answer["response"].startswith(f"Namespace {HEALTHY_NS} is healthy: 0 of 2 workloads affected")
    # one list of namespaces, then the workload kinds of that namespace: no cluster-wide reads
    assert ("list", "Namespace", "") in kube.calls and ("list", "Node", "") not in kube.calls


def test_a_workload_named_in_words_is_found_in_the_callers_namespace(kube):
    answer = ask(kube, {"message": "Why is the orders deployment failing?"}, namespace=CRASH_NS)
    assert answer["scope"] == {
        "kind": "Deployment",
        "namespace": CRASH_NS,
        "name": "orders",
        "routed": "words",
    }
    assert answer["root_cause"]["category"] == "app_crash"
    assert answer["response"].startswith(f"About Deployment {CRASH_NS}/orders:")
    # Named with its namespace: found there, whatever the caller's default namespace.
    again = ask(kube, {"message": f"is orders ok in {CRASH_NS}?"})
    assert again["scope"]["kind"] == "Deployment" and again["scope"]["namespace"] == CRASH_NS


def test_no_context_and_no_name_is_the_cluster(kube):
    answer = ask(kube, {"message": "What is broken in my cluster?"})
    assert answer["scope"] == {"kind": "Cluster", "routed": "words"}
    assert answer["root_cause"]["subject"] == {"kind": "Deployment", "namespace": CRASH_NS, "name": "orders"}
    investigate = [s["text"] for s in answer["suggestions"] if s["type"] == "investigate"]
    assert investigate == [f"Investigate Deployment {CRASH_NS}/orders: app crash"]
    assert "1 of 3 namespace(s) with problems" in answer["response"].splitlines()[0]


def test_a_greeting_reads_nothing(kube):
    answer = ask(kube, {"message": "hello, what can you do?"})
    assert answer["type"] == "CHAT" and "scope" not in answer
    assert "name a namespace or a workload" in answer["response"]
    assert kube.calls == []


def test_a_kind_without_a_name_is_every_object_of_that_kind(kube):
    services = ask(kube, {"message": "?", "context": {"resource_kind": "Service", "namespace": CRASH_NS}})
    assert services["scope"] == {
        "kind": "Namespace",
        "name": CRASH_NS,
        "resource_kind": "Service",
        "routed": "context",
    }
    assert [s["text"] for s in services["suggestions"] if s["type"] == "investigate"] == [
        f"Investigate Service {CRASH_NS}/orders: app crash"
    ]
    deployments = ask(
        kube, {"message": "?", "context": {"resource_kind": "Deployment", "namespace": HEALTHY_NS}}
    )
    assert deployments["root_cause"]["category"] == "healthy"
    assert "0 of 1 workloads affected" in deployments["response"]


def test_partial_contexts_that_cannot_be_answered_are_400_and_404(kube):
    no_kind = ask(kube, {"message": "?", "context": {"resource_name": "orders"}})
    assert (no_kind["status"], no_kind["error"]["error"]) == (400, "missing_required_field")
    assert no_kind["error"]["details"]["field"] == "context.resource_kind"
    missing = ask(kube, {"message": "?", "context": {"namespace": "nowhere"}})
    assert (missing["status"], missing["error"]["error"]) == (404, "not_found")


def test_a_namespace_the_caller_may_not_read_is_a_403(kube):
    kube.forbidden = {"Pod"}
    refused = ask(kube, {"message": "?", "context": {"namespace": CRASH_NS}})
    assert refused["type"] == "ERROR" and refused["status"] == 403
    assert refused["error"]["error"] == "forbidden"
    assert set(refused["error"]) >= {"error", "message", "details", "timestamp", "trace_id"}


def test_a_caller_who_may_not_read_the_cluster_gets_their_namespace_or_a_403(kube):
    kube.forbidden = {"Node"}  # no cluster-wide reads
    home = ask(kube, {"message": "What is broken in my cluster?"}, namespace=CRASH_NS)
    assert home["scope"] == {"kind": "Namespace", "name": CRASH_NS, "routed": "words"}
    assert home["response"].splitlines()[0] == (
        "You may not read the whole cluster (nodes is forbidden); "
        f"here is your default namespace, {CRASH_NS}."
    )
    assert home["root_cause"]["category"] == "app_crash"
    refused = ask(kube, {"message": "What is broken in my cluster?"})  # no default namespace
    assert (refused["status"], refused["error"]["error"]) == (403, "forbidden")


def test_only_namespaces_the_caller_may_list_are_matched_by_name(kube):
    kube.forbidden = {"Namespace"}  # may not list namespaces: only their default one is known
    answer = ask(kube, {"message": f"what is broken in {HEALTHY_NS}?"}, namespace=CRASH_NS)
    assert answer["scope"] == {"kind": "Cluster", "routed": "words"}  # not routed to HEALTHY_NS
    mine = ask(kube, {"message": f"what is broken in {CRASH_NS}?"}, namespace=CRASH_NS)
    assert mine["scope"] == {"kind": "Namespace", "name": CRASH_NS, "routed": "words"}
