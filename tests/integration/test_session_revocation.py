"""Revoking a token ends its running shells within 30 s, on AWS and locally (no cluster: Kubernetes is
a fake whose shell never stops printing, so nothing but the revocation would end the session).

On AWS: the WebSocket function starts the session, the session function runs it (moto's DynamoDB and
API Gateway management API). Locally: the server's /api/v1/shell socket, its session thread and the
same tables. The session checks its owner's token every 5 s; the tests make that 0.2 s.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.support import EVENTS, LambdaContext, revoke

ENDPOINT = "https://w1x2y3z4v5.execute-api.us-east-1.amazonaws.com/v1"
KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://kube.invalid:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: test, context: {cluster: c, user: u}}]
current-context: test
"""
CHECK_SECONDS = 0.2


class BusyTerminal:
    """`yes` in a TTY: a line every 10 ms until the exec stream is closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self._line = False

    def read(self, timeout: float) -> tuple[str, bytes] | None:
        if self.closed.is_set():
            raise EOFError
        self._line = not self._line
        time.sleep(0.01)
        return ("stdout", b"y\r\n") if self._line else None

    def write(self, data: bytes) -> None:
        pass

    def resize(self, rows: int, cols: int) -> None:
        pass

    exit_code = None

    def close(self) -> None:
        self.closed.set()


class FakeKube:
    """The pod web-0 (container app) and a shell in it."""

    def __init__(self) -> None:
        self.terminals: list[BusyTerminal] = []

    def get_path(self, context: Any, path: str, params: Any = None, timeout: Any = None) -> dict[str, Any]:
        assert path == "/api/v1/namespaces/default/pods/web-0", path
        return {"kind": "Pod", "metadata": {"name": "web-0"}, "spec": {"containers": [{"name": "app"}]}}

    def open_terminal(self, context, namespace, pod, container, command, *, rows, cols) -> BusyTerminal:
        self.terminals.append(BusyTerminal())
        return self.terminals[-1]


@pytest.fixture()
def services(aws, settings_env, tmp_path, monkeypatch) -> Iterator[Any]:
    """The container on moto with the fake cluster, sessions checking their token every 0.2 s."""
    from kubilitics import container
    from kubilitics.container import Container

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    settings_env.setenv("KUBILITICS_KUBECONFIG", str(kubeconfig))
    settings_env.setenv("KUBILITICS_WEBSOCKET_ENDPOINT", ENDPOINT)
    settings_env.setenv("KUBILITICS_SHELL_SESSION_FUNCTION", "shell-session")
    container.reset()
    original = Container.session_worker

    def quick(self: Any, *args: Any, **kwargs: Any) -> Any:
        return dataclasses.replace(original(self, *args, **kwargs), token_check_seconds=CHECK_SECONDS)

    monkeypatch.setattr(Container, "session_worker", quick)
    found = container.get_container()
    found.__dict__["kube"] = FakeKube()
    yield found


class Invocations:
    """Stands in for lambda:InvokeFunction (InvocationType=Event)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def invoke_async(self, function: str, payload: dict[str, Any]) -> None:
        self.payloads.append(payload)


def init_message(connection_id: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "websocket" / "default_shell_init.json").read_text())
    event["requestContext"]["connectionId"] = connection_id
    return event


def posted(connection_id: str) -> list[dict[str, Any]]:
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    backend = apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
    key = next((k for k in (connection_id, quote(connection_id, safe="")) if k in backend.connections), None)
    data = backend.connections[key].data.decode() if key else ""
    decoder, messages, at = json.JSONDecoder(), [], 0
    while at < len(data):
        message, at = decoder.raw_decode(data, at)
        messages.append(message)
    return messages


def test_on_aws_revoking_a_token_ends_its_running_shell(services, mint):
    started = Invocations()
    services.__dict__["lambda_invoker"] = started  # moto runs no Lambda: the test runs the session
    ws = importlib.import_module("functions.websocket.app").handler
    token = mint(sub="nina", scopes="read,exec")
    connect: dict[str, Any] = json.loads((EVENTS / "websocket" / "connect.json").read_text())
    connect["requestContext"]["connectionId"] = "c-nina"
    connect["queryStringParameters"] = {"token": token}
    connect["multiValueQueryStringParameters"] = {"token": [token]}
    assert ws(connect, LambdaContext()) == {"statusCode": 200}
    ws(init_message("c-nina"), LambdaContext())
    (payload,) = started.payloads
    calls: list[tuple[str, str, bytes]] = []  # (operation, connection, body) of the management API

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        connection = str(params.get("url_path", "")).rsplit("/", 1)[-1]
        calls.append((model.name, connection, params.get("body") or b""))

    management = services.connection_notifier._management()
    management.meta.events.register("before-call.apigatewaymanagementapi.*", record)
    session_fn = importlib.import_module("functions.shell_session.app").handler
    outcome: dict[str, Any] = {}
    context = type("Ctx", (LambdaContext,), {"get_remaining_time_in_millis": lambda _: 600_000})()
    runner = threading.Thread(target=lambda: outcome.update(session_fn(dict(payload), context)))
    runner.start()
    time.sleep(1.0)
    assert runner.is_alive() and any(m["type"] == "output" for m in posted("c-nina"))

    revoked_at = time.monotonic()
    revoke(token)
    runner.join(timeout=30)
    assert not runner.is_alive() and time.monotonic() - revoked_at < 30
    assert outcome["reason"] == "token_revoked"
    # An ERROR saying why, then API Gateway closes the socket (moto forgets what it was sent).
    *_, (said, to, body), (closed, closed_id, _) = calls
    assert (said, to, closed, closed_id) == ("PostToConnection", "c-nina", "DeleteConnection", "c-nina")
    last = json.loads(body)
    assert (last["type"], last["status"], last["error"]["error"]) == ("ERROR", 401, "token_revoked")
    assert not [c for c in calls if c[0] == "PostToConnection" and b'"exit"' in c[2]]
    assert services.kube.terminals[0].closed.is_set()
    assert services.rate_limiter._store.slot_count("cc#nina#shells") == 0


@pytest.mark.timeout(60)  # a socket nobody closes would wait forever
def test_locally_revoking_a_token_ends_its_running_shell_and_closes_the_socket(services, mint):
    from fastapi.testclient import TestClient
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import realtime
    from kubilitics.local import realtime as local
    from starlette.websockets import WebSocketDisconnect

    local._local_realtime.cache_clear()
    token = mint(sub="olga", scopes="read,exec")
    try:
        client = TestClient(create_app(realtime.router))
        with client, client.websocket_connect(f"/api/v1/shell?token={token}") as ws:
            ws.send_json({"action": "init", "namespace": "default", "pod_name": "web-0"})
            assert ws.receive_json()["type"] == "output"
            revoked_at = time.monotonic()
            revoke(token)
            received: list[dict[str, Any]] = []
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    received.append(ws.receive_json())
            assert time.monotonic() - revoked_at < 30
        assert closed.value.code == 1008
        last = received[-1]
        assert (last["type"], last["status"], last["error"]["error"]) == ("ERROR", 401, "token_revoked")
        assert services.kube.terminals[0].closed.is_set()
    finally:
        local.get_local_realtime().stop()
        local._local_realtime.cache_clear()
