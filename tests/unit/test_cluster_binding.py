"""A token bound to one cluster (`cluster_id` claim) learns and changes nothing of another cluster:
insights (dismiss, list), the invalid_context error, AI usage, analytics and status.

The AI routers run in a TestClient against moto; the kubeconfig names two contexts, ctx-a and ctx-b.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

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
DAY = 86400


@pytest.fixture()
def api(aws, settings_env, tmp_path: Path) -> TestClient:
    from kubilitics import container
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import ai_admin, ai_insights

    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    settings_env.setenv("KUBILITICS_KUBECONFIG", str(path))
    # The service's own identity: listing insights then asks the (absent) cluster nothing.
    settings_env.setenv("KUBILITICS_KUBE_AUTHORIZATION_MODE", "service")
    container.reset()
    return TestClient(create_app(ai_insights.router, ai_admin.router), raise_server_exceptions=False)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed_insight(context: str, rule: str = "privileged_container", at: float | None = None) -> str:
    from kubilitics.ai.insights import Detection
    from kubilitics.container import get_container
    from kubilitics.services.insights import _record

    detection = Detection(
        category="security",
        rule=rule,
        scope="namespace/team-a",
        namespace="team-a",
        severity="critical",
        title=f"{rule} in team-a",
        description="found",
        resources=["team-a/Deployment/web"],
        recommendation={
            "action": "Fix it",
            "steps": ["one"],
            "estimated_effort_hours": 1,
            "risk_level": "low",
        },
    )
    record = _record(context, detection)
    at = time.time() if at is None else at
    record["generated_time"] = at
    get_container().insight_store.put(record, first_detected=at)
    return str(record["insight_id"])


def seed_usage(
    at: float, cluster: str | None, tokens_in: int, namespace: str = "team-a", operation: str = "chat"
):
    """One settled LLM call about `cluster`, through the ledger the services read."""
    from kubilitics.ai.budget import UsageContext
    from kubilitics.container import get_container

    ledger = get_container().budget_ledger
    context = UsageContext(operation, "alice", namespace, None, cluster)
    reservation = ledger.reserve(
        model="claude-sonnet-5-5", max_input_tokens=tokens_in, max_output_tokens=10, context=context
    )
    return ledger.settle(reservation, input_tokens=tokens_in, output_tokens=10, success=True, latency_ms=100)


# ---- M1: dismissing another cluster's insight -------------------------------------------------------


def test_a_bound_token_cannot_dismiss_another_clusters_insight_nor_learn_that_it_exists(api, mint):
    from kubilitics.container import get_container

    other = seed_insight("ctx-b")
    own = seed_insight("ctx-a")
    bound = bearer(mint(scopes="read,write", cluster_id="ctx-a"))
    body = {"reason": "acknowledged_wont_fix"}

    refused = api.post(f"/api/v1/ai/insights/{other}/dismiss", json=body, headers=bound)
    unknown = api.post("/api/v1/ai/insights/ins-0000000000000000/dismiss", json=body, headers=bound)
    assert refused.status_code == unknown.status_code == 404
    assert refused.json()["error"] == unknown.json()["error"] == "not_found"
    # The same body shape and wording as an id that does not exist (only the id differs).
    assert set(refused.json()) == set(unknown.json())
    assert refused.json()["details"] == {"insight_id": other}
    assert refused.json()["message"] == f"No insight {other!r}"
    stored = get_container().insight_store.get(other)
    assert stored is not None and stored.get("dismissed_at") is None  # nothing changed

    # Already dismissed by someone else: still 404 for the bound token, never 409 (which would say
    # "it exists").
    unbound = bearer(mint(sub="admin", scopes="read,write"))
    assert api.post(f"/api/v1/ai/insights/{other}/dismiss", json=body, headers=unbound).status_code == 200
    again = api.post(f"/api/v1/ai/insights/{other}/dismiss", json=body, headers=bound)
    assert (again.status_code, again.json()["error"]) == (404, "not_found")
    assert again.json()["details"] == {"insight_id": other}

    # Its own cluster's insight: dismissed as before; a second time is the usual 409.
    mine = api.post(f"/api/v1/ai/insights/{own}/dismiss", json=body, headers=bound)
    assert mine.status_code == 200, mine.json()
    assert api.post(f"/api/v1/ai/insights/{own}/dismiss", json=body, headers=bound).status_code == 409


def test_a_bound_token_lists_only_its_clusters_insights(api, mint):
    own, other = seed_insight("ctx-a"), seed_insight("ctx-b")
    listed = api.get("/api/v1/ai/insights", headers=bearer(mint(scopes="read", cluster_id="ctx-b")))
    assert listed.status_code == 200, listed.json()
    assert [i["insight_id"] for i in listed.json()["insights"]] == [other]
    refused = api.get(
        "/api/v1/ai/insights",
        headers={**bearer(mint(scopes="read", cluster_id="ctx-b")), "X-Kubeconfig-Context": "ctx-a"},
    )
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert own not in refused.text


# ---- invalid_context: no list of the other contexts for a bound token --------------------------------


def test_invalid_context_lists_the_contexts_only_to_an_unbound_token(api, mint):
    bound = api.get("/api/v1/ai/insights", headers=bearer(mint(scopes="read", cluster_id="ctx-gone")))
    assert (bound.status_code, bound.json()["error"]) == (401, "invalid_context")
    assert bound.json()["details"] == {"context": "ctx-gone"}
    assert "ctx-a" not in bound.text and "ctx-b" not in bound.text

    unbound = api.get(
        "/api/v1/ai/insights", headers={**bearer(mint(scopes="read")), "X-Kubeconfig-Context": "ctx-gone"}
    )
    assert (unbound.status_code, unbound.json()["error"]) == (401, "invalid_context")
    assert unbound.json()["details"] == {"context": "ctx-gone", "available_contexts": ["ctx-a", "ctx-b"]}


# ---- L6: usage, analytics and status of the token's cluster only --------------------------------------


def test_usage_of_a_bound_token_counts_only_its_clusters_records(api, mint):
    now = time.time()
    seed_usage(now - 60, "ctx-a", 1000, namespace="shop")
    seed_usage(now - 50, "ctx-b", 3000, namespace="secret-project")
    seed_usage(now - 40, None, 5000, namespace="old")  # recorded before records carried a cluster

    bound = api.get(
        "/api/v1/ai/usage?group_by=namespace", headers=bearer(mint(scopes="read", cluster_id="ctx-a"))
    ).json()
    assert bound["totals"]["tokens"] == 1010 and bound["totals"]["count"] == 1
    assert list(bound["usage_by_namespace"]) == ["shop"]
    assert bound["usage_by_operation"]["chat"]["tokens"] == 1010

    unbound = api.get("/api/v1/ai/usage?group_by=namespace", headers=bearer(mint(scopes="read"))).json()
    assert unbound["totals"]["tokens"] == 1010 + 3010 + 5010
    assert list(unbound["usage_by_namespace"]) == ["old", "secret-project", "shop"]
    # The budget is the deployment's (every cluster draws on it): the same for both.
    assert bound["budget"] == unbound["budget"]


def test_analytics_of_a_bound_token_count_only_its_cluster(api, mint):
    from kubilitics.container import get_container

    services = get_container()
    now = time.time()
    seed_usage(now - 60, "ctx-a", 1000, operation="investigation")
    seed_usage(now - 50, "ctx-b", 3000, operation="investigation")
    seed_insight("ctx-a", at=now - 100)
    seed_insight("ctx-b", "host_network", at=now - 100)
    seed_insight("ctx-b", "host_pid", at=now - 100)
    for number, context in enumerate(["ctx-a", "ctx-b", "ctx-b"]):
        services.investigation_store.create(
            {
                "investigation_id": f"inv-bind-{number}",
                "status": "completed",
                "severity": "high",
                "context": context,
                "start_time": now - 600,
                "completion_time": now - 500,
                "expires_at": int(now) + DAY,
            }
        )
    for number, context in enumerate(["ctx-b", "ctx-b"]):
        services.action_store.put(
            {
                "action_id": f"act-bind-{number}",
                "status": "pending",
                "context": context,
                "proposed_at": now - 300,
                "expires_at": int(now) + DAY,
            }
        )

    bound = api.get("/api/v1/ai/analytics/summary", headers=bearer(mint(scopes="read", cluster_id="ctx-a")))
    assert bound.status_code == 200, bound.json()
    summary = bound.json()
    assert summary["investigations"]["total_initiated"] == 1
    assert summary["actions_proposed"]["total"] == 0
    assert summary["insights_generated"]["total"] == 1
    assert summary["token_usage"]["total_tokens"] == 1010
    assert summary["llm_api_calls"]["total"] == 1
    # Engagement windows are per subject, not per cluster: none shown to a bound token.
    assert summary["user_engagement"]["total_requests"] == 0
    assert summary["user_engagement"]["unique_users"] == 0

    everything = api.get("/api/v1/ai/analytics/summary", headers=bearer(mint(scopes="read"))).json()
    assert everything["investigations"]["total_initiated"] == 3
    assert everything["actions_proposed"]["total"] == 2
    assert everything["insights_generated"]["total"] == 3
    assert everything["token_usage"]["total_tokens"] == 1010 + 3010
    assert everything["user_engagement"]["total_requests"] >= 2  # this test's own requests


def test_status_of_a_bound_token_shows_only_its_clusters_usage_and_queue(api, mint):
    from kubilitics.container import get_container

    services = get_container()
    now = time.time()
    seed_usage(now - 60, "ctx-a", 1000)
    seed_usage(now - 50, "ctx-b", 3000)
    for number, context in enumerate(["ctx-b", "ctx-b", "ctx-a"]):
        services.investigation_store.create(
            {
                "investigation_id": f"inv-queue-{number}",
                "status": "in_progress",
                "context": context,
                "start_time": now - 60,
                "expires_at": int(now) + DAY,
            }
        )

    bound: dict[str, Any] = api.get(
        "/api/v1/ai/status", headers=bearer(mint(scopes="read", cluster_id="ctx-a"))
    ).json()
    assert bound["token_usage"]["total_tokens_used"] == 1010
    assert bound["token_usage"]["daily_used"] == "1010"  # a string, as in the reference
    assert bound["request_queue"]["in_progress"] == 1

    unbound = api.get("/api/v1/ai/status", headers=bearer(mint(scopes="read"))).json()
    assert unbound["token_usage"]["total_tokens_used"] == 1010 + 3010
    assert unbound["token_usage"]["daily_used"] == str(1010 + 3010)
    assert unbound["request_queue"]["in_progress"] == 3
    # What remains of the shared budget decides whether this caller's next call is refused: shown alike.
    assert (
        bound["token_usage"]["tokens_remaining_budget"] == unbound["token_usage"]["tokens_remaining_budget"]
    )


def test_usage_records_carry_the_cluster_they_were_about():
    from kubilitics.ai.budget import UsageRecord

    record = UsageRecord(
        id="u1",
        timestamp=1.0,
        operation="chat",
        user="alice",
        namespace=None,
        model="m",
        input_tokens=1,
        output_tokens=1,
        cost_micro_usd=1,
        latency_ms=1,
        success=True,
        cluster="ctx-a",
    )
    assert UsageRecord.from_item(record.to_item()).cluster == "ctx-a"
    assert UsageRecord.from_item({**record.to_item(), "cluster": None}).cluster is None
