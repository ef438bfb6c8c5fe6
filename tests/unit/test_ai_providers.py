"""The providers: Claude through the real SDK against the fake Messages API, and the offline one."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from kubilitics.ai.budget import BudgetLedger, BudgetPolicy, ModelPrice
from kubilitics.ai.providers import AIRequest, AnthropicProvider, OfflineProvider, kubernetes_toolset
from kubilitics.clock import SystemClock
from kubilitics.errors import LlmApiError, NotFound, TokenBudgetExhausted

from tests.support import offline_process_env

REPO = Path(__file__).resolve().parents[2]
MODEL = "claude-sonnet-5-5"
CANARY = "kc-canary-Vq7Lm2Xp9Zr4Tw8N"


@pytest.fixture()
def ledger(aws):
    from kubilitics.adapters.dynamodb import DynamoBudgetStore

    def make(usd: str = "50") -> BudgetLedger:
        policy = BudgetPolicy(
            Decimal(usd), 10_000_000, (50, 75, 90, 100), {MODEL: ModelPrice(Decimal(2), Decimal(10))}
        )
        return BudgetLedger(DynamoBudgetStore("kubilitics-state"), lambda: policy, SystemClock())

    return make


def provider(api, **kwargs) -> AnthropicProvider:
    return AnthropicProvider(api_key=api.api_key, model=MODEL, base_url=api.url, max_tokens=1024, **kwargs)


def test_tool_use_turns_run_through_the_callback_and_usage_is_metered(fake_messages_api, ledger):
    api, book = fake_messages_api, ledger()
    api.reply_tool_use(
        "get_object",
        {"kind": "Pod", "namespace": "shop", "name": "api-0"},
        input_tokens=1200,
        output_tokens=80,
    )
    api.reply_tool_uses(
        [("list_events", {"namespace": "shop", "kind": "Pod", "name": "api-0"}),
         ("read_logs", {"namespace": "shop", "pod": "api-0", "previous": True})],
        text="Checking events and the previous run's log.", input_tokens=1900, output_tokens=120,
    )  # fmt: skip
    api.reply_text("api-0 is OOMKilled: its limit is 256Mi.", input_tokens=2600, output_tokens=60)
    calls = []

    def call_tool(name, arguments):
        calls.append((name, arguments))
        return {
            "get_object": {"kind": "Pod", "status": {"phase": "Running", "restartCount": 7}},
            "list_events": [{"reason": "BackOff", "message": "Back-off restarting failed container"}],
            "read_logs": "fatal: out of memory",
        }[name]

    result = provider(api).run(
        AIRequest("Why does Pod shop/api-0 restart?", context={"root_cause": {"category": "oom_killed"}}),
        meter=book.meter(operation="investigation", user="alice", namespace="shop", reference="inv-7"),
        tools=kubernetes_toolset(),
        call_tool=call_tool,
    )

    assert result.text == "api-0 is OOMKilled: its limit is 256Mi."
    assert (result.provider, result.model, result.stop_reason, result.calls) == (
        "Anthropic",
        MODEL,
        "end_turn",
        3,
    )
    assert (result.usage.input_tokens, result.usage.output_tokens) == (5700, 260)
    assert [name for name, _ in calls] == ["get_object", "list_events", "read_logs"]
    assert calls[2][1] == {"namespace": "shop", "pod": "api-0", "previous": True}
    assert result.cost_micro_usd == 2 * 5700 + 10 * 260 == 14_000

    first, second, third = (r.body for r in api.message_requests)
    assert first["model"] == MODEL and first["max_tokens"] == 1024
    assert [t["name"] for t in first["tools"]] == [
        "get_object", "list_events", "read_logs", "read_metrics", "owner_chain", "endpoints",
    ]  # fmt: skip
    assert "temperature" not in first and "top_p" not in first  # API 2026-10-21 rejects them
    assert "oom_killed" in first["messages"][0]["content"]
    tool_use = second["messages"][1]["content"][0]
    assert tool_use["type"] == "tool_use" and tool_use["name"] == "get_object"
    assert second["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": tool_use["id"],
            "content": '{"kind":"Pod","status":{"phase":"Running","restartCount":7}}',
        }
    ]
    results = third["messages"][4]["content"]
    assert [r["content"] for r in results] == [
        '[{"reason":"BackOff","message":"Back-off restarting failed container"}]',
        "fatal: out of memory",
    ]

    records = sorted(book.records(0, 4e9), key=lambda r: r.input_tokens)
    assert [
        (r.operation, r.user, r.namespace, r.reference, r.input_tokens, r.output_tokens, r.success)
        for r in records
    ] == [
        ("investigation", "alice", "shop", "inv-7", 1200, 80, True),
        ("investigation", "alice", "shop", "inv-7", 1900, 120, True),
        ("investigation", "alice", "shop", "inv-7", 2600, 60, True),
    ]
    totals = book.totals()
    assert totals.used_micro_usd == totals.committed_micro_usd == 14_000 and totals.used_tokens == 5960


def test_the_turns_are_bounded_and_the_last_one_must_answer(fake_messages_api, ledger):
    api = fake_messages_api
    for _ in range(3):
        api.reply_tool_use("get_object", {"kind": "Pod", "name": "x"})
    result = provider(api).run(
        AIRequest("loop?", max_turns=2),
        meter=ledger().meter(operation="chat", user="bob"),
        tools=kubernetes_toolset(),
        call_tool=lambda name, arguments: {"ok": True},
    )
    assert result.calls == 2 and result.stop_reason == "max_turns" and len(result.tool_calls) == 1
    first, last = (r.body for r in api.message_requests)
    assert "tool_choice" not in first
    assert last["tool_choice"] == {"type": "none"}


@pytest.mark.parametrize(
    ("status", "reason"), [(429, "rate_limited"), (529, "overloaded"), (500, "server_error")]
)
def test_provider_errors_after_the_sdk_retries_become_llm_api_error(
    fake_messages_api, ledger, status, reason
):
    api, book = fake_messages_api, ledger()
    api.fail(status, times=3)
    with pytest.raises(LlmApiError) as failed:
        provider(api).run(AIRequest("why?"), meter=book.meter(operation="investigation", user="alice"))
    assert failed.value.status == 502
    assert failed.value.details["status"] == status and failed.value.details["reason"] == reason
    assert len(api.message_requests) == 3  # the first attempt and the SDK's two retries
    totals = book.totals()
    assert (totals.committed_micro_usd, totals.used_micro_usd, totals.calls, totals.failed_calls) == (
        0,
        0,
        1,
        1,
    )


def test_a_transient_overload_is_retried_by_the_sdk(fake_messages_api, ledger):
    api = fake_messages_api
    api.fail(529)
    api.reply_text("fine", input_tokens=10, output_tokens=2)
    result = provider(api).run(AIRequest("why?"), meter=ledger().meter(operation="chat", user="bob"))
    assert result.text == "fine" and len(api.message_requests) == 2


def test_a_wrong_key_is_an_llm_api_error(fake_messages_api, ledger):
    bad = AnthropicProvider(api_key="sk-ant-wrong-key-0000", model=MODEL, base_url=fake_messages_api.url)
    with pytest.raises(LlmApiError) as failed:
        bad.run(AIRequest("why?"), meter=ledger().meter(operation="chat", user="bob"))
    assert failed.value.details["reason"] == "authentication_failed"


def test_an_exhausted_budget_stops_the_call_before_anything_is_sent(fake_messages_api, ledger):
    with pytest.raises(TokenBudgetExhausted):
        provider(fake_messages_api).run(
            AIRequest("why?"), meter=ledger(usd="0.001").meter(operation="investigation", user="alice")
        )
    assert fake_messages_api.message_requests == []


def test_tool_failures_go_back_to_the_model_as_errors_and_long_results_are_cut(fake_messages_api, ledger):
    api = fake_messages_api
    api.reply_tool_uses(
        [("get_object", {"kind": "Pod", "name": "gone"}), ("read_logs", {"namespace": "a", "pod": "b"})]
    )
    api.reply_text("done")

    def call_tool(name, arguments):
        if name == "get_object":
            raise NotFound('pods "gone" not found', details={"name": "gone"})
        return "x" * 500

    result = provider(api).run(
        AIRequest("why?", max_tool_result_chars=100),
        meter=ledger().meter(operation="chat", user="bob"),
        tools=kubernetes_toolset(),
        call_tool=call_tool,
    )
    assert [(c.name, c.is_error) for c in result.tool_calls] == [("get_object", True), ("read_logs", False)]
    error, logs = api.message_requests[1].body["messages"][2]["content"]
    assert error["is_error"] is True
    assert json.loads(error["content"]) == {
        "error": "not_found",
        "message": 'pods "gone" not found',
        "details": {"name": "gone"},
    }
    assert logs["content"] == "x" * 100 + "\n[truncated: 400 more characters]"


def test_a_planted_canary_never_reaches_the_llm(fake_messages_api, ledger):
    """A secret planted in a Secret, an env var, a log line and the rule findings: the fake server
    must never see it, raw or base64-encoded; the answer still names the node's IP."""
    api = fake_messages_api
    api.reply_tool_use("get_object", {"kind": "Secret", "namespace": "shop", "name": "db-credentials"})
    api.reply_tool_use("get_object", {"kind": "Pod", "namespace": "shop", "name": "api-0"})
    api.reply_tool_use("read_logs", {"namespace": "shop", "pod": "api-0"})
    api.reply_text("The database at [[IP_1]] rejects the password [[PASSWORD_1]]; tell [[EMAIL_1]].")
    encoded = base64.b64encode(CANARY.encode()).decode()
    objects = {
        "Secret": {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "db-credentials",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                        {"data": {"password": encoded}}
                    )
                },
            },
            "data": {"password": encoded},
        },
        "Pod": {
            "kind": "Pod",
            "metadata": {"name": "api-0", "annotations": {"owner": "dba@example.com"}},
            "spec": {
                "containers": [
                    {
                        "name": "api",
                        "env": [
                            {"name": "DB_HOST", "value": "10.20.30.40"},
                            {"name": "DB_PASSWORD", "value": CANARY},
                            {"name": "STARTUP_BLOB", "value": f"x{CANARY}x"},
                        ],
                    }
                ]
            },
        },
    }

    def call_tool(name, arguments):
        if name == "read_logs":
            return f"connecting to 10.20.30.40 as app password={CANARY}\nretrying with {CANARY}\n"
        return objects[arguments["kind"]]

    result = provider(api).run(
        AIRequest(
            f"Why can api-0 not reach its database (it uses {CANARY})?",
            context={"evidence": [{"source": "log", "message": f"auth failed token={CANARY}"}]},
        ),
        meter=ledger().meter(operation="investigation", user="alice"),
        tools=kubernetes_toolset(),
        call_tool=call_tool,
    )

    received = api.received_text()
    assert len(api.message_requests) == 4
    assert CANARY not in received and encoded not in received
    assert "10.20.30.40" not in received and "dba@example.com" not in received
    secret_seen = json.loads(api.message_requests[1].body["messages"][2]["content"][0]["content"])
    assert secret_seen["data_keys"] == ["password"]  # the model still learns which keys exist
    assert (
        result.text
        == "The database at 10.20.30.40 rejects the password [[PASSWORD_1]]; tell dba@example.com."
    )
    assert result.redacted_values >= 4


def test_the_offline_provider_explains_rule_findings_without_calling_out():
    context = {
        "root_cause": {
            "category": "oom_killed",
            "summary": "Container api is OOMKilled (limit 256Mi)",
            "confidence": 0.9,
        },
        "evidence": [
            {"source": "Pod/shop/api-0", "message": "lastState.terminated.reason=OOMKilled"},
            {
                "kind": "Event",
                "namespace": "shop",
                "name": "api-0.17",
                "message": "Back-off restarting failed container",
            },
        ],
        "recommendations": [
            {"action": "increase_memory_limit", "details": "Raise the memory limit to 512Mi"}
        ],
    }
    result = OfflineProvider().run(AIRequest("why?", context=context))
    assert (result.provider, result.model, result.calls, result.usage.total_tokens) == (
        "offline (rules)",
        None,
        0,
        0,
    )
    assert result.text == "\n".join(
        [
            "Most likely cause: Container api is OOMKilled (limit 256Mi)",
            "Category: oom killed (confidence 90%).",
            "Evidence:",
            "- Pod/shop/api-0: lastState.terminated.reason=OOMKilled",
            "- Event/shop/api-0.17: Back-off restarting failed container",
            "What to do:",
            "1. Raise the memory limit to 512Mi",
            "(Explained from rule-based findings; no AI model is configured.)",
        ]
    )
    healthy = OfflineProvider().run(
        AIRequest("ok?", context={"root_cause": {"category": "healthy", "summary": ""}})
    )
    assert healthy.text.startswith("No problem found")


def test_the_anthropic_sdk_is_imported_only_when_a_key_is_configured(tmp_path):
    script = """
import sys
import functions.ai_admin.app
from kubilitics import container
from kubilitics.ai import providers
assert container.get_container().ai_provider().name == "offline (rules)"
print("anthropic" in sys.modules)
"""
    env = offline_process_env(tmp_path / "none", "shared:.")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=str(REPO)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
