"""The local server over real HTTP: health, version, auth, headers, rate limits, OpenAPI and docs."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support import cluster_name, dev_token


def get(server, path: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(server.url + path, headers=headers, timeout=30)


def test_health_is_healthy_on_the_test_cluster(local_server, k8s_cluster):
    response = get(local_server, "/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy"
    assert body["dependencies"]["kubernetes_api"] == "healthy"
    assert body["dependencies"]["database"] == "healthy"
    assert body["cluster_info"]["name"] == cluster_name(k8s_cluster)


def test_version_with_the_printed_admin_token(local_server, k8s_cluster):
    response = get(local_server, "/api/v1/version", local_server.admin_token, **{"X-Request-ID": "req-e2e-1"})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "req-e2e-1"
    assert response.headers["x-ratelimit-limit"] == "1000"  # admin tokens: 10x the 100/min of version
    assert response.json()["kubernetes"]["cluster_name"] == cluster_name(k8s_cluster)


def test_cli_minted_token_works_and_cli_revocation_is_enforced(local_server):
    created = local_server.cli("token", "create", "--sub", "carol", "--scope", "read", "--type", "user")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert get(local_server, "/api/v1/version", token).status_code == 200

    revoked = local_server.cli("token", "revoke", "--token", token, "--by", "e2e")
    assert revoked.returncode == 0, revoked.stderr
    # The server cached "not revoked" for this jti; it must see the revocation within 30 s.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = get(local_server, "/api/v1/version", token)
        if response.status_code == 401:
            break
        time.sleep(1)
    assert response.status_code == 401 and response.json()["error"] == "token_revoked"


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        (None, 401, "unauthorized"),
        ("not-a-token", 401, "unauthorized"),
        (dev_token("dave", "read", exp=int(time.time()) - 10), 401, "token_expired"),
        (dev_token("erin", "exec"), 403, "insufficient_scope"),
    ],
    ids=["no-token", "garbage", "expired", "no-read-scope"],
)
def test_version_refuses_bad_tokens(local_server, token, status, code):
    response = get(local_server, "/api/v1/version", token)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == code and body["trace_id"] == response.headers["x-request-id"]


def test_context_header_is_validated(local_server):
    response = get(
        local_server, "/api/v1/version", local_server.admin_token, **{"X-Kubeconfig-Context": "nope"}
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_context"


def test_openapi_document_and_docs_are_served(local_server):
    spec = httpx.get(local_server.url + "/openapi.json", timeout=10).json()
    assert {"/health", "/api/v1/version"} <= set(spec["paths"])
    docs = httpx.get(local_server.url + "/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert httpx.get(local_server.ai_url + "/openapi.json", timeout=10).status_code == 200
