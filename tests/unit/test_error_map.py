"""The one error map: bad input of every kind gets the standard body and the right code, never a 500."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import pytest
from fastapi import APIRouter, Query
from fastapi.testclient import TestClient
from kubilitics.api.app import create_app
from kubilitics.errors import ERROR_STATUS, KubiliticsError
from pydantic import BaseModel, Field

SECTION_16 = {
    "unauthorized": 401,
    "token_expired": 401,
    "invalid_context": 401,
    "forbidden": 403,
    "token_revoked": 401,
    "insufficient_scope": 403,
    "not_found": 404,
    "already_exists": 409,
    "resource_conflict": 409,
    "invalid_resource_kind": 400,
    "resource_in_use": 409,
    "resource_terminating": 409,
    "validation_failed": 400,
    "invalid_parameter": 400,
    "missing_required_field": 400,
    "invalid_label_selector": 400,
    "invalid_field_selector": 400,
    "rate_limit_exceeded": 429,
    "quota_exceeded": 429,
    "too_many_requests": 429,
    "internal_server_error": 500,
    "service_unavailable": 503,
    "database_error": 500,
    "kubernetes_api_error": 502,
    "ai_service_unavailable": 503,
    "investigation_failed": 500,
    "llm_api_error": 502,
    "token_budget_exhausted": 429,
    "vector_store_error": 500,
    "action_expired": 410,
}


class Order(StrEnum):
    asc = "asc"
    desc = "desc"


class Body(BaseModel):
    name: str
    replicas: int = Field(ge=0)


router = APIRouter()


@router.post("/probe")
def probe(body: Body, limit: Annotated[int, Query(ge=1, le=500)] = 50, sort_order: Order = Order.asc) -> dict:
    return {"name": body.name, "limit": limit, "order": sort_order.value}


@router.get("/boom")
def boom() -> dict:
    raise RuntimeError("secret internal detail: password=hunter2")


@router.get("/domain/{code}")
def domain(code: str) -> dict:
    raise KubiliticsError(f"raised {code}", code=code, details={"where": "test"})


@pytest.fixture()
def client(settings_env):
    return TestClient(create_app(router), raise_server_exceptions=False)


def assert_standard_body(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert {"error", "message", "details", "timestamp", "trace_id"} <= set(body)
    assert body["timestamp"].endswith("Z")
    assert body["trace_id"] == response.headers["x-request-id"]
    return body


def test_every_section_16_code_has_its_status():
    assert {code: ERROR_STATUS[code] for code in SECTION_16} == SECTION_16


@pytest.mark.parametrize("code", sorted(SECTION_16))
def test_domain_errors_leave_with_their_status_and_the_standard_body(client, code):
    body = assert_standard_body(client.get(f"/domain/{code}"), SECTION_16[code], code)
    assert body["message"] == f"raised {code}" and body["details"] == {"where": "test"}


def test_valid_request_passes(client):
    response = client.post("/probe?limit=10&sort_order=desc", json={"name": "web", "replicas": 2})
    assert response.json() == {"name": "web", "limit": 10, "order": "desc"}


def test_malformed_json_is_validation_failed(client):
    response = client.post("/probe", content=b'{"name": "web",', headers={"content-type": "application/json"})
    assert_standard_body(response, 400, "validation_failed")


def test_missing_field_is_missing_required_field(client):
    body = assert_standard_body(client.post("/probe", json={"replicas": 1}), 400, "missing_required_field")
    assert body["details"]["field"] == "name"


def test_wrong_type_is_validation_failed_with_violations(client):
    body = assert_standard_body(
        client.post("/probe", json={"name": "web", "replicas": "many"}), 400, "validation_failed"
    )
    assert body["violations"][0]["field"] == "replicas"


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "limit=ten", "sort_order=sideways"])
def test_bad_query_parameters_are_invalid_parameter(client, query):
    response = client.post(f"/probe?{query}", json={"name": "web", "replicas": 1})
    body = assert_standard_body(response, 400, "invalid_parameter")
    assert body["details"]["parameter"] == query.split("=")[0]


def test_oversized_body_is_refused_before_the_route(client):
    big = {"name": "x" * 1_100_000, "replicas": 1}
    body = assert_standard_body(client.post("/probe", json=big), 400, "validation_failed")
    assert body["details"] == {"max_body_bytes": 1_048_576}


def test_unexpected_exception_is_a_500_without_internals(client):
    response = client.get("/boom")
    body = assert_standard_body(response, 500, "internal_server_error")
    assert "hunter2" not in response.text and body["message"] == "Unexpected server error"


def test_unknown_route_and_method(client):
    assert_standard_body(client.get("/nowhere"), 404, "not_found")
    assert_standard_body(client.delete("/probe"), 405, "method_not_allowed")


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/nowhere", headers={"X-Request-ID": "req-20260210-a1b2c3d4"}).json()["trace_id"] == (
        "req-20260210-a1b2c3d4"
    )
    generated = client.get("/nowhere", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert generated.startswith("req-") and len(generated) == 36


@pytest.mark.parametrize("version", ["1.0.0", "1", "v1", "1.2"])
def test_supported_api_versions_are_accepted(client, version):
    response = client.post("/probe", json={"name": "a", "replicas": 0}, headers={"X-API-Version": version})
    assert response.status_code == 200 and response.headers["x-api-version"] == "1.0.0"


@pytest.mark.parametrize("version", ["2.0.0", "0.9", "latest"])
def test_unsupported_api_versions_are_invalid_parameter(client, version):
    response = client.post("/probe", json={"name": "a", "replicas": 0}, headers={"X-API-Version": version})
    body = assert_standard_body(response, 400, "invalid_parameter")
    assert body["details"]["supported_versions"] == ["1.0.0"]
