"""/openapi.json describes every operation as the server answers it (issue 16, item 1).

Every operation: a typed body where it takes one, a success schema, each error status it can answer
with the standard error body (429 with the rate-limit headers), no 422 anywhere, and the parameter
rules the server enforces, no others (the declared patterns are checked against the services'
own validators). An unsupported method is a 405 naming the allowed ones in `Allow`.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from kubilitics.api import documented
from kubilitics.errors import KubiliticsError

from tests.conftest import REPO

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
AUTHENTICATED_ERRORS = {"400", "401", "403", "429", "500", "503"}
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-After",
}


@pytest.fixture()
def app(settings_env):
    from kubilitics.api.app import create_app
    from kubilitics.api.main import ai_routers, cluster_routers

    return create_app(*cluster_routers(), *ai_routers())


@pytest.fixture()
def document(app) -> dict[str, Any]:
    return TestClient(app).get("/openapi.json").json()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def parameter(document: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    found = [p for p in document["paths"][path][method].get("parameters", []) if p["name"] == name]
    assert len(found) == 1, f"{method.upper()} {path}: parameter {name}"
    return found[0]["schema"]


def test_the_document_is_valid_openapi_3_1(document):
    from openapi_spec_validator import validate

    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_in_the_document_and_described(document):
    from kubilitics.api.openapi import OPERATIONS

    served = {(method, path) for method, path, _ in operations(document)}
    assert served == set(OPERATIONS), "routes without a line in api/openapi.py OPERATIONS (or stale lines)"
    assert len(served) >= 26


def test_no_422_and_no_fastapi_validation_schemas(document):
    text = json.dumps(document)
    assert "HTTPValidationError" not in text
    assert '"ValidationError"' not in text
    for method, path, operation in operations(document):
        assert "422" not in operation["responses"], f"{method.upper()} {path}"


def test_every_operation_has_a_success_schema(document):
    for method, path, operation in operations(document):
        successes = [status for status in operation["responses"] if status.startswith("2")]
        assert len(successes) == 1, f"{method.upper()} {path}"
        content = operation["responses"][successes[0]]["content"]
        if path.endswith("/logs"):
            assert set(content) == {"text/plain", "text/event-stream"}
            continue
        schema = content["application/json"]["schema"]
        assert "$ref" in schema, f"{method.upper()} {path}: success schema {schema}"
        resolved = resolve(document, schema)
        assert resolved["type"] == "object" and resolved["properties"], f"{method.upper()} {path}"


def test_success_schemas_carry_the_references_field_names(document):
    def fields(name: str) -> set[str]:
        return set(document["components"]["schemas"][name]["properties"])

    assert {"kind", "api_version", "total_count", "page", "items"} <= fields("ResourceList")
    assert {"timestamp", "nodes"} <= fields("NodeMetrics")
    assert {"total_count", "insights"} <= fields("InsightList")
    assert {"total_count", "pending_actions"} <= fields("PendingActionList")
    assert {"exit_code", "stdout", "stderr", "execution_time_ms", "pod", "container"} <= fields("ExecResult")
    assert {"backend", "frontend", "ai_service", "kubernetes", "database", "helm_chart"} <= fields("Version")
    assert {"message", "updated_fields", "effective_timestamp", "restart_required"} <= fields(
        "AiConfigUpdated"
    )
    assert {"period", "investigations", "actions_proposed", "insights_generated"} <= fields(
        "AnalyticsSummary"
    )
    period = document["components"]["schemas"]["AnalyticsSummary"]["properties"]["period"]
    assert period["properties"]["duration_days"] == {"type": "integer"}
    node = document["components"]["schemas"]["NodeMetrics"]["properties"]["nodes"]["items"]
    assert node["properties"]["network"]["type"] == "object"  # never a bare null (issue 16, item 4)
    assert node["properties"]["disk"]["type"] == "object"


def test_every_error_status_has_the_standard_body(document):
    error_body = document["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {"error", "message", "details", "timestamp", "trace_id"}
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        errors = {status for status in responses if status[0] in "45"}
        if path == "/health":
            assert {"400", "500", "503"} <= errors, where
            assert responses["503"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Health"
            }
            errors.discard("503")
        else:
            assert operation.get("security"), f"{where}: no bearer token declared"
            assert errors >= AUTHENTICATED_ERRORS, f"{where}: missing {AUTHENTICATED_ERRORS - errors}"
            assert set(responses["429"]["headers"]) >= RATE_LIMIT_HEADERS, where
            assert "Retry-After" in responses["429"]["headers"], where
        for status in errors:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, f"{where} {status}"
            assert {"X-Request-ID", "X-API-Version"} <= set(responses[status]["headers"]), f"{where} {status}"


def test_operations_name_the_statuses_their_services_raise(document):
    def errors(method: str, path: str) -> set[str]:
        return {s for s in document["paths"][path][method]["responses"] if s[0] in "45"}

    for method in ("post", "put", "delete"):
        path = (
            "/api/v1/resources/{kind}" if method == "post" else "/api/v1/resources/{kind}/{namespace}/{name}"
        )
        assert {"404", "409", "502"} <= errors(method, path)
    assert {"404", "409", "410"} <= errors("post", "/api/v1/ai/actions/{id}/approve")
    assert {"404", "409", "410"} <= errors("post", "/api/v1/ai/actions/{id}/reject")
    assert {"404", "409"} <= errors("post", "/api/v1/ai/insights/{id}/dismiss")
    assert {"404"} <= errors("get", "/api/v1/events")


def test_every_body_is_typed(document):
    bodies = 0
    for method, path, operation in operations(document):
        if "requestBody" not in operation:
            continue
        bodies += 1
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        if not operation["requestBody"].get("required"):  # approve, reject: the body may be left out
            schema = next(branch for branch in schema["anyOf"] if branch.get("type") != "null")
        resolved = resolve(document, schema)
        assert resolved.get("type") == "object" and resolved.get("properties"), f"{method.upper()} {path}"
    assert bodies == 8  # create, update, exec, config, dismiss, investigate, approve, reject
    dismiss = document["paths"]["/api/v1/ai/insights/{id}/dismiss"]["post"]["requestBody"]
    assert dismiss["required"] is True
    assert resolve(document, dismiss["content"]["application/json"]["schema"])["required"] == ["reason"]
    config = document["paths"]["/api/v1/ai/config"]["put"]["requestBody"]["content"]["application/json"]
    update = resolve(document, config["schema"])
    assert {"llm_configuration", "safety_policy", "investigation_settings"} <= set(update["properties"])
    llm = resolve(document, update["properties"]["llm_configuration"])
    assert {"model", "temperature", "max_tokens", "api_key"} <= set(llm["properties"])


def test_the_dismiss_and_config_schemas_match_what_the_services_accept(document):
    from kubilitics.ai.configuration import validate
    from kubilitics.errors import ValidationFailed
    from kubilitics.services.insights import _dismissal

    schemas = document["components"]["schemas"]
    dismiss = jsonschema.Draft202012Validator(schemas["DismissBody"])
    for body in (
        {"reason": "acknowledged_wont_fix"},
        {"reason": "x", "notes": None},
        {"reason": "x", "notes": "n" * 2000},
        {},
        {"reason": " "},
        {"reason": "r" * 201},
        {"reason": "x", "other": 1},
        {"reason": 3},
    ):
        try:
            _dismissal(body)
            accepted = True
        except KubiliticsError:
            accepted = False
        assert dismiss.is_valid(body) == accepted, body

    # The reference's own example body is a valid update (its model gets a price warning, not a 400).
    example = {
        "llm_configuration": {"model": "gpt-4-turbo", "temperature": 0.2, "max_tokens": 3000},
        "safety_policy": {"protected_namespaces": ["kube-system", "kube-node-lease", "prod-pii"]},
        "investigation_settings": {"max_concurrent_investigations": 10, "auto_remediation_enabled": True},
    }
    registry = {"components": document["components"], **schemas["AiConfigUpdate"]}
    update = jsonschema.Draft202012Validator(registry)
    assert update.is_valid(example)
    refused: list[dict[str, Any]] = [
        {"llm_configuration": {"temperature": 3}},
        {"unknown": {}},
        {"chat_settings": {"x": 1}},
    ]
    for bad in refused:
        assert not update.is_valid(bad), bad
        with pytest.raises(ValidationFailed):
            validate(bad)


def test_the_exec_body_schema_matches_its_validators(document):
    from kubilitics.api.routers.pods import ExecBody
    from pydantic import ValidationError

    registry = {"components": document["components"], **document["components"]["schemas"]["ExecBody"]}
    schema = jsonschema.Draft202012Validator(registry)
    for body in (
        {"command": ["ls", "-la"]},
        {"command": ["sh"], "working_dir": "/app", "environment": {"DEBUG": "1", "_X": ""}},
        {"command": []},
        {"command": ["", "x"]},
        {"command": ["ls"], "working_dir": "app"},
        {"command": ["ls"], "working_dir": "/a\x00b"},
        {"command": ["ls"], "environment": {"1BAD": "x"}},
        {"command": ["ls"], "environment": {"OK": "a\x00"}},
        {"command": ["ls"], "shell": "/bin/sh"},
    ):
        try:
            ExecBody.model_validate(body)
            accepted = True
        except ValidationError:
            accepted = False
        assert schema.is_valid(body) == accepted, body


def test_names_a_generated_client_uses(document):
    """openapi-python-client names functions after operationIds and parameter enums after both
    (tests/e2e/test_generated_client.py generates a client): short route names, no nullable
    parameter (a `_type_0` class), no inline nullable object."""
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", i) and "api_v1" not in i for i in ids), ids
    assert {"list_resources", "update_resource", "start_investigation", "approve_action"} <= set(ids)
    for method, path, operation in operations(document):
        for param in operation.get("parameters", []):
            branches = param["schema"].get("anyOf", [param["schema"]])
            assert all(b.get("type") != "null" for b in branches), f"{method.upper()} {path} {param['name']}"

    def inline_nullable_objects(node: Any) -> int:
        if isinstance(node, dict):
            own = any(b.get("type") == "object" for b in node.get("anyOf", []) if isinstance(b, dict))
            return own + sum(inline_nullable_objects(v) for v in node.values())
        if isinstance(node, list):
            return sum(inline_nullable_objects(v) for v in node)
        return 0

    schemas = document["components"]["schemas"]
    assert inline_nullable_objects(schemas) == 0


def test_parameters_declare_bounds(document):
    """Every query and path string is bounded (length, pattern, enum or format), every integer has a
    minimum (headers such as Accept are taken as they come)."""
    for method, path, operation in operations(document):
        for param in (p for p in operation.get("parameters", []) if p["in"] in ("query", "path")):
            where = f"{method.upper()} {path} {param['name']}"
            branches = param["schema"].get("anyOf", [param["schema"]])
            for schema in (b for b in branches if b.get("type") != "null"):
                if schema.get("type") == "string":
                    assert {"maxLength", "pattern", "enum", "format"} & set(schema), where
                elif schema.get("type") == "integer":
                    assert "minimum" in schema, where


def test_parameters_declare_the_rules_the_services_enforce(document):
    def branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
        return [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]

    def declared(method: str, path: str, name: str) -> dict[str, Any]:
        return next(b for b in branches(parameter(document, method, path, name)) if b.get("maxLength") != 0)

    label, subdomain = documented.DNS1123_LABEL, documented.DNS1123_SUBDOMAIN
    for path in ("/api/v1/events", "/api/v1/metrics/pods", "/api/v1/topology", "/api/v1/resources/{kind}"):
        assert declared("get", path, "namespace")["pattern"] == label, path
        assert declared("get", path, "namespace")["maxLength"] == 63, path
    assert declared("get", "/api/v1/metrics/nodes", "node_name")["pattern"] == subdomain
    assert declared("get", "/api/v1/metrics/pods", "pod_name")["pattern"] == subdomain
    for path in ("/api/v1/events", "/api/v1/pods/{namespace}/{name}/logs"):
        for name in ("since_time", "until_time"):
            assert declared("get", path, name)["format"] == "date-time", (path, name)
    assert declared("get", "/api/v1/events", "event_type")["pattern"] == documented.EVENT_TYPE
    assert parameter(document, "get", "/api/v1/resources/{kind}", "limit") == {
        "type": "integer", "minimum": 1, "maximum": 500, "default": 50, "title": "Limit",
    }  # fmt: skip
    assert parameter(document, "get", "/api/v1/ai/insights", "category")["enum"] == [
        "health", "security", "performance", "cost_optimization", "all",
    ]  # fmt: skip
    assert parameter(document, "get", "/api/v1/topology", "depth")["maximum"] == 5
    assert parameter(document, "get", "/api/v1/metrics/nodes", "sort_by")["enum"] == [
        "name", "cpu_usage", "memory_usage", "network",
    ]  # fmt: skip
    version = parameter(document, "get", "/api/v1/version", "X-API-Version")
    assert all(re.match(version["pattern"], v) for v in ("1", "1.0.0", "v1.2", " 1.0 "))
    assert not any(re.match(version["pattern"], v) for v in ("2", "v2.0.0", "1.0.0.0", "11"))


def test_declared_patterns_are_the_services_own():
    from kubilitics.services import cluster, events, pods, selectors

    assert documented.DNS1123_LABEL == selectors._DNS1123_LABEL.pattern == cluster._DNS_LABEL.pattern
    assert (
        documented.DNS1123_SUBDOMAIN == selectors._DNS1123_SUBDOMAIN.pattern == cluster._DNS_SUBDOMAIN.pattern
    )
    assert events._RFC3339.pattern == documented.RFC3339_EVENTS
    assert pods._RFC3339.pattern == documented.RFC3339_LOGS


def _accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except KubiliticsError as exc:
        assert exc.code == "invalid_parameter"
        return False
    return True


TIMES = (
    "2026-02-10T14:23:45Z", "2026-02-10t14:23:45.123456789z", "2026-02-10T14:23:45+02:00", "",
    "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-02-10 14:23:45Z", "2026-02-10T14:23:45",
    "yesterday", "1770733425",
)  # fmt: skip
NAMES = (
    "default",
    "a",
    "kube-system",
    "a.b-c",
    "-a",
    "a-",
    "A",
    "a_b",
    "a" * 63,
    "a" * 64,
    "a." * 100 + "a",
    "",
)


@pytest.mark.parametrize("value", TIMES)
def test_declared_times_accept_what_the_services_accept(document, value):
    from kubilitics.services.events import parse_rfc3339
    from kubilitics.services.pods import LogQuery

    cases = (
        ("/api/v1/events", lambda v: v == "" or parse_rfc3339(v, "since_time")),
        ("/api/v1/pods/{namespace}/{name}/logs", lambda v: LogQuery.parse(since_time=v)),
    )
    for path, check in cases:
        schema = parameter(document, "get", path, "since_time")
        valid = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).is_valid(
            value
        )
        assert valid == _accepts(check, value), (path, value)


@pytest.mark.parametrize("value", NAMES)
def test_declared_names_accept_what_the_services_accept(document, value):
    from kubilitics.services.cluster import check_namespace_name, check_object_name

    cases = (
        ("/api/v1/events", "namespace", lambda v: check_namespace_name(v)),
        ("/api/v1/metrics/nodes", "node_name", lambda v: check_object_name(v, "node_name")),
    )
    for path, name, check in cases:
        if value == "":
            continue  # FastAPI refuses it (minLength 1) before the service runs
        valid = jsonschema.Draft202012Validator(parameter(document, "get", path, name)).is_valid(value)
        assert valid == _accepts(check, value), (path, name, value)


@pytest.mark.parametrize("value", ["Normal", "warning", " ERROR ", "", "Info", "normal,warning", " "])
def test_declared_event_type_accepts_what_the_service_accepts(document, value):
    from kubilitics.services.events import EventsService

    service = EventsService(kube=None)  # type: ignore[arg-type]
    schema = parameter(document, "get", "/api/v1/events", "event_type")

    def check(v: str) -> None:
        with contextlib.suppress(AttributeError):  # the type is checked before the cluster is read
            service.list_events(None, now=0.0, event_type=v)  # type: ignore[arg-type]

    assert jsonschema.Draft202012Validator(schema).is_valid(value) == _accepts(check, value)


def test_unsupported_methods_get_405_with_allow(app):
    client = TestClient(app, raise_server_exceptions=False)
    for method, path, allowed in (
        ("TRACE", "/health", {"GET"}),
        ("POST", "/api/v1/version", {"GET"}),
        ("TRACE", "/api/v1/resources/Pod", {"GET", "POST"}),
        ("PATCH", "/api/v1/resources/Pod/default/web", {"PUT", "DELETE"}),
        ("DELETE", "/api/v1/ai/config", {"GET", "PUT"}),
        ("OPTIONS", "/api/v1/ai/insights/ins-1/dismiss", {"POST"}),
    ):
        answer = client.request(method, path)
        assert answer.status_code == 405, (method, path)
        assert set(answer.headers["Allow"].split(", ")) == allowed, (method, path)
        body = answer.json()
        assert body["error"] == "method_not_allowed"
        assert set(body["details"]["allowed_methods"]) == allowed
        assert set(body) == {"error", "message", "details", "timestamp", "trace_id"}
        assert answer.headers["X-Request-ID"] == body["trace_id"]


def test_the_document_is_built_on_request_not_at_cold_start():
    """A Lambda function's import (its init phase) neither builds the document nor imports its module."""
    probe = (
        "import sys, runpy; sys.path[:0] = ['shared', 'functions/resources'];"
        "import app; assert app.app.openapi_schema is None;"
        "print('kubilitics.api.openapi' in sys.modules)"
    )
    env = {"KUBILITICS_ENV": "test", "KUBILITICS_JWT_SECRET": "x" * 40, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
