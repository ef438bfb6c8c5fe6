"""The Messages API answering 429 (rate limited), 529 (overloaded) and not answering at all (the fake
server of tests/fakes/messages_api.py, stalled 30 s against a 2 s timeout).

An investigation still completes with the rules' answer and says it is degraded: `analysis.mode`
`rules` and `analysis.llm_fallback` with the error and its reason, the rules' own explanation. A chat
turn answers from the rules (`source: rules`) with a note that Claude could not be reached: the
session stays usable, as a rules-only server's does. Nothing waits past the configured timeout: the
timeout bounds a model call with its retries (a hung API is not asked again with a fresh timeout).
"""

from __future__ import annotations

import time

import pytest

from tests.integration.test_ai_investigations_function import body_for, crashing, handler, start  # noqa: F401
from tests.integration.test_websocket_chat import say, ws  # noqa: F401
from tests.integration.test_websocket_functions import connect
from tests.investigations_testbed import wait_finished

pytestmark = pytest.mark.cluster

TIMEOUT = 2.0  # ai_request_timeout_seconds and chat_request_timeout_seconds here


def configure(settings_env, api) -> None:
    from kubilitics import container

    settings_env.setenv("KUBILITICS_ANTHROPIC_API_KEY", str(api.api_key))
    settings_env.setenv("KUBILITICS_ANTHROPIC_BASE_URL", api.url)
    settings_env.setenv("KUBILITICS_AI_REQUEST_TIMEOUT_SECONDS", str(TIMEOUT))
    settings_env.setenv("KUBILITICS_CHAT_REQUEST_TIMEOUT_SECONDS", str(TIMEOUT))
    container.reset()


def failed_calls(user: str) -> list:
    from kubilitics.container import get_container

    records = get_container().budget_ledger.records(time.time() - 600, time.time() + 5)
    return [r for r in records if r.user == user and not r.success]


def script(api, fault: str) -> None:
    if fault == "timeout":
        api.stall(30)  # once: a call that timed out is not retried
    else:
        api.fail(int(fault), times=3)  # the first answer and both retries


# (fault, the reason stated, message requests made: a timeout is not retried, errors twice)
FAULTS = [("429", "rate_limited", 3), ("529", "overloaded", 3), ("timeout", "timeout", 1)]


@pytest.mark.parametrize(("fault", "reason", "requests"), FAULTS)
def test_an_investigation_completes_with_the_rules_answer_and_says_it_is_degraded(
    handler,  # noqa: F811
    settings_env,
    fake_messages_api,
    mint,
    crashing,  # noqa: F811
    fault,
    reason,
    requests,
):
    configure(settings_env, fake_messages_api)
    script(fake_messages_api, fault)
    user = f"llm-fault-{fault}"
    token = mint(sub=user, scopes="read,write")
    began = time.monotonic()
    started = start(handler, token, body_for(crashing, investigation_scope="quick"))
    item = wait_finished(handler, token, started["investigation_id"], crashing, timeout=60)
    took = time.monotonic() - began

    assert item["status"] == "completed", item
    assert item["root_cause"]["category"] == "app_crash"  # the rules' answer
    assert "Most likely cause" in item["explanation"]  # the rules' own explanation
    analysis = item["analysis"]
    assert analysis["mode"] == "rules" and "llm_outcome" not in analysis
    assert analysis["llm_fallback"]["error"] == "LlmApiError"
    assert f"({reason})" in analysis["llm_fallback"]["message"], analysis
    assert len(fake_messages_api.message_requests) == requests
    # The failed call is metered with its latency: within the timeout, retries and waits included.
    (call,) = failed_calls(user)
    assert call.latency_ms < TIMEOUT * 1000 + 500, call
    assert took < 30


@pytest.mark.parametrize(("fault", "reason", "requests"), FAULTS)
def test_a_chat_turn_answers_from_the_rules_within_the_timeout(
    ws,  # noqa: F811
    settings_env,
    fake_messages_api,
    mint,
    fault,
    reason,
    requests,
):
    configure(settings_env, fake_messages_api)
    connection = f"chat-fault-{fault}"
    assert connect(ws, connection, mint(sub=connection, scopes="read"))["statusCode"] == 200
    fake_messages_api.reply_text('{"response": "Hello.", "suggestions": []}')
    assert say(ws, connection, {"action": "chat", "message": "hello"})["source"] == "llm"  # in use
    fake_messages_api.requests.clear()
    script(fake_messages_api, fault)
    began = time.monotonic()
    answer = say(ws, connection, {"action": "chat", "message": "What can you do?"})
    took = time.monotonic() - began
    assert answer["type"] == "CHAT", answer
    assert answer["source"] == "rules" and answer["model"] is None
    assert "Claude could not be reached" in answer["response"]
    assert len(fake_messages_api.message_requests) == requests
    (call,) = failed_calls(connection)
    assert call.latency_ms < TIMEOUT * 1000 + 500, call
    assert took < TIMEOUT + 3, f"answered after {took:.1f} s"

    # The session stays usable: once the API answers again, so does Claude.
    fake_messages_api.reply_text('{"response": "Back again.", "suggestions": []}')
    again = say(ws, connection, {"action": "chat", "message": "And now?"})
    assert again["source"] == "llm" and again["response"] == "Back again."
