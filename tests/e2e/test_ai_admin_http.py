"""The AI admin endpoints over real HTTP on the local server, on port 8080 and on the AI port 8081."""

from __future__ import annotations

import httpx
import pytest


def call(base: str, method: str, path: str, token: str, body: object | None = None) -> httpx.Response:
    return httpx.request(
        method, base + path, headers={"Authorization": f"Bearer {token}"}, json=body, timeout=30
    )


@pytest.mark.parametrize("port", ["main", "ai"])
def test_config_round_trip(local_server, port):
    base = local_server.url if port == "main" else local_server.ai_url
    other = local_server.ai_url if port == "main" else local_server.url
    token = local_server.admin_token
    before = call(base, "GET", "/api/v1/ai/config", token)
    assert before.status_code == 200, before.text
    # Both ports share one store; pick a value that differs from whatever the other case left.
    investigations = before.json()["investigation_settings"]["max_concurrent_investigations"] % 9 + 2

    put = call(
        base,
        "PUT",
        "/api/v1/ai/config",
        token,
        {
            "investigation_settings": {"max_concurrent_investigations": investigations},
            "feature_flags": {"performance_tuning": True},
        },
    )
    assert put.status_code == 200, put.text
    assert "investigation_settings.max_concurrent_investigations" in put.json()["updated_fields"]
    assert put.json()["restart_required"] is False
    assert put.headers["x-ratelimit-limit"] == "100"  # config writes: 10/min, admin tokens 10x

    for server in (base, other):  # the same configuration on both ports
        after = call(server, "GET", "/api/v1/ai/config", token).json()
        assert after["investigation_settings"]["max_concurrent_investigations"] == investigations
        assert after["feature_flags"]["performance_tuning"] is True
        assert after["llm_configuration"]["provider"] == "Anthropic"

    refused = call(base, "PUT", "/api/v1/ai/config", token, {"llm_configuration": {"temperature": 2}})
    assert refused.status_code == 400
    assert refused.json()["error"] == "validation_failed"
    assert refused.json()["details"]["field"] == "llm_configuration.temperature"


def test_api_key_is_stored_in_the_local_secret_and_shown_masked(local_server):
    token = local_server.admin_token
    key = "sk-ant-api03-LocalServerTestKey-9zq1"
    put = call(
        local_server.ai_url, "PUT", "/api/v1/ai/config", token, {"llm_configuration": {"api_key": key}}
    )
    assert put.status_code == 200, put.text
    assert put.json()["updated_fields"] == ["llm_configuration.api_key"]
    shown = call(local_server.url, "GET", "/api/v1/ai/config", token).json()["llm_configuration"]
    assert shown["api_key_prefix"] == "sk-ant-***9zq1"
    # Switch back to rules only, so other tests see the default "not configured" provider.
    cleared = call(
        local_server.url, "PUT", "/api/v1/ai/config", token, {"llm_configuration": {"api_key": ""}}
    )
    assert cleared.json()["updated_fields"] == ["llm_configuration.api_key"]
    status = call(local_server.ai_url, "GET", "/api/v1/ai/status", token)
    assert status.status_code == 200, status.text
    assert status.json()["llm_provider"]["name"] == "offline (rules)"


def test_usage_and_status_answer_on_the_ai_port(local_server):
    usage = call(
        local_server.ai_url,
        "GET",
        "/api/v1/ai/usage?time_period=7d&group_by=namespace",
        local_server.admin_token,
    )
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["time_period"] == "7d"
    assert set(body["usage_by_operation"]) == {"investigation", "insight_generation", "chat"}
    assert "usage_by_user" in body and "usage_by_namespace" in body
    assert [a["threshold_percent"] for a in body["alerts"]] == [50, 75, 90, 100]
