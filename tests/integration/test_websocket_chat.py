"""The WebSocket API's `chat` route (functions/websocket) with events/websocket/chat.json.

DynamoDB and API Gateway's management API are moto (every post_to_connection is recorded); the
Anthropic API is the local fake. The chat messages here name no cluster resource, so no cluster is
needed: the kubeconfig only has to name a context.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_ai_insights_function import KUBECONFIG
from tests.integration.test_websocket_functions import ENDPOINT, connect, event, posted
from tests.support import LambdaContext, revoke


@pytest.fixture()
def ws(aws, settings_env, tmp_path: Path):
    from kubilitics import container

    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    settings_env.setenv("KUBILITICS_KUBECONFIG", str(path))
    settings_env.setenv("KUBILITICS_WEBSOCKET_ENDPOINT", ENDPOINT)
    container.reset()
    return importlib.import_module("functions.websocket.app").handler


def say(ws, connection_id: str, body: dict[str, Any] | str, route: str = "chat") -> dict[str, Any]:
    before = len(posted(connection_id))
    message = event("chat.json", connection_id, body)
    message["requestContext"]["routeKey"] = route
    assert ws(message, LambdaContext())["statusCode"] == 200
    sent = posted(connection_id)
    assert len(sent) == before + 1, sent
    return sent[-1]


def slots(sub: str) -> int:
    from kubilitics.container import get_container

    services = get_container()
    return int(services.rate_limiter._store.slot_count(services.rate_limiter.slot_key(sub, "chat")))


def test_chat_route_answers_with_post_to_connection(ws, mint):
    assert connect(ws, "chat-conn-1", mint(sub="erin", scopes="read"))["statusCode"] == 200
    first = say(ws, "chat-conn-1", {"action": "chat", "message": "What can you do?"})
    assert first["type"] == "CHAT" and first["source"] == "rules"
    assert first["message_id"].startswith("msg-")
    assert first["suggestions"][0] == {
        "type": "follow_up",
        "text": "Which resource should I look at (kind, namespace, name)?",
    }
    assert slots("erin") == 1  # the first chat message started the session

    # The reference's format without an action lands on $default and is still chat.
    second = say(ws, "chat-conn-1", {"message": "And now?"}, route="$default")
    assert second["type"] == "CHAT" and second["session_id"] == first["session_id"]

    bad = say(ws, "chat-conn-1", {"action": "chat", "message": ""})
    assert bad["type"] == "ERROR" and bad["error"]["error"] == "validation_failed"
    assert say(ws, "chat-conn-1", {"action": "chat", "message": "still there?"})["type"] == "CHAT"

    # The session's history: one item per exchange.
    from kubilitics.container import get_container

    history = get_container().chat_history.recent(first["session_id"], 10)
    assert [h["user"] for h in history] == ["What can you do?", "And now?", "still there?"]

    ws(event("disconnect.json", "chat-conn-1"), LambdaContext())
    assert slots("erin") == 0  # the slot is given back with the connection


def test_ten_chat_sessions_per_user(ws, mint):
    user = mint(sub="frank", scopes="read")
    for n in range(10):
        connect(ws, f"chat-many-{n}", user)
        assert say(ws, f"chat-many-{n}", {"action": "chat", "message": "hi"})["type"] == "CHAT"
    connect(ws, "chat-many-10", user)
    refused = say(ws, "chat-many-10", {"action": "chat", "message": "hi"})
    assert refused["type"] == "ERROR" and refused["error"]["error"] == "rate_limit_exceeded"
    ws(event("disconnect.json", "chat-many-0"), LambdaContext())
    assert say(ws, "chat-many-10", {"action": "chat", "message": "hi"})["type"] == "CHAT"


def test_claude_and_budget_exhaustion_over_api_gateway(ws, mint, settings_env, fake_messages_api):
    from kubilitics import container

    settings_env.setenv("KUBILITICS_ANTHROPIC_API_KEY", str(fake_messages_api.api_key))
    settings_env.setenv("KUBILITICS_ANTHROPIC_BASE_URL", fake_messages_api.url)
    container.reset()
    connect(ws, "chat-llm-1", mint(sub="gina", scopes="read"))
    fake_messages_api.reply_text(
        '{"response": "Hello from Claude.", "suggestions": []}', input_tokens=50, output_tokens=5
    )
    answer = say(ws, "chat-llm-1", {"action": "chat", "message": "hello"})
    assert answer["source"] == "llm" and answer["response"] == "Hello from Claude."
    records = container.get_container().budget_ledger.records(time.time() - 60, time.time() + 1)
    assert [(r.operation, r.user, r.tokens) for r in records] == [("chat", "gina", 55)]

    settings_env.setenv("KUBILITICS_AI_MONTHLY_LIMIT_USD", "0.000001")
    container.reset()
    refused = say(ws, "chat-llm-1", {"action": "chat", "message": "again"})
    assert refused["type"] == "ERROR" and refused["error"]["error"] == "token_budget_exhausted"
    assert "budget" in refused["error"]["message"]
    settings_env.setenv("KUBILITICS_AI_MONTHLY_LIMIT_USD", "100")
    container.reset()
    fake_messages_api.reply_text('{"response": "Still here.", "suggestions": []}')
    assert say(ws, "chat-llm-1", {"action": "chat", "message": "and now?"})["response"] == "Still here."


def test_revoked_token_ends_the_connection(ws, mint):
    from kubilitics.container import get_container

    class Recorder:
        def __init__(self) -> None:
            self.posts: list[dict[str, Any]] = []
            self.closed: list[str] = []

        def post(self, connection_id: str, message: str) -> bool:
            self.posts.append(json.loads(message))
            return True

        def close(self, connection_id: str) -> None:
            self.closed.append(connection_id)

    token = mint(sub="hank", scopes="read")
    connect(ws, "chat-revoked", token)
    services = get_container()
    recorder = Recorder()
    services.__dict__["connection_notifier"] = recorder
    revoke(token)
    message = event("chat.json", "chat-revoked", {"action": "chat", "message": "hi"})
    ws(message, LambdaContext())
    assert [p["error"]["error"] for p in recorder.posts] == ["token_revoked"]
    assert recorder.closed == ["chat-revoked"]
