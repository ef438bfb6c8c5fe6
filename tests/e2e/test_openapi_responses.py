"""What the local server answers on the test cluster matches the schemas /openapi.json declares.

The response schemas are documentation (routes answer raw JSON, nothing validates it at run time):
this checks them against real answers, success and error, for every GET and a dry-run create.
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from tests.support import dev_token


@pytest.fixture(scope="module")
def document(local_server) -> dict[str, Any]:
    return httpx.get(local_server.url + "/openapi.json", timeout=30).json()


@pytest.fixture(scope="module")
def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {dev_token('e2e-openapi', 'read,write,delete,exec,admin')}"}


def check(document: dict[str, Any], method: str, path: str, answer: httpx.Response) -> dict[str, Any]:
    """The answer's status is declared for the operation and its body matches that status's schema."""
    responses = document["paths"][path][method]["responses"]
    status = str(answer.status_code)
    assert status in responses, f"{method.upper()} {path}: undeclared {status}: {answer.text[:500]}"
    schema = responses[status]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator(
        {**schema, "components": document["components"]}, format_checker=jsonschema.FormatChecker()
    )
    body = answer.json()
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{method.upper()} {path} {status}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:5]
    )
    return body


GETS = [
    ("/health", "/health", {}),
    ("/api/v1/version", "/api/v1/version", {}),
    ("/api/v1/resources/{kind}", "/api/v1/resources/Pod", {"namespace": "kube-system", "limit": 5}),
    ("/api/v1/resources/{kind}", "/api/v1/resources/nodes", {"sort_by": "name", "sort_order": "desc"}),
    ("/api/v1/resources/{kind}", "/api/v1/resources/NoSuchKind", {}),
    ("/api/v1/resources/{kind}", "/api/v1/resources/Pod", {"namespace": "Not_A_Namespace"}),
    ("/api/v1/resources/{kind}", "/api/v1/resources/Pod", {"namespace": "no-such-namespace-e2e"}),
    ("/api/v1/namespaces", "/api/v1/namespaces", {"include_system": "true"}),
    ("/api/v1/contexts", "/api/v1/contexts", {}),
    ("/api/v1/events", "/api/v1/events", {"since_time": "2020-01-01T00:00:00Z", "limit": 50}),
    ("/api/v1/events", "/api/v1/events", {"since_time": "yesterday"}),
    ("/api/v1/events", "/api/v1/events", {"limit": 0}),
    ("/api/v1/metrics/nodes", "/api/v1/metrics/nodes", {}),
    ("/api/v1/metrics/pods", "/api/v1/metrics/pods", {"namespace": "kube-system"}),
    ("/api/v1/topology", "/api/v1/topology", {"depth": 5, "include_events": "true"}),
    ("/api/v1/topology", "/api/v1/topology", {"depth": 1}),
    ("/api/v1/ai/status", "/api/v1/ai/status", {}),
    ("/api/v1/ai/config", "/api/v1/ai/config", {}),
    ("/api/v1/ai/usage", "/api/v1/ai/usage", {"group_by": "user", "time_period": "30d"}),
    ("/api/v1/ai/analytics/summary", "/api/v1/ai/analytics/summary", {"time_period": "90d"}),
    ("/api/v1/ai/insights", "/api/v1/ai/insights", {"dismissed": "true", "status": "all"}),
    ("/api/v1/ai/investigations", "/api/v1/ai/investigations", {"include_findings": "true"}),
    ("/api/v1/ai/actions/pending", "/api/v1/ai/actions/pending", {}),
]


@pytest.mark.parametrize(("template", "path", "params"), GETS, ids=[f"{p}?{q}" for _, p, q in GETS])
def test_get_answers_match_the_declared_schemas(local_server, document, headers, template, path, params):
    answer = httpx.get(local_server.url + path, params=params, headers=headers, timeout=60)
    check(document, "get", template, answer)


def test_events_take_a_group_qualified_kind_as_resources_do(local_server, document, headers):
    # found by make fuzz: /resources took "deployments.apps", /events answered 400 invalid_resource_kind
    answer = httpx.get(
        local_server.url + "/api/v1/events",
        params={"resource_kind": "deployments.apps"},
        headers=headers,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    check(document, "get", "/api/v1/events", answer)


def test_a_dry_run_create_and_refusals_match(local_server, document, headers, k8s_namespace):
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "openapi-e2e", "namespace": k8s_namespace},
    }
    url = local_server.url + "/api/v1/resources/ConfigMap"
    created = httpx.post(url, params={"validate_only": "true"}, json=manifest, headers=headers, timeout=60)
    assert created.status_code == 201, created.text
    check(document, "post", "/api/v1/resources/{kind}", created)
    refused = httpx.post(url, json={"kind": "Secret"}, headers=headers, timeout=60)
    assert check(document, "post", "/api/v1/resources/{kind}", refused)["error"] == "validation_failed"
    unauthenticated = httpx.get(local_server.url + "/api/v1/namespaces", timeout=30)
    assert check(document, "get", "/api/v1/namespaces", unauthenticated)["error"] == "unauthorized"
    missing = httpx.post(
        local_server.url + "/api/v1/ai/insights/ins-none/dismiss",
        json={"reason": "x"},
        headers=headers,
        timeout=30,
    )
    assert check(document, "post", "/api/v1/ai/insights/{id}/dismiss", missing)["error"] == "not_found"
    traced = httpx.request("TRACE", local_server.url + "/api/v1/namespaces", timeout=30)
    assert traced.status_code == 405 and traced.headers["allow"] == "GET"


def test_ai_writes_match(local_server, document, headers):
    base = local_server.url + "/api/v1/ai"
    unchanged = {"investigation_settings": {"max_concurrent_investigations": 5}}
    check(
        document,
        "put",
        "/api/v1/ai/config",
        httpx.put(base + "/config", json=unchanged, headers=headers, timeout=30),
    )
    started = httpx.post(
        base + "/investigate",
        json={"resource_kind": "Namespace", "resource_name": "kube-system", "investigation_scope": "quick"},
        headers=headers,
        timeout=60,
    )
    assert started.status_code == 202, started.text
    check(document, "post", "/api/v1/ai/investigate", started)
    listed = httpx.get(
        base + "/investigations", params={"include_findings": "true"}, headers=headers, timeout=30
    )
    assert check(document, "get", "/api/v1/ai/investigations", listed)["total_count"] >= 1
    insights = check(
        document, "get", "/api/v1/ai/insights", httpx.get(base + "/insights", headers=headers, timeout=30)
    )
    if insights["insights"]:
        insight_id = insights["insights"][0]["insight_id"]
        dismissed = httpx.post(
            f"{base}/insights/{insight_id}/dismiss", json={"reason": "e2e"}, headers=headers, timeout=30
        )
        check(document, "post", "/api/v1/ai/insights/{id}/dismiss", dismissed)
        again = httpx.post(
            f"{base}/insights/{insight_id}/dismiss", json={"reason": "e2e"}, headers=headers, timeout=30
        )
        assert (
            check(document, "post", "/api/v1/ai/insights/{id}/dismiss", again)["error"] == "resource_conflict"
        )


def test_resource_writes_match(local_server, document, headers, k8s_namespace):
    url = local_server.url + "/api/v1/resources/ConfigMap"
    one = f"{url}/{k8s_namespace}/openapi-e2e-write"
    manifest = {"metadata": {"name": "openapi-e2e-write", "namespace": k8s_namespace}, "data": {"a": "1"}}
    created = httpx.post(url, json=manifest, headers=headers, timeout=60)
    assert created.status_code == 201, created.text
    check(document, "post", "/api/v1/resources/{kind}", created)
    again = httpx.post(url, json=manifest, headers=headers, timeout=60)
    assert check(document, "post", "/api/v1/resources/{kind}", again)["error"] == "already_exists"
    patched = httpx.put(
        one, params={"patch_strategy": "merge_patch"}, json={"data": {"b": "2"}}, headers=headers, timeout=60
    )
    check(document, "put", "/api/v1/resources/{kind}/{namespace}/{name}", patched)
    deleted = httpx.delete(one, headers=headers, timeout=60)
    check(document, "delete", "/api/v1/resources/{kind}/{namespace}/{name}", deleted)
    gone = httpx.delete(one, headers=headers, timeout=60)
    assert (
        check(document, "delete", "/api/v1/resources/{kind}/{namespace}/{name}", gone)["error"] == "not_found"
    )
