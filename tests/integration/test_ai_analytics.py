"""GET /api/v1/ai/analytics/summary: totals checked against records this test creates (moto).

Usage records go through the budget ledger, insights through the insight store, investigations and
actions through their stores, and user engagement through real API requests (the rate-limit counter
update of each request is the engagement record).
"""

from __future__ import annotations

import importlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_ai_insights_function import KUBECONFIG, seed
from tests.support import LambdaContext, load_event, with_query

SUMMARY = "ai_admin/get_analytics_summary.json"
DAY = 86400


@pytest.fixture()
def services(aws, settings_env, tmp_path: Path):
    from kubilitics import container

    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    settings_env.setenv("KUBILITICS_KUBECONFIG", str(path))
    # These contexts name no cluster to ask access reviews of: service mode. What each caller's RBAC
    # lets them see is tested on the test cluster (tests/integration/test_insights_rbac.py).
    settings_env.setenv("KUBILITICS_KUBE_AUTHORIZATION_MODE", "service")
    container.reset()
    return container.get_container()


def usage(at: float, operation: str, tokens_in: int, tokens_out: int, latency_ms: int, success: bool = True):
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
    reservation = ledger.reserve(
        model="claude-sonnet-5-5",
        max_input_tokens=tokens_in,
        max_output_tokens=tokens_out,
        context=UsageContext(operation, "alice"),
    )
    ledger.settle(
        reservation,
        input_tokens=tokens_in if success else 0,
        output_tokens=tokens_out if success else 0,
        success=success,
        latency_ms=latency_ms,
    )


def investigation(services, number: int, status: str, severity: str, start: float, seconds: float | None):
    services.investigation_store.create(
        {
            "investigation_id": f"inv-test-{number}",
            "status": status,
            "severity": severity,
            "start_time": start,
            "completion_time": start + seconds if seconds is not None else None,
            "expires_at": int(start) + 30 * DAY,
        }
    )


def action(services, number: int, status: str, at: float):
    services.action_store.put(
        {"action_id": f"act-test-{number}", "status": status, "proposed_at": at, "expires_at": int(at) + DAY}
    )


def test_summary_totals_match_the_records(services, mint):
    now = time.time()
    # LLM calls: three in the last day (one failed), one 3 days ago, one 40 days ago (outside 30d).
    usage(now - 3600, "chat", 1000, 200, 400)
    usage(now - 1800, "investigation", 3000, 500, 800)
    usage(now - 600, "insight_generation", 0, 0, 1200, success=False)
    usage(now - 3 * DAY, "investigation", 2000, 300, 600)
    usage(now - 40 * DAY, "chat", 5000, 5000, 100)

    # Insights: two in the last day (one dismissed), one 5 days ago.
    a = seed("ctx-a", "security", "privileged_container", "critical", "team-a", now - 100)
    seed("ctx-a", "cost_optimization", "idle_workload", "info", "team-a", now - 200)
    seed("ctx-a", "performance", "cpu_near_limit", "warning", "team-b", now - 5 * DAY)
    services.insights.dismiss(a, {"reason": "known"}, "bob")

    # Investigations and actions.
    investigation(services, 1, "completed", "high", now - 7200, 120)
    investigation(services, 2, "completed", "critical", now - 3600, 60)
    investigation(services, 3, "failed", "medium", now - 1800, 30)
    investigation(services, 4, "in_progress", "low", now - 60, None)
    investigation(services, 5, "completed", "high", now - 10 * DAY, 500)  # outside 7d
    for number, status in enumerate(["approved", "approved", "approved", "rejected", "expired", "pending"]):
        action(services, number, status, now - 1000)

    # Engagement: real requests through the insights function, by two users.
    handler = importlib.import_module("functions.ai_insights.app").handler
    alice, bob = mint(sub="alice", scopes="read,write"), mint(sub="bob", scopes="read")
    listing = "ai_insights/list_insights.json"
    for token in (alice, alice, alice, bob):
        assert handler(with_query(load_event(listing, token=token)), LambdaContext())["statusCode"] == 200

    week = services.analytics.summary("7d")
    assert week["period"]["duration_days"] == 7 and type(week["period"]["duration_days"]) is int
    assert week["investigations"] == {
        "total_initiated": 4,
        "total_completed": 2,
        "average_duration_seconds": 70,  # (120 + 60 + 30) / 3
        "by_status": {"completed": 2, "failed": 1, "in_progress": 1},
        "success_rate_percent": 66.7,
        "by_severity": {"critical": 1, "high": 1, "medium": 1, "low": 1},
    }
    assert week["actions_proposed"] == {
        "total": 6,
        "approved": 3,
        "rejected": 1,
        "expired": 1,
        "pending": 1,
        "approval_rate_percent": 60.0,
    }
    assert week["insights_generated"] == {
        "total": 3,
        "by_category": {"health": 0, "security": 1, "performance": 1, "cost_optimization": 1},
        "dismissed_percent": 33.3,
        "resolved": 0,
    }
    assert week["token_usage"] == {
        "total_tokens": 1200 + 3500 + 2300,
        "average_per_request": round(7000 / 4),
        "by_operation": {"investigation": 5800, "insight_generation": 0, "chat": 1200},
    }
    assert week["llm_api_calls"] == {"total": 4, "success_rate_percent": 75.0, "average_latency_ms": 600}
    engagement = week["user_engagement"]
    assert engagement["unique_users"] == 2
    assert engagement["total_requests"] == 4
    assert engagement["top_operations"] == ["GET /api/v1/ai/insights"]
    hour = datetime.fromtimestamp(time.time(), UTC).hour
    assert engagement["most_active_hours"][0] in (
        f"{hour:02d}:00-{(hour + 1) % 24:02d}:00",
        f"{(hour - 1) % 24:02d}:00-{hour:02d}:00",
    )

    day = services.analytics.summary("24h")
    assert day["investigations"]["total_initiated"] == 4
    assert day["insights_generated"]["total"] == 2
    assert day["llm_api_calls"]["total"] == 3
    assert day["token_usage"]["by_operation"]["investigation"] == 3500
    quarter = services.analytics.summary("90d")
    assert quarter["llm_api_calls"]["total"] == 5
    assert quarter["investigations"]["total_initiated"] == 5


def test_engagement_rides_on_the_rate_limit_write(services, mint, aws):
    """One request = one counter update: no extra DynamoDB write for analytics."""
    from unittest import mock

    from kubilitics.adapters import aws as aws_clients
    from kubilitics.adapters import dynamodb

    handler = importlib.import_module("functions.ai_insights.app").handler
    token = mint(sub="dave", scopes="read")
    handler(with_query(load_event("ai_insights/list_insights.json", token=token)), LambdaContext())  # warm
    real = aws_clients.client("dynamodb")
    writes: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> Any:
            if name in ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items"):
                writes.append(name)
            return getattr(real, name)

    with mock.patch.object(dynamodb, "client", lambda service, **kw: Counting()):
        response = handler(
            with_query(load_event("ai_insights/list_insights.json", token=token)), LambdaContext()
        )
    assert response["statusCode"] == 200
    assert writes == ["update_item"]  # the rate-limit counter, carrying the engagement attributes
    [counter] = [
        i
        for i in real.scan(TableName=services.settings.rate_limit_table)["Items"]
        if i["pk"]["S"].startswith("rl#dave#standard#")
    ]
    assert counter["n"]["N"] == "2"
    assert counter["op#GET /api/v1/ai/insights"]["N"] == "2"
    assert counter["gsi1pk"]["S"].startswith("eng#")


def test_summary_endpoint(services, mint):
    handler = importlib.import_module("functions.ai_admin.app").handler
    token = mint(scopes="read")
    response = handler(with_query(load_event(SUMMARY, token=token), time_period="30d"), LambdaContext())
    body = json.loads(response["body"])
    assert response["statusCode"] == 200, body
    assert set(body) >= {
        "period",
        "investigations",
        "actions_proposed",
        "insights_generated",
        "token_usage",
        "llm_api_calls",
        "user_engagement",
    }
    assert body["period"]["duration_days"] == 30
    bad = handler(with_query(load_event(SUMMARY, token=token), time_period="1y"), LambdaContext())
    assert bad["statusCode"] == 400 and json.loads(bad["body"])["error"] == "invalid_parameter"
    assert handler(load_event(SUMMARY, token=None), LambdaContext())["statusCode"] == 401
