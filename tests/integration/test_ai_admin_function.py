"""The AI admin function's Lambda handler (status, config, usage), driven with events/ payloads.

DynamoDB and Secrets Manager are moto; the Anthropic API is the local fake Messages API server.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from typing import Any

import pytest

from tests.support import expect_error, invoke, load_event, revoke, with_query

STATUS = "ai_admin/get_status.json"
GET_CONFIG = "ai_admin/get_config.json"
PUT_CONFIG = "ai_admin/put_config.json"
USAGE = "ai_admin/get_usage.json"
KEY = "sk-ant-api03-fake-messages-api-key-abcd"  # what the fake Messages API accepts
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture()
def handler(aws):
    return importlib.import_module("functions.ai_admin.app").handler


@pytest.fixture()
def ai_secret(aws, settings_env):
    """The template's AiSecret: created empty (no value = no key configured)."""
    from kubilitics import container
    from kubilitics.adapters.aws import client

    arn = client("secretsmanager").create_secret(Name="kubilitics-test-ai")["ARN"]
    settings_env.setenv("KUBILITICS_AI_SECRET_ARN", arn)
    container.reset()
    return arn


def stored_key(arn: str) -> str:
    from kubilitics.adapters.aws import client

    return client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]


def put_event(token: str | None, body: Any) -> dict:
    raw = body if isinstance(body, str) else json.dumps(body)
    return load_event(PUT_CONFIG, token=token, body=raw, headers={"content-length": str(len(raw))})


def seed_usage(
    at: float,
    operation: str,
    user: str,
    namespace: str | None,
    tokens_in: int,
    tokens_out: int,
    latency_ms: int,
):
    """One settled LLM call recorded at `at`, through the same ledger the service reads."""
    from kubilitics.adapters.dynamodb import DynamoBudgetStore
    from kubilitics.ai.budget import BudgetLedger, UsageContext
    from kubilitics.container import get_container

    class Clock:
        def now(self) -> float:
            return at

    services = get_container()
    ledger = BudgetLedger(
        DynamoBudgetStore(services.settings.state_table),
        lambda: services.ai_config.effective().budget_policy(),
        Clock(),
    )
    context = UsageContext(operation, user, namespace)
    reservation = ledger.reserve(
        model="claude-sonnet-5-5", max_input_tokens=tokens_in, max_output_tokens=tokens_out, context=context
    )
    return ledger.settle(
        reservation, input_tokens=tokens_in, output_tokens=tokens_out, success=True, latency_ms=latency_ms
    )


# -- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize("event", [STATUS, GET_CONFIG, PUT_CONFIG, USAGE])
def test_every_endpoint_needs_a_valid_token(aws, handler, mint, event):

    expect_error(handler, load_event(event, token=None), 401, "unauthorized")
    expect_error(handler, load_event(event, token="abc.def.ghi"), 401, "unauthorized")
    expired = mint(scopes="admin", now=time.time() - 7200, ttl_seconds=3600)
    expect_error(handler, load_event(event, token=expired), 401, "token_expired")
    revoked = mint(scopes="admin")
    revoke(revoked)
    expect_error(handler, load_event(event, token=revoked), 401, "token_revoked")


@pytest.mark.parametrize("event", [GET_CONFIG, PUT_CONFIG])
def test_the_configuration_needs_the_admin_scope(aws, handler, mint, event):
    body = expect_error(
        handler, load_event(event, token=mint(scopes="read,write")), 403, "insufficient_scope"
    )
    assert body["details"] == {"required_scope": "admin", "granted_scopes": ["read", "write"]}


# -- configuration ------------------------------------------------------------------------------


def test_get_config_answers_the_defaults(aws, handler, mint):
    status, headers, body = invoke(handler, load_event(GET_CONFIG, token=mint(scopes="admin")))
    assert status == 200, body
    assert body["llm_configuration"] == {
        "provider": "Anthropic",
        "model": "claude-sonnet-5-5",
        "api_key_prefix": None,
        "temperature": 0.3,
        "max_tokens": 2048,
        "top_p": 0.9,
    }
    assert body["safety_policy"] == {
        "autonomy_level": "2_review_before_apply",
        "max_resource_deletion_count": 10,
        "protected_namespaces": ["kube-system", "kube-node-lease", "kube-public"],
        "forbidden_operations": ["delete_pvc", "delete_secret"],
        "require_human_approval": {"delete_pod": True, "modify_rbac": True, "scale_to_zero": True},
    }
    assert body["investigation_settings"] == {
        "max_concurrent_investigations": 5,
        "investigation_timeout_minutes": 30,
        "auto_remediation_enabled": False,
        "save_investigation_history": True,
    }
    assert body["chat_settings"] == {
        "context_window_messages": 20,
        "enable_code_execution": False,
        "enable_kubectl_commands": True,
    }
    assert body["feature_flags"] == {
        "predictive_analytics": True,
        "cost_optimization": True,
        "security_recommendations": True,
        "performance_tuning": False,
    }
    assert body["budget"]["monthly_limit_usd"] == 100.0
    assert body["budget"]["monthly_limit_tokens"] == 20_000_000
    assert body["budget"]["alert_thresholds_percent"] == [50, 75, 90, 100]
    assert body["budget"]["model_prices"]["claude-sonnet-5-5"] == {"input": 2.0, "output": 10.0}
    assert headers["x-ratelimit-limit"] == "100"


def test_put_config_is_a_partial_update_answering_the_changed_fields(aws, handler, mint):
    admin = mint(sub="root", scopes="admin")
    # The sample event sets temperature, max_tokens, the default protected namespaces (kube-public
    # stays protected regardless) and the default concurrency: only the first two change.
    status, headers, body = invoke(handler, load_event(PUT_CONFIG, token=admin))
    assert status == 200, body
    assert body["message"] == "Configuration updated successfully"
    assert body["updated_fields"] == ["llm_configuration.temperature", "llm_configuration.max_tokens"]
    assert body["restart_required"] is False and RFC3339.fullmatch(body["effective_timestamp"])
    assert headers["x-ratelimit-limit"] == "10"  # config writes: 10 per minute

    _, _, config = invoke(handler, load_event(GET_CONFIG, token=admin))
    assert config["llm_configuration"]["temperature"] == 0.2
    assert config["llm_configuration"]["max_tokens"] == 3000
    assert config["llm_configuration"]["top_p"] == 0.9  # untouched fields keep their values
    assert config["safety_policy"]["protected_namespaces"] == [
        "kube-system",
        "kube-node-lease",
        "kube-public",
    ]

    _, _, again = invoke(handler, load_event(PUT_CONFIG, token=admin))
    assert again["updated_fields"] == []

    change = {
        "safety_policy": {
            "autonomy_level": "3_auto_apply_safe_operations",
            "protected_namespaces": ["kube-system", "kube-node-lease", "prod-pii"],
            "forbidden_operations": ["delete_pvc", "delete_secret", "delete_statefulset"],
            "require_human_approval": {"delete_pod": False},
        },
        "investigation_settings": {"max_concurrent_investigations": 10, "auto_remediation_enabled": True},
        "budget": {"monthly_limit_usd": 40},
    }
    _, _, body = invoke(handler, put_event(admin, change))
    assert body["updated_fields"] == [
        "safety_policy.autonomy_level",
        "safety_policy.protected_namespaces",
        "safety_policy.forbidden_operations",
        "safety_policy.require_human_approval.delete_pod",
        "investigation_settings.max_concurrent_investigations",
        "investigation_settings.auto_remediation_enabled",
        "budget.monthly_limit_usd",
    ]
    _, _, config = invoke(handler, load_event(GET_CONFIG, token=admin))
    assert config["safety_policy"]["protected_namespaces"] == [
        "kube-system",
        "kube-node-lease",
        "kube-public",
        "prod-pii",
    ]
    assert config["safety_policy"]["require_human_approval"] == {
        "delete_pod": False,
        "modify_rbac": True,
        "scale_to_zero": True,
    }
    assert config["budget"]["monthly_limit_usd"] == 40.0
    assert config["llm_configuration"]["temperature"] == 0.2  # earlier changes stay

    # A GET body can be PUT back as it is (read-only api_key_prefix included): nothing changes.
    _, _, body = invoke(handler, put_event(admin, config))
    assert body["updated_fields"] == []


def test_the_references_example_body_is_accepted_with_a_warning_for_its_unpriced_model(aws, handler, mint):
    admin = mint(scopes="admin")
    example = {  # PUT /api/v1/ai/config's request body in the reference, as it is
        "llm_configuration": {"model": "gpt-4-turbo", "temperature": 0.2, "max_tokens": 3000},
        "safety_policy": {
            "autonomy_level": "3_auto_apply_safe_operations",
            "protected_namespaces": ["kube-system", "kube-node-lease", "prod-pii"],
            "forbidden_operations": ["delete_pvc", "delete_secret", "delete_statefulset"],
        },
        "investigation_settings": {"max_concurrent_investigations": 10, "auto_remediation_enabled": True},
    }
    status, _, body = invoke(handler, put_event(admin, example))
    assert status == 200, body
    assert body["message"] == "Configuration updated successfully"
    assert "llm_configuration.model" in body["updated_fields"]
    assert [(w["field"], w["reason"]) for w in body["warnings"]] == [
        ("llm_configuration.model", "unpriced_model")
    ]
    assert "highest configured price" in body["warnings"][0]["message"]
    _, _, config = invoke(handler, load_event(GET_CONFIG, token=admin))
    assert config["llm_configuration"]["model"] == "gpt-4-turbo"
    # Once priced, no warning.
    priced = {"budget": {"model_prices": {"gpt-4-turbo": {"input": 10, "output": 30}}}}
    _, _, body = invoke(handler, put_event(admin, priced))
    assert "warnings" not in body and body["updated_fields"] == ["budget.model_prices.gpt-4-turbo"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"llm_configuration": {"temperature": 1.2}}, "llm_configuration.temperature"),
        ({"llm_configuration": {"temperature": "hot"}}, "llm_configuration.temperature"),
        ({"llm_configuration": {"model": 42}}, "llm_configuration.model"),
        ({"llm_configuration": {"api_key": 12345}}, "llm_configuration.api_key"),
        ({"safety_policy": {"autonomy_level": "5_skynet"}}, "safety_policy.autonomy_level"),
        ({"safety_policy": {"max_resource_deletion_count": -3}}, "safety_policy.max_resource_deletion_count"),
        (
            {"investigation_settings": {"max_concurrent_investigations": "ten"}},
            "investigation_settings.max_concurrent_investigations",
        ),
        ({"chat_settings": {"unknown_toggle": True}}, "chat_settings.unknown_toggle"),
        ({"vector_store": {"type": "pinecone"}}, "vector_store"),
        (["not", "an", "object"], "body"),
    ],
)
def test_invalid_updates_are_refused_naming_the_field_and_change_nothing(aws, handler, mint, body, field):
    admin = mint(scopes="admin")
    refused = expect_error(handler, put_event(admin, body), 400, "validation_failed")
    assert refused["details"]["field"] == field
    assert field in refused["message"] or field == "body"
    _, _, config = invoke(handler, load_event(GET_CONFIG, token=admin))
    assert (
        config["llm_configuration"]["temperature"] == 0.3
        and config["llm_configuration"]["model"] == "claude-sonnet-5-5"
    )


def test_malformed_json_is_refused(aws, handler, mint):
    expect_error(handler, put_event(mint(scopes="admin"), "{not json"), 400, "validation_failed")


def test_the_api_key_goes_to_secrets_manager_and_only_its_masked_prefix_comes_back(ai_secret, handler, mint):
    admin = mint(scopes="admin")
    key = "sk-ant-api03-Zx9Qw8Er7Ty6Ui5Op4-wxyz"
    status, _, body = invoke(
        handler, put_event(admin, {"llm_configuration": {"api_key": key, "max_tokens": 4096}})
    )
    assert status == 200, body
    assert body["updated_fields"] == ["llm_configuration.max_tokens", "llm_configuration.api_key"]
    assert stored_key(ai_secret) == key
    _, _, config = invoke(handler, load_event(GET_CONFIG, token=admin))
    assert config["llm_configuration"]["api_key_prefix"] == "sk-ant-***wxyz"
    assert key not in json.dumps(config) and key not in json.dumps(body)

    _, _, same = invoke(handler, put_event(admin, {"llm_configuration": {"api_key": key}}))
    assert same["updated_fields"] == []

    # An empty key switches the AI provider off again (rules only).
    _, _, cleared = invoke(handler, put_event(admin, {"llm_configuration": {"api_key": ""}}))
    assert cleared["updated_fields"] == ["llm_configuration.api_key"]
    _, _, config = invoke(handler, load_event(GET_CONFIG, token=admin))
    assert config["llm_configuration"]["api_key_prefix"] is None
    _, _, status_body = invoke(handler, load_event(STATUS, token=admin))
    assert status_body["llm_provider"]["name"] == "offline (rules)"


def test_a_key_cannot_be_stored_without_a_secret(aws, handler, mint):
    body = expect_error(
        handler,
        put_event(mint(scopes="admin"), {"llm_configuration": {"api_key": "sk-ant-api03-abcdefgh"}}),
        400,
        "validation_failed",
    )
    assert body["details"]["field"] == "llm_configuration.api_key"
    assert "KUBILITICS_AI_SECRET_ARN" in body["message"]


def test_config_writes_are_limited_to_10_a_minute_plus_the_burst(aws, handler, mint):
    admin = mint(sub="busy-admin", scopes="admin")
    statuses = [invoke(handler, put_event(admin, {}))[0] for _ in range(31)]
    assert statuses[:30] == [200] * 30
    assert statuses[30] == 429


# -- status ---------------------------------------------------------------------------------------


def test_status_without_a_key_reports_rules_only(aws, handler, mint):
    status, headers, body = invoke(handler, load_event(STATUS, token=mint(scopes="read")))
    assert status == 200, body
    assert body["status"] == "operational" and body["mode"] == "rules_only"
    assert isinstance(body["uptime_seconds"], int) and body["uptime_seconds"] >= 0
    provider = body["llm_provider"]
    assert {k: provider[k] for k in ("name", "model", "endpoint", "connectivity")} == {
        "name": "offline (rules)",
        "model": None,
        "endpoint": None,
        "connectivity": "not_configured",
    }
    assert RFC3339.fullmatch(provider["last_check"])
    assert body["token_usage"]["total_tokens_used"] == 0
    assert body["token_usage"]["tokens_remaining_budget"] == 20_000_000
    # Strings, as in the reference; the budget is monthly, so today's quota is what it leaves today.
    assert body["token_usage"]["daily_quota"] == "20000000" and body["token_usage"]["daily_used"] == "0"
    assert (
        RFC3339.fullmatch(body["token_usage"]["reset_time"])
        and body["token_usage"]["reset_time"][8:] == "01T00:00:00Z"
    )
    assert body["request_queue"] == {"pending": 0, "in_progress": 0, "average_latency_ms": 0}
    assert body["vector_store"] == {"type": "none", "status": "not_configured"}
    assert headers["x-ratelimit-limit"] == "100"


def test_status_with_a_reachable_provider(ai_secret, settings_env, fake_messages_api, handler, mint):
    from kubilitics import container

    settings_env.setenv("KUBILITICS_ANTHROPIC_BASE_URL", fake_messages_api.url)
    container.reset()
    admin = mint(scopes="admin")
    invoke(handler, put_event(admin, {"llm_configuration": {"api_key": KEY}}))
    now = time.time()
    seed_usage(now, "investigation", "alice", "shop", 10_000, 1_000, 1200)
    seed_usage(now, "chat", "bob", None, 2_000, 500, 800)

    status, _, body = invoke(handler, load_event(STATUS, token=mint(scopes="read")))
    assert status == 200, body
    assert body["mode"] == "llm"
    assert {k: body["llm_provider"][k] for k in ("name", "model", "endpoint", "connectivity")} == {
        "name": "Anthropic",
        "model": "claude-sonnet-5-5",
        "endpoint": fake_messages_api.url,
        "connectivity": "healthy",
    }
    assert body["token_usage"]["total_tokens_used"] == 13_500
    assert body["token_usage"]["tokens_remaining_budget"] == 20_000_000 - 13_500
    assert body["token_usage"]["daily_used"] == "13500"
    assert body["token_usage"]["daily_quota"] == "20000000"  # what the month's budget left at 00:00 UTC
    assert body["request_queue"]["average_latency_ms"] == 1000
    probe = [r for r in fake_messages_api.requests if r.path == "/v1/models"]
    assert probe and probe[-1].headers["x-api-key"] == KEY


def test_status_is_503_degraded_when_the_provider_is_unreachable(ai_secret, settings_env, handler, mint):
    from kubilitics import container

    settings_env.setenv("KUBILITICS_ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    container.reset()
    admin = mint(scopes="admin")
    invoke(handler, put_event(admin, {"llm_configuration": {"api_key": KEY}}))
    earlier = seed_usage(time.time() - 60, "chat", "bob", None, 100, 10, 300)

    body = expect_error(handler, load_event(STATUS, token=admin), 503, "ai_service_unavailable")
    _, headers, _ = invoke(handler, load_event(STATUS, token=admin))
    assert headers["retry-after"] == "60"
    assert body["status"] == "degraded" and body["retry_after_seconds"] == 60
    assert body["llm_provider"] == {
        "name": "Anthropic",
        "connectivity": "unhealthy",
        "last_successful_request": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(earlier.timestamp)),
        "error_details": "connection_error",
    }


# -- usage ----------------------------------------------------------------------------------------


@pytest.fixture()
def seeded(aws):
    now = time.time()
    calls = [
        seed_usage(now, "investigation", "alice", "shop", 10_000, 1_000, 1200),  # $0.03
        seed_usage(now, "chat", "bob", None, 2_000, 500, 800),  # $0.009
        seed_usage(now, "insight_generation", "alice", "payments", 5_000, 0, 500),  # $0.01
        seed_usage(now - 7200, "investigation", "bob", "shop", 1_000, 100, 900),  # $0.003, 2 h ago
    ]
    return now, calls


def usage(handler, token, **query):
    status, _, body = invoke(handler, with_query(load_event(USAGE, token=token), **query))
    assert status == 200, body
    return body


def test_usage_for_an_admin(seeded, handler, mint):
    now, calls = seeded
    body = usage(handler, mint(scopes="admin"), time_period="24h", group_by="operation")
    assert body["time_period"] == "24h"
    assert body["usage_by_operation"] == {
        "investigation": {"tokens": 12_100, "cost_usd": 0.033, "count": 2},
        "insight_generation": {"tokens": 5_000, "cost_usd": 0.01, "count": 1},
        "chat": {"tokens": 2_500, "cost_usd": 0.009, "count": 1},
    }
    assert body["usage_by_user"] == {
        "alice": {"tokens": 16_000, "cost_usd": 0.04, "count": 2},
        "bob": {"tokens": 3_600, "cost_usd": 0.012, "count": 2},
    }
    assert body["totals"] == {"tokens": 19_600, "cost_usd": 0.052, "count": 4}
    month = time.strftime("%Y-%m", time.gmtime(now))
    this_month = [c for c in calls if time.strftime("%Y-%m", time.gmtime(c.timestamp)) == month]
    budget = body["budget"]
    assert budget["monthly_limit_usd"] == 100 and budget["monthly_limit_tokens"] == 20_000_000
    assert budget["used_usd"] == round(sum(c.cost_micro_usd for c in this_month) / 1e6, 6)
    assert budget["used_tokens"] == sum(c.tokens for c in this_month)
    assert budget["reserved_usd"] == 0
    assert budget["projected_spend_usd"] >= budget["used_usd"]
    assert body["billing_period"]["start_date"] == f"{month}-01"
    assert [a["threshold_percent"] for a in body["alerts"]] == [50, 75, 90, 100]
    assert {a["status"] for a in body["alerts"]} == {"ok"}


def test_usage_without_admin_has_no_per_user_breakdown(seeded, handler, mint):
    body = usage(handler, mint(scopes="read"), group_by="user")
    assert "usage_by_user" not in body
    assert body["usage_by_operation"]["investigation"]["count"] == 2


def test_usage_time_period_and_group_by_namespace(seeded, handler, mint):
    body = usage(handler, mint(scopes="admin"), time_period="1h", group_by="namespace")
    assert body["usage_by_operation"]["investigation"] == {"tokens": 11_000, "cost_usd": 0.03, "count": 1}
    assert body["usage_by_namespace"] == {
        "(cluster)": {"tokens": 2_500, "cost_usd": 0.009, "count": 1},
        "payments": {"tokens": 5_000, "cost_usd": 0.01, "count": 1},
        "shop": {"tokens": 11_000, "cost_usd": 0.03, "count": 1},
    }
    default = usage(handler, mint(scopes="admin"))
    assert default["time_period"] == "24h" and "usage_by_namespace" not in default


def test_usage_alerts_follow_the_configured_limit(seeded, handler, mint):
    admin = mint(scopes="admin")
    invoke(
        handler,
        put_event(admin, {"budget": {"monthly_limit_usd": 0.08, "alert_thresholds_percent": [50, 90]}}),
    )
    body = usage(handler, admin)
    used = body["budget"]["used_usd"]
    assert body["budget"]["percent_used"] == round(used / 0.08 * 100, 2)
    expected = [("ok" if used / 0.08 * 100 < t else "triggered") for t in (50, 90)]
    assert [a["status"] for a in body["alerts"]] == expected


@pytest.mark.parametrize("query", [{"time_period": "2h"}, {"group_by": "team"}])
def test_usage_refuses_unknown_query_values(aws, handler, mint, query):
    event = with_query(load_event(USAGE, token=mint(scopes="admin")), **query)
    body = expect_error(handler, event, 400, "invalid_parameter")
    assert body["details"]["parameter"] == next(iter(query))
