"""/asyncapi.json describes the WebSocket messages as the code sends and accepts them (issue 16, item 1).

The document is validated against the AsyncAPI 3.0.0 JSON schema of `@asyncapi/specs` (pinned below),
fetched from the npm registry in the test run into a cache outside the work tree, its integrity
checked on every run (sha512, as `npm view` reports it), never committed.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from referencing import Registry, Resource

from tests.conftest import REPO

# The newest 6.x of `npm view @asyncapi/specs versions`; it ships schemas/3.0.0.json (bundled).
SPECS_VERSION = "6.11.1"
# `npm view @asyncapi/specs@6.11.1 dist.integrity` and `dist.tarball`
SPECS_INTEGRITY = (
    "sha512-A3WBLqAKGoJ2+6FWFtpjBlCQ1oFCcs4GxF7zsIGvNqp/klGUHjlA3aAcZ9XMMpLGE8zPeYDz2x9FmO6DSuKraQ=="
)
SPECS_TARBALL = f"https://registry.npmjs.org/@asyncapi/specs/-/specs-{SPECS_VERSION}.tgz"
SCHEMA_MEMBER = "package/schemas/3.0.0.json"

# Every `type` the server sends (the scan below finds them in the code; this list keeps it honest).
SENT_TYPES = {
    "SUBSCRIBED",
    "UNSUBSCRIBED",
    "ADDED",
    "MODIFIED",
    "DELETED",
    "ERROR",
    "log",
    "log_end",
    "output",
    "exit",
    "CHAT",
    "SESSION_ENDED",
}
SENDING_MODULES = ("realtime_messages", "realtime", "watch", "live_logs", "shell", "sessions", "chat")


# ---- the AsyncAPI schema -------------------------------------------------------------------------


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kubilitics" / f"asyncapi-specs-{SPECS_VERSION}"


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _download(destination: Path) -> None:
    """`npm pack` (npm's registry settings apply), else the registry's tarball URL."""
    with tempfile.TemporaryDirectory() as scratch:
        npm = shutil.which("npm")
        if npm:
            done = subprocess.run(
                [npm, "pack", f"@asyncapi/specs@{SPECS_VERSION}", "--pack-destination", scratch],
                cwd=scratch,
                capture_output=True,
                text=True,
                timeout=180,
            )
            packed = Path(scratch) / f"asyncapi-specs-{SPECS_VERSION}.tgz"
            if done.returncode == 0 and packed.exists():
                shutil.move(packed, destination)
                return
        import httpx

        response = httpx.get(SPECS_TARBALL, timeout=60, follow_redirects=True)
        response.raise_for_status()
        partial = destination.with_suffix(".part")
        partial.write_bytes(response.content)
        partial.replace(destination)


@pytest.fixture(scope="module")
def asyncapi_schema() -> dict[str, Any]:
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"asyncapi-specs-{SPECS_VERSION}.tgz"
    if not tarball.exists():
        try:
            _download(tarball)
        except Exception as exc:  # no registry: say so, do not pass silently
            pytest.fail(f"@asyncapi/specs@{SPECS_VERSION} could not be fetched: {exc!r}")
    data = tarball.read_bytes()
    if _integrity(data) != SPECS_INTEGRITY:
        tarball.unlink()
        pytest.fail(f"{tarball}: integrity mismatch (removed; the next run fetches it again)")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        member = archive.extractfile(SCHEMA_MEMBER)
        assert member is not None, SCHEMA_MEMBER
        schema: dict[str, Any] = json.load(member)
    return schema


def asyncapi_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """The draft the schema declares; every $ref resolved inside the bundled schema, none fetched."""

    def offline(uri: str) -> Resource:
        raise LookupError(f"not fetched: {uri}")

    registry: Registry = Registry(retrieve=offline).with_resource(  # type: ignore[call-arg]
        schema["$id"], Resource.from_contents(schema)
    )
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft7Validator, schema["$schema"]
    cls.check_schema(schema)
    return cls(schema, registry=registry)


# ---- the document ---------------------------------------------------------------------------------


@pytest.fixture()
def main_app(settings_env):
    from kubilitics.api.app import create_app
    from kubilitics.api.main import ai_routers, cluster_routers

    return create_app(*cluster_routers(), *ai_routers())


@pytest.fixture()
def document(main_app) -> dict[str, Any]:
    response = TestClient(main_app).get("/asyncapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def payload_validator(document: dict[str, Any], message: str) -> jsonschema.Draft7Validator:
    schema = {**document["components"]["messages"][message]["payload"], "components": document["components"]}
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def message_types(document: dict[str, Any], action: str) -> set[str]:
    found: set[str] = set()
    for operation in document["operations"].values():
        if operation["action"] != action:
            continue
        for reference in operation["messages"]:
            _, _, channel, _, name = reference["$ref"].split("/")
            message = document["channels"][channel]["messages"][name]
            payload = message["$ref"].rsplit("/", 1)[1]
            schema_name = document["components"]["messages"][payload]["payload"]["$ref"].rsplit("/", 1)[1]
            prop = document["components"]["schemas"][schema_name]["properties"].get("type", {})
            found.update([prop["const"]] if "const" in prop else prop.get("enum", []))
            action_prop = document["components"]["schemas"][schema_name]["properties"].get("action", {})
            found.update(
                f"action:{a}"
                for a in ([action_prop["const"]] if "const" in action_prop else action_prop.get("enum", []))
            )
    return found


def test_the_document_is_valid_asyncapi_3(document, asyncapi_schema):
    assert document["asyncapi"] == "3.0.0"
    errors = sorted(asyncapi_validator(asyncapi_schema).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5]]


def test_the_schema_is_really_applied(document, asyncapi_schema):
    broken = json.loads(json.dumps(document))
    broken["operations"]["sendChat"]["action"] = "publish"  # AsyncAPI 2's word: not valid in 3
    assert list(asyncapi_validator(asyncapi_schema).iter_errors(broken))


def test_the_three_paths_are_channels_with_the_token_query_parameter(document):
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {"/api/v1/ws", "/api/v1/shell", "/api/v1/ai/chat"}
    for channel in document["channels"].values():
        assert "token" in channel["bindings"]["ws"]["query"]["properties"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["token"] == {**schemes["token"], "type": "httpApiKey", "name": "token", "in": "query"}
    assert {op["action"] for op in document["operations"].values()} == {"send", "receive"}


def _sent_types_in_code() -> set[str]:
    """`type` values of the messages the services build: dict literals with a "type" key (not the chat's
    {"type", "text"} suggestions, nor the empty placeholder of a validation error), and the first
    argument of ack(...) and _Change(...)."""
    found: set[str] = set()

    def strings(node: ast.AST) -> set[str]:
        return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}

    for module in SENDING_MODULES:
        tree = ast.parse((REPO / "shared/kubilitics/services" / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if "type" in keys and keys != {"type", "text"}:
                    value = node.values[
                        [k.value if isinstance(k, ast.Constant) else None for k in node.keys].index("type")
                    ]
                    if isinstance(value, ast.Constant | ast.IfExp):
                        found |= strings(value)
            elif isinstance(node, ast.Call) and node.args:
                name = (
                    node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                )
                if name in ("ack", "_Change"):
                    found |= strings(node.args[0])
    return found - {""}


def test_every_message_type_the_code_sends_is_in_the_document(document):
    assert _sent_types_in_code() == SENT_TYPES, "a new message type: describe it in api/asyncapi.py"
    assert message_types(document, "send") >= SENT_TYPES


def test_every_client_action_and_shell_type_is_in_the_document(document):
    from kubilitics.services.realtime_messages import ACTIONS, SHELL_TYPES

    received = message_types(document, "receive")
    assert {f"action:{a}" for a in ACTIONS} <= received
    assert set(SHELL_TYPES) <= received
    assert "action:chat" in received


def test_client_payloads_list_the_fields_the_server_reads(document):
    from kubilitics.services.chat import ChatRequest
    from kubilitics.services.realtime_messages import (
        Logs,
        ShellInit,
        ShellInput,
        ShellResize,
        Subscribe,
        Unsubscribe,
    )

    schemas = document["components"]["schemas"]
    pairs: list[tuple[type[BaseModel], str, set[str]]] = [
        (Subscribe, "Subscribe", set()),
        (Unsubscribe, "Unsubscribe", set()),
        (Logs, "Logs", set()),
        (ShellInit, "ShellInit", {"action", "type"}),
        (ShellInput, "ShellInput", {"action", "type"}),
        (ShellResize, "ShellResize", {"action", "type"}),
        (ChatRequest, "ChatRequest", {"action"}),
    ]
    for model, name, routing in pairs:
        assert set(schemas[name]["properties"]) == set(model.model_fields) | routing, name


def test_the_reference_examples_are_valid_client_messages(document):
    from kubilitics.services import realtime_messages

    examples = {
        "subscribe": {
            "action": "subscribe",
            "resource_kind": "Pod",
            "namespace": "default",
            "label_selector": "app=myapp",
            "subscription_id": "sub-123",
        },
        "unsubscribe": {"action": "unsubscribe", "subscription_id": "sub-123"},
        "logs": {"action": "logs", "namespace": "default", "pod_name": "web-0", "tail_lines": 20},
        "shellInit": {
            "action": "init",
            "namespace": "default",
            "pod_name": "debug-pod",
            "container": "app",
            "shell": "/bin/bash",
            "rows": 24,
            "cols": 80,
        },
        "shellInput": {"type": "input", "data": "ls -la\n"},
        "shellResize": {"type": "resize", "rows": 30, "cols": 120},
        "shellExitRequest": {"type": "exit"},
    }
    for message, example in examples.items():
        payload_validator(document, message).validate(example)
        realtime_messages.parse(json.dumps(example))  # and the server takes it
    payload_validator(document, "chatRequest").validate(
        {
            "message": "Why is the nginx deployment showing such high CPU usage?",
            "context": {"resource_kind": "Deployment", "namespace": "default", "resource_name": "nginx"},
            "include_metrics": True,
            "include_logs": True,
        }
    )
    with pytest.raises(jsonschema.ValidationError):
        payload_validator(document, "subscribe").validate({"action": "subscribe"})


def test_what_the_server_sends_matches_its_payload(document):
    from kubilitics.errors import KubiliticsError
    from kubilitics.services import realtime_messages as m
    from kubilitics.services.chat import ChatService, ChatSession

    watch_ack = {
        "stream": "watch",
        "resource_kind": "Pod",
        "api_version": "v1",
        "namespace": None,
        "label_selector": None,
        "resource_version": "42",
    }
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}}
    ended = ChatService.ended_message(
        SimpleNamespace(_clock=SimpleNamespace(now=lambda: 1_780_000_000.0)),  # type: ignore[arg-type]
        ChatSession("chat-1", None, "ctx", 0.0),  # type: ignore[arg-type]
        "idle_timeout",
    )
    sent = [
        ("subscribedWatch", m.ack("SUBSCRIBED", "pods", **watch_ack)),
        ("subscribedLogs", m.ack("SUBSCRIBED", "logs-1", stream="logs")),
        (
            "subscribedLogs",
            m.ack("SUBSCRIBED", "l", stream="logs", namespace="d", pod_name="p", container=None),
        ),
        ("unsubscribed", m.ack("UNSUBSCRIBED", "pods")),
        (
            "resourceChange",
            m.update_prefix("MODIFIED", "pods") + m.update_suffix(m.encode(pod), 1_780_000_000.5),
        ),
        ("logLine", m.log_line("logs-1", "hello")),
        ("logEnd", m.log_end("logs-1", "complete")),
        ("shellOutput", m.shell_output("stdout", "$ ")),
        ("shellExited", m.shell_exit(0)),
        ("shellExited", m.shell_exit(None, "idle_timeout")),
        ("error", m.error_message(KubiliticsError("nope", code="not_found"), "req-1", "pods")),
        ("error", m.error_message(KubiliticsError("bad", code="validation_failed"), None)),
        ("sessionEnded", ended),
    ]
    for message, text in sent:
        payload_validator(document, message).validate(json.loads(text))


def test_each_app_describes_its_own_websocket_routes_and_builds_it_once(settings_env):
    from kubilitics.api.app import create_app
    from kubilitics.api.main import ai_routers
    from kubilitics.api.routers import system

    ai_app = create_app(*ai_routers())
    ai = TestClient(ai_app)
    first = ai.get("/asyncapi.json")  # no token: unauthenticated, as /openapi.json
    assert first.status_code == 200
    assert [c["address"] for c in first.json()["channels"].values()] == ["/api/v1/ai/chat"]
    assert set(first.json()["components"]["messages"]) == {
        "chatRequest",
        "chatAnswer",
        "error",
        "sessionEnded",
    }
    built = ai_app.state.asyncapi_schema  # cached on the app: the second request does not rebuild it
    assert ai.get("/asyncapi.json").json() == first.json() and ai_app.state.asyncapi_schema is built
    health = TestClient(create_app(system.router)).get("/asyncapi.json").json()
    assert health["channels"] == {} and health["operations"] == {}
    assert "/asyncapi.json" not in ai.get("/openapi.json").json()["paths"]


def test_the_document_is_built_on_request_not_at_cold_start():
    """A Lambda function's import (its init phase) neither builds the document nor imports its module."""
    probe = (
        "import sys; sys.path[:0] = ['shared', 'functions/resources'];"
        "import app; assert getattr(app.app.state, 'asyncapi_schema', None) is None;"
        "print('kubilitics.api.asyncapi' in sys.modules)"
    )
    env = {"KUBILITICS_ENV": "test", "KUBILITICS_JWT_SECRET": "x" * 40, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
