"""Insights and analytics over real HTTP on the local server, which scans the cluster at start."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.cluster


def get(base: str, path: str, token: str) -> httpx.Response:
    return httpx.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_the_startup_scan_fills_the_insights(local_server):
    deadline = time.monotonic() + 120
    while True:
        body = get(local_server.url, "/api/v1/ai/insights?limit=5", local_server.admin_token).json()
        if body.get("last_scan") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert body["last_scan"] is not None, body
    assert body["total_count"] > 0 and len(body["insights"]) <= 5
    severities = [i["severity"] for i in body["insights"]]
    order = {"critical": 0, "warning": 1, "info": 2}
    assert severities == sorted(severities, key=order.__getitem__)
    on_ai_port = get(
        local_server.ai_url, "/api/v1/ai/insights?category=security&limit=1", local_server.admin_token
    )
    assert on_ai_port.status_code == 200
    assert all(i["category"] == "security" for i in on_ai_port.json()["insights"])


def test_analytics_summary_counts_this_tests_requests(local_server):
    token = local_server.admin_token
    summary = get(local_server.ai_url, "/api/v1/ai/analytics/summary?time_period=24h", token)
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert body["period"]["duration_days"] == 1
    assert body["user_engagement"]["unique_users"] >= 1
    assert body["insights_generated"]["total"] >= 1  # the startup scan
