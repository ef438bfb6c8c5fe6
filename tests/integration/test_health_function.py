"""The health function's Lambda handler, driven with events/ payloads through Mangum.

DynamoDB is moto (tables from template.yaml); Kubernetes is the real test cluster.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from pathlib import Path

import pytest

from tests.support import cluster_name, expect_error, invoke, load_event, revoke


@pytest.fixture()
def handler(aws):
    module = importlib.import_module("functions.health.app")
    return module.handler


def test_health_is_healthy_with_database_and_cluster_reachable(aws, on_cluster, handler):
    status, headers, body = invoke(handler, load_event("health/get_health.json"))
    assert status == 200, body
    assert body["status"] == "healthy"
    assert body["dependencies"] == {
        "kubernetes_api": "healthy",
        "database": "healthy",
        "ai_service": "not_configured",
        "redis_cache": "not_configured",
    }
    nodes = on_cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
    assert body["cluster_info"]["nodes"] == len(nodes) > 0
    server_version = json.loads(on_cluster.kubectl("version", "-o", "json").stdout)["serverVersion"][
        "gitVersion"
    ]
    assert body["cluster_info"]["version"] == server_version.lstrip("v")
    assert body["cluster_info"]["name"] == cluster_name(on_cluster)
    assert body["region"] == "us-east-1" and body["version"] == "1.0.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["timestamp"])
    assert "x-ratelimit-limit" not in headers  # health checks are never throttled


def test_health_is_degraded_when_the_cluster_is_unreachable(aws, settings_env, handler, tmp_path: Path):
    from kubilitics import container

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n"
        "clusters: [{name: dead, cluster: {server: 'https://127.0.0.1:9', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: dead, context: {cluster: dead, user: u}}]\n"
    )
    settings_env.setenv("KUBILITICS_KUBECONFIG", str(kubeconfig))
    container.reset()
    status, headers, body = invoke(handler, load_event("health/get_health.json"))
    assert status == 503
    assert headers["retry-after"] == "30"
    assert body["status"] == "degraded" and body["retry_after_seconds"] == 30
    assert body["error"] == "Critical dependencies unavailable"
    assert body["dependencies"]["kubernetes_api"] == "unhealthy"
    assert body["dependencies"]["database"] == "healthy"


def test_health_is_degraded_when_the_database_is_missing(aws, on_cluster, handler):
    from kubilitics.container import get_container

    aws.delete_table(TableName=get_container().settings.state_table)
    status, _, body = invoke(handler, load_event("health/get_health.json"))
    assert status == 503
    assert body["dependencies"]["database"] == "unhealthy"
    assert body["dependencies"]["kubernetes_api"] == "healthy"


def test_version_reports_components(aws, on_cluster, handler, mint):
    status, headers, body = invoke(handler, load_event("health/get_version.json", token=mint()))
    assert status == 200, body
    assert body["backend"]["version"] == "1.0.0"
    assert re.fullmatch(r"3\.11\.\d+", body["backend"]["python_version"])
    server_version = json.loads(on_cluster.kubectl("version", "-o", "json").stdout)["serverVersion"][
        "gitVersion"
    ]
    assert body["kubernetes"] == {
        "api_version": server_version.lstrip("v"),
        "cluster_name": cluster_name(on_cluster),
    }
    assert body["deployment"]["stack_name"] == "kubilitics-local"
    assert body["database"] == {"type": "dynamodb", "migration_version": 1, "schema_version": 1}
    # The reference's shape: every block and field it has (Go, React, Helm ones null: none exist here).
    assert set(body) >= {"backend", "frontend", "ai_service", "kubernetes", "database", "helm_chart"}
    assert set(body["backend"]) >= {"version", "build_commit", "build_date", "golang_version", "architecture"}
    assert set(body["frontend"]) >= {"version", "react_version", "build_hash"}
    assert set(body["ai_service"]) >= {"version", "build_commit", "go_version"}
    assert set(body["helm_chart"]) >= {"name", "version", "repository"}
    assert headers["x-ratelimit-limit"] == "100" and headers["x-ratelimit-remaining"] == "99"
    assert headers["x-api-version"] == "1.0.0"


def test_version_without_a_token_is_unauthorized(aws, on_cluster, handler):
    expect_error(handler, load_event("health/get_version.json", token=None), 401, "unauthorized")


def test_version_with_a_garbage_token_is_unauthorized(aws, on_cluster, handler):
    expect_error(handler, load_event("health/get_version.json", token="abc.def.ghi"), 401, "unauthorized")


def test_version_with_an_expired_token(aws, on_cluster, handler, mint):
    token = mint(now=time.time() - 7200, ttl_seconds=3600)
    expect_error(handler, load_event("health/get_version.json", token=token), 401, "token_expired")


def test_version_with_a_revoked_token(aws, on_cluster, handler, mint):

    token = mint()
    revoke(token)
    expect_error(handler, load_event("health/get_version.json", token=token), 401, "token_revoked")


def test_version_with_a_token_lacking_the_scope(aws, on_cluster, handler, mint):
    body = expect_error(
        handler, load_event("health/get_version.json", token=mint(scopes="exec")), 403, "insufficient_scope"
    )
    assert body["details"] == {"required_scope": "read", "granted_scopes": ["exec"]}


def test_version_with_an_unknown_context(aws, on_cluster, handler, mint):
    event = load_event("health/get_version.json", token=mint(), headers={"x-kubeconfig-context": "nope"})
    body = expect_error(handler, event, 401, "invalid_context")
    assert body["details"]["available_contexts"] == [on_cluster.context]


def test_token_bound_to_a_cluster_reaches_only_that_context(aws, on_cluster, handler, mint):
    bound = mint(cluster_id="other-cluster")
    event = load_event(
        "health/get_version.json", token=bound, headers={"x-kubeconfig-context": on_cluster.context}
    )
    expect_error(handler, event, 403, "forbidden")
    own = mint(cluster_id=on_cluster.context)
    status, _, body = invoke(handler, load_event("health/get_version.json", token=own))
    assert status == 200 and body["kubernetes"]["cluster_name"] == cluster_name(on_cluster)


def test_version_with_an_unsupported_api_version_header(aws, on_cluster, handler, mint):
    event = load_event("health/get_version.json", token=mint(), headers={"x-api-version": "2.0.0"})
    expect_error(handler, event, 400, "invalid_parameter")


def test_version_rate_limit_answers_429_with_retry_after(aws, on_cluster, handler, mint):
    token = mint(sub="hammer")
    statuses = []
    for _ in range(121):
        status, headers, _ = invoke(handler, load_event("health/get_version.json", token=token))
        statuses.append(status)
    assert statuses[:120] == [200] * 120  # 100/min plus the burst of 20
    assert statuses[120] == 429
    assert 1 <= int(headers["retry-after"]) <= 60 and headers["x-ratelimit-remaining"] == "0"


def test_health_checks_its_dependencies_at_most_once_per_window(
    aws, on_cluster, handler, settings_env, fake_messages_api
):
    """/health needs no token: twenty calls make one round of checks (review M2), not twenty."""
    from kubilitics import container
    from kubilitics.adapters.aws import client

    arn = client("secretsmanager").create_secret(Name="ai-key", SecretString=fake_messages_api.api_key)["ARN"]
    settings_env.setenv("KUBILITICS_AI_SECRET_ARN", arn)
    settings_env.setenv("KUBILITICS_ANTHROPIC_BASE_URL", fake_messages_api.url)
    container.reset()
    calls: list[str] = []

    def count(event_name: str, **_: object) -> None:
        calls.append(event_name.split(".")[-1])

    secrets, dynamodb = client("secretsmanager"), client("dynamodb")
    secrets.meta.events.register("before-call.secrets-manager", count)
    dynamodb.meta.events.register("before-call.dynamodb", count)
    try:
        bodies = [invoke(handler, load_event("health/get_health.json")) for _ in range(20)]
    finally:
        secrets.meta.events.unregister("before-call.secrets-manager", count)
        dynamodb.meta.events.unregister("before-call.dynamodb", count)
    assert [status for status, _, _ in bodies] == [200] * 20
    assert bodies[-1][2]["dependencies"]["ai_service"] == "healthy"
    assert calls.count("GetSecretValue") == 1 and len(calls) == 2, calls  # the key, the table ping
    assert [r.path for r in fake_messages_api.requests] == ["/v1/models"]
