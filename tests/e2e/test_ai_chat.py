"""WebSocket /api/v1/ai/chat on the local server with a real WebSocket client, on the test cluster.

Without an AI key the answers come from the analyzers (the shared `local_server`); a second server
whose Messages API is the local fake (tests/fakes/messages_api.py) answers with "Claude", meters
every call in the budget ledger, and reports budget exhaustion as an ERROR without closing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.e2e.conftest import start_local_server
from tests.fakes.messages_api import FakeMessagesAPI
from tests.pods_testbed import PODS, create_namespace, delete_namespace, start_pods
from tests.support import dev_token

pytestmark = pytest.mark.cluster


@contextmanager
def chat(server, bearer: str | None) -> Iterator[ClientConnection]:
    url = server.url.replace("http://", "ws://") + "/api/v1/ai/chat" + (f"?token={bearer}" if bearer else "")
    with connect(url, open_timeout=10) as ws:
        yield ws


def ask(ws: ClientConnection, message: dict[str, Any] | str, timeout: float = 60) -> dict[str, Any]:
    ws.send(message if isinstance(message, str) else json.dumps(message))
    answer: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return answer


@pytest.fixture(scope="module")
def namespace(k8s_cluster) -> Iterator[str]:
    name = create_namespace(k8s_cluster, "chat")
    try:
        start_pods(k8s_cluster, name, PODS, ["solo"])
        yield name
    finally:
        delete_namespace(k8s_cluster, name)


def about_solo(namespace: str, text: str = "Is the solo pod healthy?") -> dict[str, Any]:
    return {
        "message": text,
        "context": {"resource_kind": "Pod", "namespace": namespace, "resource_name": "solo"},
        "include_metrics": True,
        "include_logs": True,
    }


# ---- rules only (no AI key) ----------------------------------------------------------------------


def test_rules_answer_with_context_and_typed_suggestions(local_server, namespace):
    with chat(local_server, dev_token("chat-rules")) as ws:
        answer = ask(ws, about_solo(namespace))
        assert answer["type"] == "CHAT", answer
        assert answer["message_id"].startswith("msg-")
        assert answer["source"] == "rules" and answer["model"] is None
        assert answer["root_cause"]["category"] == "healthy"
        assert f"About Pod {namespace}/solo" in answer["response"]
        assert "healthy" in answer["response"]
        assert {s["type"] for s in answer["suggestions"]} <= {"investigate", "action", "follow_up"}
        assert answer["suggestions"]

        # Without a context: an honest answer about what the rules can do, and a follow-up question.
        plain = ask(ws, {"message": "What can you do?"})
        assert plain["source"] == "rules" and "resource" in plain["response"]
        assert plain["suggestions"][0]["type"] == "follow_up"
        assert plain["session_id"] == answer["session_id"]


def test_bad_input_is_an_error_and_the_session_stays_open(local_server, namespace):
    with chat(local_server, dev_token("chat-bad")) as ws:
        bad_json = ask(ws, "{not json")
        assert bad_json["type"] == "ERROR" and bad_json["error"]["error"] == "validation_failed"
        missing = ask(ws, {"context": {"resource_kind": "Pod"}})
        assert missing["error"]["error"] == "missing_required_field"
        assert missing["error"]["details"]["field"] == "message"
        kind = ask(ws, {"message": "?", "context": {"resource_kind": "Gizmo", "resource_name": "x"}})
        assert kind["error"]["error"] == "invalid_resource_kind" and kind["status"] == 400
        ok = ask(ws, about_solo(namespace))
        assert ok["type"] == "CHAT"


def test_authentication_and_ten_sessions_per_user(local_server):
    with pytest.raises(InvalidStatus) as refused, chat(local_server, None):
        pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"] == "unauthorized"
    with (
        pytest.raises(InvalidStatus) as no_scope,
        chat(local_server, dev_token("chat-noscope", scope="write")),
    ):
        pass
    assert no_scope.value.response.status_code == 403

    user = dev_token("chat-many")
    sockets = []
    try:
        for _ in range(10):
            sockets.append(connect(local_server.url.replace("http", "ws") + f"/api/v1/ai/chat?token={user}"))
        with pytest.raises(InvalidStatus) as eleventh, chat(local_server, user):
            pass
        assert eleventh.value.response.status_code == 429
        body = json.loads(eleventh.value.response.body)
        assert body["error"] == "rate_limit_exceeded" and body["details"]["concurrent_limit"] == 10
        sockets.pop().close()
        time.sleep(0.5)  # the server gives the slot back when it sees the close
        with chat(local_server, user) as ws:
            assert ask(ws, {"message": "hello"})["type"] == "CHAT"
    finally:
        for ws in sockets:
            ws.close()


def test_fifty_messages_a_minute_plus_the_burst(local_server):
    if time.time() % 60 > 40:  # keep the 71 messages inside one rate-limit window
        time.sleep(61 - time.time() % 60)
    with chat(local_server, dev_token("chat-rate")) as ws:
        answers = [ask(ws, {"message": f"hello {n}"}) for n in range(71)]
        assert all(a["type"] == "CHAT" for a in answers[:70])
        assert answers[70]["type"] == "ERROR" and answers[70]["error"]["error"] == "rate_limit_exceeded"
        assert answers[70]["error"]["details"]["limit"] == 50


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
        "KUBILITICS_CHAT_IDLE_SECONDS": "3",
        "KUBILITICS_INSIGHT_SCAN_INTERVAL_SECONDS": "0",
    }
    with start_local_server(k8s_cluster, tmp_path_factory, env) as server:
        yield server


def put_config(server, body: dict[str, Any]) -> None:
    response = httpx.put(
        server.url + "/api/v1/ai/config",
        headers={"Authorization": f"Bearer {server.admin_token}"},
        json=body,
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_claude_answers_with_history_redaction_and_metering(llm_server, fake_api, namespace):
    fake_api.requests.clear()
    fake_api.reply_text(
        json.dumps(
            {
                "response": "solo is running and ready; nothing to fix.",
                "suggestions": [
                    {"type": "follow_up", "text": "Do you expect more traffic?"},
                    {"type": "action", "text": "Add a readiness probe"},
                    {"type": "bogus", "text": "dropped"},
                ],
            }
        ),
        input_tokens=900,
        output_tokens=60,
    )
    fake_api.reply_text(
        "Plain text without JSON: 10.1.2.3 is the pod IP.", input_tokens=950, output_tokens=20
    )
    with chat(llm_server, dev_token("chat-llm")) as ws:
        first = ask(ws, about_solo(namespace, "Why is solo slow? My email is ops@example.com"))
        assert first["type"] == "CHAT", first
        assert first["source"] == "llm" and first["model"]
        assert first["response"] == "solo is running and ready; nothing to fix."
        assert first["suggestions"] == [
            {"type": "follow_up", "text": "Do you expect more traffic?"},
            {"type": "action", "text": "Add a readiness probe"},
        ]
        second = ask(ws, {"message": "And the node?"})
        assert second["response"] == "Plain text without JSON: 10.1.2.3 is the pod IP."
        assert second["suggestions"]  # typed suggestions from the rules when the model gives none

    sent = [r.body for r in fake_api.requests if r.path.endswith("/v1/messages")]
    assert len(sent) == 2
    first_prompt = json.dumps(sent[0])
    assert "ops@example.com" not in first_prompt and "[[EMAIL_1]]" in first_prompt  # redacted
    assert '"category": "healthy"' in sent[0]["messages"][0]["content"]  # the analyzers' findings went along
    second_prompt = sent[1]["messages"][0]["content"]
    assert "Conversation so far" in second_prompt and "solo is running and ready" in second_prompt

    usage = httpx.get(
        llm_server.url + "/api/v1/ai/usage",
        headers={"Authorization": f"Bearer {llm_server.admin_token}"},
        timeout=30,
    ).json()
    assert usage["usage_by_operation"]["chat"]["count"] == 2
    assert usage["usage_by_operation"]["chat"]["tokens"] == 900 + 60 + 950 + 20


def test_budget_exhaustion_is_an_error_and_the_session_stays_open(llm_server, fake_api, namespace):
    put_config(llm_server, {"budget": {"monthly_limit_usd": 0.0001}})
    try:
        with chat(llm_server, dev_token("chat-budget")) as ws:
            refused = ask(ws, about_solo(namespace))
            assert refused["type"] == "ERROR"
            assert refused["error"]["error"] == "token_budget_exhausted" and refused["status"] == 429
            assert refused["error"]["details"]["monthly_limit_usd"] == 0.0001
            put_config(llm_server, {"budget": {"monthly_limit_usd": 100}})
            fake_api.reply_text('{"response": "Back in budget.", "suggestions": []}')
            answer = ask(ws, {"message": "Try again?"})
            assert answer["type"] == "CHAT" and answer["response"] == "Back in budget."
    finally:
        put_config(llm_server, {"budget": {"monthly_limit_usd": 100}})


def test_unreachable_claude_falls_back_to_the_rules(llm_server, fake_api, namespace):
    fake_api.fail(500, times=3)  # the SDK retries twice
    with chat(llm_server, dev_token("chat-down")) as ws:
        answer = ask(ws, about_solo(namespace))
        assert answer["type"] == "CHAT" and answer["source"] == "rules"
        assert "Claude could not be reached" in answer["response"]


def test_idle_session_ends(llm_server):
    with chat(llm_server, dev_token("chat-idle")) as ws:
        ended = json.loads(ws.recv(timeout=10))
        assert ended["type"] == "SESSION_ENDED" and ended["reason"] == "idle_timeout"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
