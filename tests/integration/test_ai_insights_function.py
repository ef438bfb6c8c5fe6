"""The AI insights function's Lambda handler (list, dismiss) driven with events/ai_insights payloads.

DynamoDB is moto; the insights are stored through the same store the scanner writes with.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import expect_error, invoke, load_event, revoke, with_query

LIST = "ai_insights/list_insights.json"
DISMISS = "ai_insights/dismiss_insight.json"
KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: ctx-a
clusters:
- {name: a, cluster: {server: "https://127.0.0.1:1"}}
- {name: b, cluster: {server: "https://127.0.0.1:2"}}
users:
- {name: u, user: {token: not-used}}
contexts:
- {name: ctx-a, context: {cluster: a, user: u}}
- {name: ctx-b, context: {cluster: b, user: u}}
"""


@pytest.fixture()
def handler(aws, settings_env, tmp_path: Path):
    from kubilitics import container

    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    settings_env.setenv("KUBILITICS_KUBECONFIG", str(path))
    # These contexts name no cluster to ask access reviews of: service mode. What each caller's RBAC
    # lets them see is tested on the test cluster (tests/integration/test_insights_rbac.py).
    settings_env.setenv("KUBILITICS_KUBE_AUTHORIZATION_MODE", "service")
    container.reset()
    return importlib.import_module("functions.ai_insights.app").handler


def seed(context: str, category: str, rule: str, severity: str, namespace: str | None, at: float) -> str:
    """One insight as the scanner stores it (through its own reconcile step)."""
    from kubilitics.ai.insights import Detection
    from kubilitics.container import get_container
    from kubilitics.services.insights import _record

    detection = Detection(
        category=category,
        rule=rule,
        scope=f"namespace/{namespace}" if namespace else "cluster",
        namespace=namespace,
        severity=severity,  # type: ignore[arg-type]
        title=f"{rule} in {namespace}",
        description=f"{rule} found",
        resources=[f"{namespace}/Deployment/web"],
        recommendation={
            "action": "Fix it",
            "steps": ["one"],
            "estimated_effort_hours": 1,
            "risk_level": "low",
        },
    )
    record = _record(context, detection)
    record["generated_time"] = at
    get_container().insight_store.put(record, first_detected=at)
    return str(record["insight_id"])


def dismiss_event(token: str | None, insight_id: str, body: Any) -> dict[str, Any]:
    raw = body if isinstance(body, str) else json.dumps(body)
    event = load_event(DISMISS, token=token, body=raw, headers={"content-length": str(len(raw))})
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/api/v1/ai/insights/{insight_id}/dismiss"
    event["pathParameters"] = {"id": insight_id}
    return event


@pytest.mark.parametrize("which", [LIST, DISMISS])
def test_auth_is_required(handler, mint, which):

    expect_error(handler, load_event(which, token=None), 401, "unauthorized")
    expired = mint(scopes="read,write", now=time.time() - 7200, ttl_seconds=3600)
    expect_error(handler, load_event(which, token=expired), 401, "token_expired")
    revoked = mint(scopes="read,write")
    revoke(revoked)
    expect_error(handler, load_event(which, token=revoked), 401, "token_revoked")
    lacking = mint(scopes="write" if which == LIST else "read")
    body = expect_error(handler, load_event(which, token=lacking), 403, "insufficient_scope")
    assert body["details"]["required_scope"] == ("read" if which == LIST else "write")


def test_list_filters_sorts_and_limits(handler, mint):
    now = time.time()
    sec = seed("ctx-a", "security", "privileged_container", "critical", "team-a", now - 300)
    perf = seed("ctx-a", "performance", "cpu_near_limit", "warning", "team-a", now - 200)
    cost = seed("ctx-a", "cost_optimization", "idle_workload", "info", "team-b", now - 100)
    other_cluster = seed("ctx-b", "security", "privileged_container", "critical", "team-a", now)
    token = mint(scopes="read")

    status, headers, body = invoke(handler, with_query(load_event(LIST, token=token)))
    assert status == 200, body
    assert body["total_count"] == 3
    assert [i["insight_id"] for i in body["insights"]] == [sec, perf, cost]  # by severity
    assert other_cluster not in {i["insight_id"] for i in body["insights"]}
    first = body["insights"][0]
    assert first["category"] == "security" and first["cluster"] == "ctx-a"
    assert first["affected_resources"] == {"count": 1, "examples": ["team-a/Deployment/web"]}
    assert first["dismissed_at"] is None and first["status"] == "active"
    assert headers["x-ratelimit-limit"] == "100"  # AI reads

    _, _, by_category = invoke(handler, with_query(load_event(LIST, token=token), category="performance"))
    assert [i["insight_id"] for i in by_category["insights"]] == [perf]
    _, _, by_severity = invoke(handler, with_query(load_event(LIST, token=token), severity="info"))
    assert [i["insight_id"] for i in by_severity["insights"]] == [cost]
    _, _, limited = invoke(handler, with_query(load_event(LIST, token=token), limit=1))
    assert limited["total_count"] == 3 and len(limited["insights"]) == 1
    other = load_event(LIST, token=token, headers={"x-kubeconfig-context": "ctx-b"})
    _, _, listed_b = invoke(handler, with_query(other))
    assert [i["insight_id"] for i in listed_b["insights"]] == [other_cluster]

    expect_error(
        handler, with_query(load_event(LIST, token=token), category="bogus"), 400, "invalid_parameter"
    )
    expect_error(handler, with_query(load_event(LIST, token=token), limit=0), 400, "invalid_parameter")


def test_dismiss_records_who_and_hides_the_insight(handler, mint):
    insight = seed("ctx-a", "cost_optimization", "idle_workload", "info", "team-b", time.time())
    token = mint(sub="carol@example.com", scopes="read,write")
    body = {"reason": "acknowledged_wont_fix", "notes": "Legacy system; scheduled for replacement"}

    status, headers, dismissed = invoke(handler, dismiss_event(token, insight, body))
    assert status == 200, dismissed
    assert dismissed["insight_id"] == insight
    assert dismissed["dismissed_by"] == "carol@example.com"
    assert dismissed["reason"] == "acknowledged_wont_fix"
    assert headers["x-ratelimit-limit"] == "50"  # writes

    _, _, hidden = invoke(handler, with_query(load_event(LIST, token=token)))
    assert hidden["total_count"] == 0
    _, _, shown = invoke(handler, with_query(load_event(LIST, token=token), dismissed=True))
    [item] = shown["insights"]
    assert item["dismissed_at"] == dismissed["dismissed_at"]
    assert item["dismissed_by"] == "carol@example.com"
    assert item["dismissed_notes"] == body["notes"]

    again = expect_error(handler, dismiss_event(token, insight, body), 409, "resource_conflict")
    assert again["details"]["dismissed_by"] == "carol@example.com"
    missing = expect_error(handler, dismiss_event(token, "ins-0000000000000000", body), 404, "not_found")
    assert missing["details"]["insight_id"] == "ins-0000000000000000"
    expect_error(handler, dismiss_event(token, insight, {"notes": "x"}), 400, "missing_required_field")
    expect_error(handler, dismiss_event(token, insight, {"reason": 5}), 400, "validation_failed")
    expect_error(handler, dismiss_event(token, insight, "{not json"), 400, "validation_failed")
