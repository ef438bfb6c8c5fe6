"""The local server's WebSockets (/api/v1/ws, /api/v1/shell) with a real client, on the test cluster.

Watch events are checked against the API server's own record: a watch from the resourceVersion the
subscription was acknowledged with, read after the fact.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.pods_testbed import PODS, append_log, start_pods
from tests.support import dev_token

pytestmark = pytest.mark.cluster


@contextmanager
def socket(server, token: str | None, path: str = "/api/v1/ws", **headers: str) -> Iterator[ClientConnection]:
    url = server.url.replace("http://", "ws://") + path + (f"?token={token}" if token else "")
    with connect(url, additional_headers=headers or None, open_timeout=10) as ws:
        yield ws


def send(ws: ClientConnection, message: dict[str, Any] | str) -> None:
    ws.send(message if isinstance(message, str) else json.dumps(message))


def receive(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return message


def collect(
    ws: ClientConnection, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 90
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(messages):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; received so far: {[summary(m) for m in messages]}"
        try:
            messages.append(receive(ws, timeout=left))
        except TimeoutError:
            continue
    return messages


def nothing_arrives(ws: ClientConnection, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        ws.recv(timeout=seconds)


def summary(message: dict[str, Any]) -> tuple[str, str, str]:
    metadata = (message.get("resource") or {}).get("metadata") or {}
    return message.get("type", ""), metadata.get("name", ""), metadata.get("resourceVersion", "")


def subscribe(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    send(ws, {"action": "subscribe", **fields})
    ack = receive(ws)
    assert ack["type"] == "SUBSCRIBED", ack
    return ack


class RecordedWatch:
    """The API server's own account: a watch of Pods in `namespace` after `since_rv`, read as it goes."""

    def __init__(self, cluster, namespace: str, since_rv: str):
        from pathlib import Path

        from kubilitics.adapters.kube_rest import KubeRestClients
        from kubilitics.adapters.kubeconfig import KubeconfigSource
        from kubilitics.adapters.kubernetes import KubernetesGateway

        context = KubeconfigSource(path=Path(cluster.kubeconfig)).get().resolve(cluster.context)
        gateway = KubernetesGateway(KubeRestClients(), 30)
        self._stream = gateway.watch_objects(
            context,
            gateway.resource_type(context, "Pod"),
            namespace=namespace,
            label_selector=None,
            resource_version=since_rv,
            timeout_seconds=600,
        )
        self._stream.open()
        self.events: list[tuple[str, str, str]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            event = json.loads(line)
            if event["type"] != "BOOKMARK":
                metadata = event["object"].get("metadata") or {}
                self.events.append(
                    (event["type"], metadata.get("name", ""), metadata.get("resourceVersion", ""))
                )

    def stop(self) -> list[tuple[str, str, str]]:
        self._stream.close()
        self._thread.join(timeout=10)
        return self.events


def deployment(namespace: str, replicas: int) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: app, image: "nginx:1.27"}}]
"""


def pod(namespace: str, name: str, image: str = "nginx:1.27", labels: str = "{app: shell}") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{{name: app, image: "{image}"}}]
"""


# ---- watch subscriptions --------------------------------------------------------------------------


def test_deployment_lifecycle_reaches_the_subscriber_exactly_once_in_order(
    local_server, k8s_cluster, k8s_namespace
):
    with socket(local_server, local_server.admin_token) as ws:
        ack = subscribe(ws, resource_kind="Pod", namespace=k8s_namespace, subscription_id="pods-1")
        assert (
            ack["resource_kind"] == "Pod" and ack["api_version"] == "v1" and ack["namespace"] == k8s_namespace
        )
        truth = RecordedWatch(k8s_cluster, k8s_namespace, ack["resource_version"])

        k8s_cluster.kubectl("apply", "-f", "-", input=deployment(k8s_namespace, 2))
        events = collect(ws, lambda ms: running_pods(ms) >= 2)
        k8s_cluster.kubectl("scale", "deployment/web", "-n", k8s_namespace, "--replicas=3")
        events += collect(ws, lambda ms: running_pods(events + ms) >= 3)
        k8s_cluster.kubectl("delete", "deployment/web", "-n", k8s_namespace)
        events += collect(ws, lambda ms: sum(m["type"] == "DELETED" for m in ms) >= 3)
        nothing_arrives(ws, 1.0)  # and nothing after the last pod is gone
    recorded = truth.stop()

    assert all(m["subscription_id"] == "pods-1" for m in events)
    assert all(m["resource"]["kind"] == "Pod" and m["timestamp"].endswith("Z") for m in events)
    received = [summary(m) for m in events]
    # Exactly what the API server recorded after the acknowledged resourceVersion, in the same order.
    assert received == recorded
    names = {name for _, name, _ in received}
    assert len(names) == 3
    for name in names:
        own = [kind for kind, n, _ in received if n == name]
        assert own[0] == "ADDED" and own[-1] == "DELETED" and own.count("ADDED") == own.count("DELETED") == 1
    added = [name for kind, name, _ in received if kind == "ADDED"]
    scaled = received.index(
        ("ADDED", added[2], next(rv for k, n, rv in received if n == added[2] and k == "ADDED"))
    )
    assert all(kind != "DELETED" for kind, _, _ in received[:scaled])  # the third pod came with the scale-up
    versions = [int(rv) for _, _, rv in received]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def running_pods(messages: list[dict[str, Any]]) -> int:
    phases: dict[str, str] = {}
    for m in messages:
        if m.get("type") in ("ADDED", "MODIFIED"):
            phases[m["resource"]["metadata"]["name"]] = (m["resource"].get("status") or {}).get("phase", "")
    return sum(phase == "Running" for phase in phases.values())


def test_unsubscribe_stops_the_events_of_that_subscription_only(local_server, k8s_cluster, k8s_namespace):
    with (
        socket(local_server, local_server.admin_token) as first,
        socket(local_server, local_server.admin_token) as other,
    ):
        subscribe(first, resource_kind="configmaps", namespace=k8s_namespace, subscription_id="mine")
        subscribe(other, resource_kind="cm", namespace=k8s_namespace, subscription_id="theirs")

        k8s_cluster.kubectl("create", "configmap", "before", "-n", k8s_namespace)
        assert summary(receive(first))[:2] == ("ADDED", "before")
        assert summary(receive(other))[:2] == ("ADDED", "before")

        send(first, {"action": "unsubscribe", "subscription_id": "mine"})
        done = receive(first)
        assert (done["type"], done["subscription_id"]) == ("UNSUBSCRIBED", "mine")
        k8s_cluster.kubectl("create", "configmap", "after", "-n", k8s_namespace)
        # The same watch still serves the other connection: the event was relayed, just not to `first`.
        assert summary(receive(other))[:2] == ("ADDED", "after")
        nothing_arrives(first, 1.0)

        send(first, {"action": "unsubscribe", "subscription_id": "mine"})
        error = receive(first)
        assert error["type"] == "ERROR" and error["error"]["error"] == "not_found" and error["status"] == 404


def test_label_selector_filters_on_the_api_server(local_server, k8s_cluster, k8s_namespace):
    with socket(local_server, local_server.admin_token) as ws:
        subscribe(
            ws, resource_kind="ConfigMap", namespace=k8s_namespace, label_selector="tier in (web),!legacy"
        )
        for name, labels in (
            ("plain", ""),
            ("web", "tier=web"),
            ("old", "tier=web,legacy=yes"),
            ("db", "tier=db"),
        ):
            k8s_cluster.kubectl("create", "configmap", name, "-n", k8s_namespace)
            if labels:
                k8s_cluster.kubectl("label", "configmap", name, "-n", k8s_namespace, *labels.split(","))
        received = collect(ws, lambda ms: len(ms) >= 1)
        nothing_arrives(ws, 1.0)
    # Only "web" ever matched; a labelled object enters the selection as ADDED.
    assert [summary(m)[:2] for m in received] == [("ADDED", "web")]


# ---- shells ---------------------------------------------------------------------------------------


def start_box(cluster, namespace: str) -> None:
    """The shells' pod, Running: as on a node, exec into a container that has not started fails."""
    cluster.kubectl("apply", "-f", "-", input=pod(namespace, "box"))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/box", "--timeout=60s", timeout=90)


def run_shell(
    ws: ClientConnection, namespace: str, pod_name: str, word: str, **init: Any
) -> tuple[str, dict]:
    """Type `echo <word>`, wait for it to be printed, then `exit`: (everything printed, the last message)."""
    send(
        ws, {"action": "init", "namespace": namespace, "pod_name": pod_name, "rows": 30, "cols": 100, **init}
    )
    # Typed once the prompt is there, as a person would: a shell setting up its terminal may discard
    # what was typed before (the test cluster's shells do, now and then).
    messages = collect(ws, lambda ms: bool(ms), timeout=60)
    if messages[-1]["type"] in ("ERROR", "exit"):
        return "", messages[-1]
    send(ws, {"type": "input", "data": f"echo {word}\n"})
    # One line at a time: the test cluster's exec drops what a process prints right before it exits,
    # so `exit` goes only once the word is back.
    messages += collect(
        ws, lambda ms: bool(ms) and (ms[-1]["type"] == "ERROR" or word in lines(ms)), timeout=60
    )
    if messages[-1]["type"] != "ERROR":
        send(ws, {"type": "input", "data": "exit\n"})
        messages += collect(ws, lambda ms: bool(ms) and ms[-1]["type"] in ("exit", "ERROR"), timeout=60)
    return "".join(m["data"] for m in messages if m["type"] == "output"), messages[-1]


def lines(messages: list[dict[str, Any]]) -> list[str]:
    output = "".join(m["data"] for m in messages if m["type"] == "output")
    return [line.strip() for line in output.replace("\r", "").split("\n")]


def test_shell_runs_echo_hello_and_exits_0(local_server, k8s_cluster, k8s_namespace):
    start_box(k8s_cluster, k8s_namespace)
    with socket(local_server, local_server.admin_token, "/api/v1/shell") as ws:
        output, last = run_shell(ws, k8s_namespace, "box", "hello")
    assert last == {"type": "exit", "exit_code": 0}
    assert "hello" in [line.strip() for line in output.replace("\r", "").split("\n")]


def test_shell_exit_code_resize_and_a_second_session_on_the_same_socket(
    local_server, k8s_cluster, k8s_namespace
):
    start_box(k8s_cluster, k8s_namespace)
    with socket(local_server, local_server.admin_token, "/api/v1/shell") as ws:
        send(ws, {"action": "init", "namespace": k8s_namespace, "pod_name": "box", "container": "app"})
        collect(ws, lambda ms: bool(ms) and ms[-1]["type"] == "output", timeout=60)  # the prompt
        send(ws, {"type": "resize", "rows": 42, "cols": 132})
        send(ws, {"type": "input", "data": "stty size\n"})
        collect(ws, lambda ms: "42 132" in lines(ms), timeout=60)
        send(ws, {"type": "input", "data": "exit 3\n"})
        messages = collect(ws, lambda ms: bool(ms) and ms[-1]["type"] == "exit", timeout=60)
        assert messages[-1] == {"type": "exit", "exit_code": 3}
        output, last = run_shell(ws, k8s_namespace, "box", "again")
        assert last["exit_code"] == 0 and "again" in output


def test_ten_shells_per_user_then_429_until_one_ends(local_server, k8s_cluster, k8s_namespace):
    start_box(k8s_cluster, k8s_namespace)
    token = dev_token(f"shell-user-{time.time_ns()}", "read,exec")
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket(local_server, token, "/api/v1/shell")) for _ in range(11)]
        for ws in sockets[:10]:
            send(ws, {"action": "init", "namespace": k8s_namespace, "pod_name": "box"})
            # Each simulated shell is a process of its own: ten starting on a loaded machine take time.
            first = receive(ws, timeout=30)
            assert first["type"] == "output", first  # the shell's first words: it runs
        send(sockets[10], {"action": "init", "namespace": k8s_namespace, "pod_name": "box"})
        refused = receive(sockets[10])
        assert refused["type"] == "ERROR" and refused["status"] == 429
        assert refused["error"]["error"] == "rate_limit_exceeded"
        assert refused["error"]["details"]["concurrent_limit"] == 10

        send(sockets[0], {"type": "exit"})
        assert collect(sockets[0], lambda ms: bool(ms) and ms[-1]["type"] == "exit")[-1] == {
            "type": "exit",
            "exit_code": None,
            "reason": "exit_requested",
        }
        output, last = run_shell(sockets[10], k8s_namespace, "box", "eleventh")
        assert last.get("exit_code") == 0 and "eleventh" in output, last


# ---- live logs ------------------------------------------------------------------------------------


def test_live_logs_follow_one_container_with_the_rest_filters(local_server, k8s_cluster, k8s_namespace):
    start_pods(k8s_cluster, k8s_namespace, PODS, ["solo"])
    with socket(local_server, local_server.admin_token) as ws:
        request = {
            "action": "logs",
            "namespace": k8s_namespace,
            "pod_name": "solo",
            "subscription_id": "solo-logs",
        }
        send(ws, {**request, "search": "error", "timestamps": False})
        ack = receive(ws)
        assert (
            ack["type"] == "SUBSCRIBED" and ack["stream"] == "logs" and ack["subscription_id"] == "solo-logs"
        )
        first = receive(ws)
        # The REST endpoint's search: case-insensitive, on the message; timestamps: false drops them.
        assert (first["type"], first["line"]) == ("log", "Bravo ERROR")

        now = datetime.now(UTC)
        append_log(
            k8s_cluster, k8s_namespace, "solo", "app", [(now, "served 1"), (now, "late Error"), (now, "ok")]
        )
        later = receive(ws)
        assert (later["type"], later["subscription_id"], later["line"]) == ("log", "solo-logs", "late Error")
        nothing_arrives(ws, 0.5)  # the other new lines do not match

        send(ws, {"action": "unsubscribe", "subscription_id": "solo-logs"})
        ends = collect(ws, lambda ms: {m["type"] for m in ms} >= {"UNSUBSCRIBED", "log_end"})
        assert {m["type"]: m.get("reason") for m in ends}["log_end"] == "unsubscribed"


# ---- bad input ------------------------------------------------------------------------------------


def error_of(ws: ClientConnection, message: dict[str, Any] | str) -> dict[str, Any]:
    send(ws, message)
    reply = receive(ws)
    while reply["type"] in ("ADDED", "MODIFIED", "DELETED"):  # updates of a subscription made earlier
        reply = receive(ws)
    assert reply["type"] == "ERROR", reply
    body = reply["error"]
    assert set(body) >= {"error", "message", "details", "timestamp", "trace_id"}
    assert body["trace_id"].startswith("req-")
    return reply


def test_bad_messages_get_an_error_and_the_connection_stays_usable(local_server, k8s_cluster, k8s_namespace):
    k8s_cluster.kubectl("apply", "-f", "-", input=pod(k8s_namespace, "box"))
    ns = k8s_namespace
    with socket(local_server, local_server.admin_token) as ws:
        assert error_of(ws, '{"action": "subscribe", ')["error"]["error"] == "validation_failed"
        unknown = error_of(ws, {"action": "teleport"})
        assert unknown["status"] == 400 and unknown["error"]["error"] == "validation_failed"
        assert unknown["error"]["details"]["field"] == "action"
        kind = error_of(ws, {"action": "subscribe", "resource_kind": "Frobnicator", "subscription_id": "f"})
        assert kind["subscription_id"] == "f" and kind["status"] == 400
        assert (
            kind["error"]["error"] == "invalid_resource_kind"
            and "Pod" in kind["error"]["details"]["valid_kinds"]
        )
        missing = error_of(ws, {"action": "subscribe", "namespace": ns})
        assert missing["error"]["error"] == "missing_required_field"
        assert missing["error"]["details"]["field"] == "resource_kind"
        selector = error_of(
            ws, {"action": "subscribe", "resource_kind": "Pod", "label_selector": "app in (web"}
        )
        assert selector["error"]["error"] == "invalid_label_selector"
        no_pod = error_of(ws, {"action": "init", "namespace": ns, "pod_name": "ghost"})
        assert no_pod["status"] == 404 and no_pod["error"]["error"] == "not_found"
        assert no_pod["error"]["details"] == {"namespace": ns, "pod_name": "ghost"}
        no_container = error_of(
            ws, {"action": "init", "namespace": ns, "pod_name": "box", "container": "ghost"}
        )
        assert no_container["status"] == 400 and no_container["error"]["error"] == "invalid_parameter"
        assert no_container["error"]["details"]["containers"] == ["app"]
        no_shell = error_of(ws, {"type": "input", "data": "ls\n"})
        assert no_shell["error"]["error"] == "not_found"
        no_logs = error_of(ws, {"action": "logs", "namespace": ns, "pod_name": "ghost"})
        assert no_logs["error"]["error"] == "not_found"
        subscribe(ws, resource_kind="Pod", namespace=ns, subscription_id="still-works")
        duplicate = error_of(
            ws, {"action": "subscribe", "resource_kind": "Pod", "subscription_id": "still-works"}
        )
        assert duplicate["status"] == 409 and duplicate["error"]["error"] == "already_exists"

    with socket(local_server, dev_token("reader", "read"), "/api/v1/shell") as ws:
        scope = error_of(ws, {"action": "init", "namespace": ns, "pod_name": "box"})
        assert scope["status"] == 403 and scope["error"]["error"] == "insufficient_scope"
        assert scope["error"]["details"]["required_scope"] == "exec"
        subscribe(ws, resource_kind="Pod", namespace=ns)  # and the connection still works


def refusal(server, token: str | None, **headers: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as refused, socket(server, token, **headers):
        pass
    response = refused.value.response
    return response.status_code, json.loads(response.body)


def test_connections_without_a_valid_token_are_refused_before_the_upgrade(local_server, k8s_cluster):
    assert refusal(local_server, None)[0] == 401
    status, body = refusal(local_server, "not-a-jwt")
    assert (status, body["error"]) == (401, "unauthorized")
    expired = dev_token("late", "read", exp=int(time.time()) - 10)
    assert refusal(local_server, expired)[1]["error"] == "token_expired"
    bound = dev_token("ci", "read", cluster_id="some-other-cluster")
    status, body = refusal(local_server, bound, **{"X-Kubeconfig-Context": k8s_cluster.context})
    assert (status, body["error"]) == (403, "forbidden")
    assert refusal(local_server, local_server.admin_token, **{"X-Kubeconfig-Context": "nope"})[1][
        "error"
    ] == ("invalid_context")

    revoked = local_server.cli(
        "token", "create", "--sub", "dora", "--scope", "read", "--group", "cluster-admins"
    ).stdout.strip()
    with socket(local_server, None, Authorization=f"Bearer {revoked}") as ws:  # the header works too
        subscribe(ws, resource_kind="ConfigMap", namespace="quiet-nobody-uses-this")
        assert local_server.cli("token", "revoke", "--token", revoked).returncode == 0
        # Instances see a revocation within 30 s; then the connection's next message ends it.
        deadline = time.monotonic() + 30
        while True:
            reply = error_of(ws, {"action": "unsubscribe", "subscription_id": "none"})
            if reply["error"]["error"] != "not_found" or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert reply["status"] == 401 and reply["error"]["error"] == "token_revoked"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert refusal(local_server, revoked)[1]["error"] == "token_revoked"


# ---- keep-alive -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_ping_server(k8s_cluster, tmp_path_factory) -> Iterator[str]:
    """A second local server whose keep-alive ping comes every second instead of every 30 s."""
    import os
    import subprocess
    import sys

    from tests.e2e.conftest import REPO, _wait_for_http, _wait_for_token, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBILITICS_", "AWS_"))}
    env.update(PYTHONPATH=str(REPO / "shared"), KUBILITICS_WS_PING_INTERVAL_SECONDS="1")
    log_path = tmp_path_factory.mktemp("fast-ping") / "server.log"
    with log_path.open("w") as log:
        ports = ["--port", str(port), "--ai-port", str(free_port()), "--moto-port", str(free_port())]
        process = subprocess.Popen(
            [sys.executable, "-m", "kubilitics.cli", "serve", *ports, "--kubeconfig", k8s_cluster.kubeconfig,
             "--no-testbed"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO,
        )  # fmt: skip
        try:
            token = _wait_for_token(log_path, process)
            _wait_for_http(f"http://127.0.0.1:{port}/openapi.json", process, log_path)
            yield f"127.0.0.1:{port}?token={token}"
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_server_pings_and_drops_a_client_that_does_not_answer(fast_ping_server):
    import base64
    import os
    import socket as sockets

    address, query = fast_ping_server.split("?")
    host, port = address.split(":")
    # A client that completes the handshake and then never reads, so it never answers a ping.
    silent = sockets.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    silent.sendall(
        f"GET /api/v1/ws?{query} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    handshake = b""
    while b"\r\n\r\n" not in handshake:
        handshake += silent.recv(1024)
    assert handshake.startswith(b"HTTP/1.1 101")
    with connect(f"ws://{fast_ping_server.replace('?', '/api/v1/ws?')}") as answering:  # answers pings
        started = time.monotonic()
        frames = handshake.split(b"\r\n\r\n", 1)[1]
        while True:
            chunk = silent.recv(1024)
            if not chunk:
                break  # the server closed the connection
            frames += chunk
        dropped_after = time.monotonic() - started
        assert frames[0] == 0x89  # the first frame was a ping (FIN + opcode 9)
        assert 1.0 <= dropped_after <= 6.0  # no pong within the interval: dropped
        send(answering, {"action": "subscribe", "resource_kind": "Namespace"})
        assert receive(answering)["type"] == "SUBSCRIBED"  # the client that answers is still connected
    silent.close()
