"""The WebSocket API's Lambdas (websocket, watch_relay, shell_session) driven with events/ payloads.

DynamoDB and API Gateway's management API are moto: every post_to_connection is recorded per
connection, which is what these tests read. Kubernetes is the real test cluster. The async invoke of
the session and relay functions is recorded instead of made (moto does not run Lambdas); the tests run
the recorded session payload through the session function's handler themselves.
"""

from __future__ import annotations

import copy
import importlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import pytest
from kubernetes.client import CoreV1Api

from tests.pods_testbed import PODS, create_namespace, delete_namespace, start_pods
from tests.support import EVENTS, LambdaContext, revoke

pytestmark = pytest.mark.cluster

ENDPOINT = "https://w1x2y3z4v5.execute-api.us-east-1.amazonaws.com/v1"
TABLE = "kubilitics-connections"


@dataclass
class Invocations:
    """Stands in for lambda:InvokeFunction (InvocationType=Event)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def invoke_async(self, function: str, payload: dict[str, Any]) -> None:
        self.calls.append((function, payload))

    def of(self, function: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.calls if name == function]


@dataclass
class Context(LambdaContext):
    remaining_seconds: float = 29.0
    started: float = field(default_factory=time.time)

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self.remaining_seconds - (time.time() - self.started)) * 1000)


@pytest.fixture(scope="module")
def ns(k8s_cluster) -> Iterator[str]:
    name = create_namespace(k8s_cluster, "ws-fn")
    start_pods(k8s_cluster, name, PODS, ["solo"])
    yield name
    delete_namespace(k8s_cluster, name)


@pytest.fixture()
def invocations(aws, settings_env, k8s_cluster) -> Invocations:
    from kubilitics import container

    settings_env.setenv("KUBILITICS_KUBECONFIG", k8s_cluster.kubeconfig)
    settings_env.setenv("KUBILITICS_WEBSOCKET_ENDPOINT", ENDPOINT)
    settings_env.setenv("KUBILITICS_SHELL_SESSION_FUNCTION", "shell-session")
    settings_env.setenv("KUBILITICS_WATCH_RELAY_FUNCTION", "watch-relay")
    settings_env.setenv("KUBILITICS_RELAY_HANDOVER_SECONDS", "0")
    settings_env.setenv("KUBILITICS_RELAY_TAKEOVER_WINDOW_SECONDS", "5")
    container.reset()
    recorder = Invocations()
    container.get_container().__dict__["lambda_invoker"] = recorder
    return recorder


@pytest.fixture()
def ws(invocations):
    return importlib.import_module("functions.websocket.app").handler


def event(
    name: str, connection_id: str, body: dict[str, Any] | str | None = None, **fields: Any
) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / "websocket" / name).read_text())
    loaded["requestContext"]["connectionId"] = connection_id
    loaded["requestContext"]["requestId"] = f"req-{connection_id}-{time.time_ns()}"
    if body is not None:
        loaded["body"] = body if isinstance(body, str) else json.dumps(body)
    loaded.update(fields)
    return loaded


def connect(ws, connection_id: str, token: str | None, **headers: str) -> dict[str, Any]:
    connecting = event("connect.json", connection_id)
    connecting["queryStringParameters"] = {"token": token} if token else None
    connecting["multiValueQueryStringParameters"] = {"token": [token]} if token else None
    connecting["headers"].update(headers)
    result: dict[str, Any] = ws(connecting, LambdaContext())
    return result


def posted(connection_id: str) -> list[dict[str, Any]]:
    """Every message post_to_connection delivered to the connection (moto concatenates them)."""
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    backend = apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
    key = next((k for k in (connection_id, quote(connection_id, safe="")) if k in backend.connections), None)
    data = backend.connections[key].data.decode() if key else ""  # moto keys ids as they are in the URL
    decoder, messages, at = json.JSONDecoder(), [], 0
    while at < len(data):
        message, at = decoder.raw_decode(data, at)
        messages.append(message)
    return messages


def items(dynamodb, prefix: str) -> list[dict[str, Any]]:
    found = dynamodb.scan(TableName=TABLE)["Items"]
    return [i for i in found if i["pk"]["S"].startswith(prefix)]


def subscribe(ws, connection_id: str, **fields: Any) -> dict[str, Any]:
    ws(event("subscribe.json", connection_id, {"action": "subscribe", **fields}), LambdaContext())
    ack = posted(connection_id)[-1]
    assert ack["type"] == "SUBSCRIBED", ack
    return ack


# ---- $connect / $disconnect -----------------------------------------------------------------------


def test_connect_stores_the_connection_with_the_token_expiry_as_ttl(ws, aws, mint):
    token = mint(sub="alice", scopes="read,exec")
    assert connect(ws, "c-query", token) == {"statusCode": 200}
    assert connect(ws, "c-header", None, Authorization=f"Bearer {token}") == {"statusCode": 200}
    stored = {i["pk"]["S"]: i for i in items(aws, "conn#")}
    assert set(stored) == {"conn#c-query", "conn#c-header"}
    from kubilitics.container import get_container

    claims = get_container().token_codec.decode(token, now=time.time())
    meta = stored["conn#c-query"]
    assert meta["sub"]["S"] == "alice" and meta["scopes"]["S"] == "exec,read"
    assert meta["context"]["S"] == "kubilitics-testbed" and int(meta["expires_at"]["N"]) == claims.expires_at


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("no token", 401, "unauthorized"),
        ("garbage", 401, "unauthorized"),
        ("expired", 401, "token_expired"),
        ("revoked", 401, "token_revoked"),
        ("other cluster", 403, "forbidden"),
        ("unknown context", 401, "invalid_context"),
    ],
)
def test_refused_connections_get_a_status_and_no_record(ws, aws, mint, case, status, code):
    from kubilitics.container import get_container

    token, headers = mint(sub="bob"), {}
    if case == "no token":
        token = None
    elif case == "garbage":
        token = "abc.def"
    elif case == "expired":
        token = mint(sub="bob", now=time.time() - 7200, ttl_seconds=60)
    elif case == "revoked":
        principal = get_container().token_codec.decode(token, now=time.time())
        get_container().revocations.revoke(principal.jti, principal.expires_at, revoked_by="test")
    elif case == "other cluster":
        token, headers = mint(sub="bob", cluster_id="prod-eu"), {"X-Kubeconfig-Context": "kubilitics-testbed"}
    else:
        headers = {"X-Kubeconfig-Context": "nope"}
    response = connect(ws, "c-refused", token, **headers)
    assert response["statusCode"] == status
    body = json.loads(response["body"])
    assert body["error"] == code and body["trace_id"].startswith("req-c-refused")
    assert items(aws, "conn#") == []


def test_disconnect_removes_the_connection_its_subscriptions_and_pointers(ws, aws, mint, ns):
    connect(ws, "c-bye", mint(sub="carol"))
    subscribe(ws, "c-bye", resource_kind="ConfigMap", namespace=ns, subscription_id="a")
    subscribe(ws, "c-bye", resource_kind="Secret", namespace=ns, subscription_id="b")
    assert len(items(aws, "conn#c-bye")) == 3
    ws(event("disconnect.json", "c-bye"), LambdaContext())
    assert items(aws, "conn#") == []
    assert [i for i in items(aws, "set#") if i["sk"]["S"] != "meta"] == []


# ---- subscribe / unsubscribe / $default ---------------------------------------------------------


def test_subscribe_stores_the_subscription_with_ttl_and_acknowledges(ws, aws, mint, invocations):
    token = mint(sub="dave")
    connect(ws, "L0SM9cOFvHcCIhw=", token)  # the connection of events/websocket/subscribe.json
    ws(json.loads((EVENTS / "websocket" / "subscribe.json").read_text()), LambdaContext())
    ack = posted("L0SM9cOFvHcCIhw=")[-1]
    assert ack["type"] == "SUBSCRIBED" and ack["subscription_id"] == "sub-123" and ack["stream"] == "watch"
    assert (ack["resource_kind"], ack["namespace"], ack["label_selector"]) == ("Pod", "default", "app=web")
    assert int(ack["resource_version"]) > 0

    pointer = next(i for i in items(aws, "conn#L0SM9cOFvHcCIhw=") if i["sk"]["S"] == "sub#sub-123")
    member = next(i for i in items(aws, "set#") if i["sk"]["S"] == "sub#L0SM9cOFvHcCIhw=#sub-123")
    watch_set = next(i for i in items(aws, "set#") if i["sk"]["S"] == "meta")
    connection = next(i for i in items(aws, "conn#") if i["sk"]["S"] == "meta")
    assert member["expires_at"]["N"] == pointer["expires_at"]["N"] == connection["expires_at"]["N"]
    assert member["from_rv"]["S"] == ack["resource_version"] == watch_set["checkpoint_rv"]["S"]
    assert (watch_set["kind"]["S"], watch_set["namespace"]["S"], watch_set["label_selector"]["S"]) == (
        "Pod",
        "default",
        "app=web",
    )
    assert watch_set["gsi1pk"]["S"] == "sets"
    # A new watch set starts the relay at once; a second subscriber of the same set does not.
    assert invocations.of("watch-relay") == [{"source": "kubilitics.subscribe"}]
    connect(ws, "c-second", token)
    subscribe(ws, "c-second", resource_kind="pods", namespace="default", label_selector="app=web")
    assert len(invocations.of("watch-relay")) == 1
    assert len([i for i in items(aws, "set#") if i["sk"]["S"] == "meta"]) == 1

    ws(json.loads((EVENTS / "websocket" / "unsubscribe.json").read_text()), LambdaContext())
    done = posted("L0SM9cOFvHcCIhw=")[-1]
    assert (done["type"], done["subscription_id"]) == ("UNSUBSCRIBED", "sub-123")
    assert not [i for i in items(aws, "conn#L0SM9cOFvHcCIhw=") if i["sk"]["S"].startswith("sub#")]
    assert not [i for i in items(aws, "set#") if i["sk"]["S"] == "sub#L0SM9cOFvHcCIhw=#sub-123"]


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ("default_malformed.json", 400, "validation_failed"),
        ("default_unknown_action.json", 400, "validation_failed"),
        (
            {"action": "subscribe", "resource_kind": "Frobnicator", "subscription_id": "x"},
            400,
            "invalid_resource_kind",
        ),
        (
            {"action": "subscribe", "resource_kind": "Pod", "label_selector": "a==b==c"},
            400,
            "invalid_label_selector",
        ),
        ({"action": "unsubscribe", "subscription_id": "never"}, 404, "not_found"),
        ({"type": "input", "data": "ls\n"}, 404, "not_found"),
        ({"action": "init", "namespace": "default", "pod_name": "ghost"}, 403, "insufficient_scope"),
        ({"action": "subscribe"}, 400, "missing_required_field"),
    ],
)
def test_bad_messages_get_an_error_message_and_the_connection_stays(ws, aws, mint, payload, status, code):
    connect(ws, "c-bad", mint(sub="erin", scopes="read"))
    if isinstance(payload, str):
        bad = json.loads((EVENTS / "websocket" / payload).read_text())
        bad["requestContext"]["connectionId"] = "c-bad"
    else:
        bad = event("default_unknown_action.json", "c-bad", payload)
    assert ws(bad, LambdaContext()) == {"statusCode": 200}
    error = posted("c-bad")[-1]
    assert error["type"] == "ERROR" and error["status"] == status and error["error"]["error"] == code
    assert error["error"]["trace_id"] == bad["requestContext"]["requestId"]
    assert set(error["error"]) >= {"message", "details", "timestamp"}
    assert items(aws, "conn#c-bad")  # still registered
    subscribe(ws, "c-bad", resource_kind="Namespace")


def test_a_message_from_an_unknown_connection_is_refused_and_closed(ws, aws):
    calls = record_management_calls()
    ws(event("subscribe.json", "c-ghost"), LambdaContext())
    (post, data), (delete, _) = calls
    assert (post, delete) == ("PostToConnection", "DeleteConnection")
    assert json.loads(data)["error"]["error"] == "unauthorized"


class CallLog(list):
    def __init__(self) -> None:
        super().__init__()
        self.by: list[tuple[str, str]] = []


def record_management_calls() -> list[tuple[str, bytes]]:
    """(operation, body) of every call to the management API, in order (`.by` has the connections)."""
    from kubilitics.container import get_container

    calls = CallLog()
    management = get_container().connection_notifier._management()

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params.get("body") or b""))
        calls.by.append((model.name, unquote(str(params.get("url_path", "")).rsplit("/", 1)[-1])))

    management.meta.events.register("before-call.apigatewaymanagementapi.*", hook)
    return calls


# ---- the relay ------------------------------------------------------------------------------------


def relay(invocations, seconds: float) -> dict[str, Any]:
    handler = importlib.import_module("functions.watch_relay.app").handler
    return handler(
        json.loads((EVENTS / "watch_relay" / "scheduled.json").read_text()),
        Context(remaining_seconds=seconds),
    )


def updates(connection_id: str, subscription_id: str | None = None) -> list[tuple[str, str]]:
    return [
        (m["type"], m["resource"]["metadata"]["name"])
        for m in posted(connection_id)
        if m["type"] in ("ADDED", "MODIFIED", "DELETED") and subscription_id in (None, m["subscription_id"])
    ]


def test_relay_fans_out_to_every_member_and_removes_gone_connections(
    ws, aws, mint, invocations, k8s_cluster, ns
):
    token = mint(sub="frank")
    selector = f"run=fanout-{time.time_ns()}"
    for connection_id in ("c-1", "c-2", "c-gone"):
        connect(ws, connection_id, token)
        subscribe(
            ws,
            connection_id,
            resource_kind="ConfigMap",
            namespace=ns,
            label_selector=selector,
            subscription_id=f"s-{connection_id}",
        )
    subscribe(
        ws, "c-1", resource_kind="ConfigMap", namespace=ns, label_selector=selector, subscription_id="twice"
    )

    gone_hook = _gone_for("c-gone")
    run = threading.Thread(target=lambda: reports.append(relay(invocations, 6)))
    reports: list[dict[str, Any]] = []
    run.start()
    time.sleep(1.5)
    label = selector.split("=")
    core = CoreV1Api(k8s_cluster.api_client())
    for index in range(3):
        core.create_namespaced_config_map(ns, configmap(f"fan-{index}", selector))
    run.join(timeout=30)
    gone_hook()

    expected = [("ADDED", f"fan-{index}") for index in range(3)]
    assert updates("c-1", "s-c-1") == expected and updates("c-1", "twice") == expected
    assert updates("c-2", "s-c-2") == expected
    assert reports[0]["status"] == "handed_over" and reports[0]["gone_connections"] == 1
    assert items(aws, "conn#c-gone") == []
    assert not [i for i in items(aws, "set#") if "c-gone" in i["sk"]["S"]]
    one = next(m for m in posted("c-1") if m["type"] == "ADDED")
    assert one["resource"]["metadata"]["labels"] == {label[0]: label[1]}
    assert "managedFields" not in one["resource"]["metadata"] and one["timestamp"].endswith("Z")


def configmap(name: str, selector: str) -> dict[str, Any]:
    key, value = selector.split("=")
    return {"metadata": {"name": name, "labels": {key: value}}}


def _gone_for(connection_id: str):
    """Make API Gateway answer 410 GoneException for one connection (moto never does)."""
    from kubilitics.container import get_container

    management = get_container().connection_notifier._management()

    def hook(params: dict[str, Any], **_: Any) -> Any:
        if params.get("url_path", "").endswith(connection_id) or connection_id in str(params.get("url_path")):
            from botocore.awsrequest import AWSResponse

            return AWSResponse("", 410, {}, None), {
                "Error": {"Code": "GoneException", "Message": "gone"},
                "ResponseMetadata": {"HTTPStatusCode": 410},
            }
        return None

    management.meta.events.register("before-call.apigatewaymanagementapi.PostToConnection", hook)
    return lambda: management.meta.events.unregister(
        "before-call.apigatewaymanagementapi.PostToConnection", hook
    )


def test_relay_handover_delivers_changes_made_across_runs_exactly_once(
    ws, aws, mint, invocations, k8s_cluster, ns
):
    token = mint(sub="grace")
    selector = f"run=handover-{time.time_ns()}"
    connect(ws, "c-early", token)
    subscribe(ws, "c-early", resource_kind="ConfigMap", namespace=ns, label_selector=selector)

    reports: list[dict[str, Any]] = []
    first = threading.Thread(target=lambda: reports.append(relay(invocations, 4)))
    second = threading.Thread(target=lambda: reports.append(relay(invocations, 9)))  # waits for the first
    created: list[str] = []
    late: list[str] = []
    core = CoreV1Api(k8s_cluster.api_client())

    def write() -> None:
        # Changes one after another for 7 s: before, during and after the handover at ~4.5 s.
        start = time.monotonic()
        while time.monotonic() - start < 7:
            name = f"h-{len(created):03d}"
            core.create_namespaced_config_map(ns, configmap(name, selector))
            created.append(name)
            if len(created) == 8:  # a subscriber that joins mid-way, on the first run
                connect(ws, "c-late", token)
                late.append(
                    subscribe(ws, "c-late", resource_kind="ConfigMap", namespace=ns, label_selector=selector)[
                        "resource_version"
                    ]
                )
            time.sleep(0.1)

    writer = threading.Thread(target=write)
    first.start()
    time.sleep(0.5)
    writer.start()
    time.sleep(2.0)
    second.start()
    for thread in (writer, first, second):
        thread.join(timeout=60)

    by_status = sorted(r["status"] for r in reports)
    assert by_status == ["handed_over", "handed_over"], reports
    first_run, second_run = sorted(reports, key=lambda r: r["epoch"])
    assert second_run["epoch"] == first_run["epoch"] + 1
    assert first_run["events"] > 0 and second_run["events"] > 0  # the changes really straddle the handover
    assert updates("c-early") == [("ADDED", name) for name in created]  # all of them, once, in order
    late_names = [name for _, name in updates("c-late")]
    # The late subscriber gets everything after the resourceVersion it was acknowledged with.
    assert late_names == created[created.index(late_names[0]) :] and len(late_names) >= len(created) - 9
    versions = [
        int(m["resource"]["metadata"]["resourceVersion"]) for m in posted("c-late") if m["type"] == "ADDED"
    ]
    assert min(versions) > int(late[0])


# ---- shell and live logs through the session function ---------------------------------------------


def run_session(payload: dict[str, Any], seconds: float = 60) -> threading.Thread:
    handler = importlib.import_module("functions.shell_session.app").handler
    thread = threading.Thread(
        target=handler, args=(copy.deepcopy(payload), Context(remaining_seconds=seconds))
    )
    thread.start()
    return thread


def type_in(connection_id: str, *chunks: str) -> None:
    handler = importlib.import_module("functions.websocket.app").handler
    for data in chunks:
        message = {"action": "shell", "type": "input", "data": data}
        handler(event("shell_input.json", connection_id, message), LambdaContext())


def output_lines(connection_id: str) -> list[str]:
    output = "".join(m["data"] for m in posted(connection_id) if m["type"] == "output")
    return [line.strip() for line in output.replace("\r", "").split("\n")]


def wait_for(predicate, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_shell_session_runs_in_the_session_function_with_input_from_the_queue(ws, aws, mint, invocations, ns):
    connect(ws, "c-shell", mint(sub="heidi", scopes="read,exec"))
    # The reference's init message ({"action": "init"}) arrives on $default; it works there too.
    init = json.loads((EVENTS / "websocket" / "default_shell_init.json").read_text())
    init["requestContext"]["connectionId"] = "c-shell"
    init["body"] = json.dumps({**json.loads(init["body"]), "namespace": ns, "pod_name": "solo"})
    ws(init, LambdaContext())
    (payload,) = invocations.of("shell-session")
    assert (payload["kind"], payload["spec"]["container"], payload["spec"]["shell"]) == (
        "shell",
        "app",
        "/bin/sh",
    )
    session = run_session(payload)

    # Input sent before and while the session function runs is read from the queue, in order.
    ws(event("default_shell_resize.json", "c-shell"), LambdaContext())
    type_in("c-shell", "stty si", "ze\n")
    wait_for(lambda: "30 120" in output_lines("c-shell"))  # default_shell_resize.json: 30 rows, 120 columns
    type_in("c-shell", "echo hel", "lo\n")
    wait_for(lambda: "hello" in output_lines("c-shell"))
    ws(event("shell_input.json", "c-shell", {"type": "input", "data": "exit 0\n"}), LambdaContext())
    session.join(timeout=30)
    assert posted("c-shell")[-1] == {"type": "exit", "exit_code": 0}
    # The slot is given back and the session is gone: more input is refused.
    from kubilitics.container import get_container

    assert get_container().rate_limiter._store.slot_count("cc#heidi#shells") == 0
    ws(event("shell_input.json", "c-shell"), LambdaContext())
    assert posted("c-shell")[-1]["error"]["error"] == "not_found"


def test_live_logs_session_streams_until_unsubscribed(ws, aws, mint, invocations, ns):
    connect(ws, "c-logs", mint(sub="ivan"))
    logs = json.loads((EVENTS / "websocket" / "logs.json").read_text())
    logs["requestContext"]["connectionId"] = "c-logs"
    logs["body"] = json.dumps(
        {**json.loads(logs["body"]), "namespace": ns, "pod_name": "solo", "timestamps": False}
    )
    ws(logs, LambdaContext())
    assert posted("c-logs")[-1]["type"] == "SUBSCRIBED"
    (payload,) = invocations.of("shell-session")
    session = run_session(payload)
    wait_for(lambda: sum(m["type"] == "log" for m in posted("c-logs")) >= 3)
    ws(
        event("unsubscribe.json", "c-logs", {"action": "unsubscribe", "subscription_id": "logs-1"}),
        LambdaContext(),
    )
    session.join(timeout=30)
    messages = posted("c-logs")
    assert [m["line"] for m in messages if m["type"] == "log"] == ["alpha", "Bravo ERROR", "charlie"]
    assert [m.get("reason") for m in messages if m["type"] == "log_end"] == ["unsubscribed"]
    from kubilitics.container import get_container

    assert get_container().rate_limiter._store.slot_count("cc#ivan#logs") == 0


def test_relay_ends_listening_connections_whose_token_expired_or_was_revoked(ws, aws, mint, invocations, ns):
    from kubilitics.container import get_container
    from kubilitics.services.watch import RelayOptions

    services = get_container()
    connect(ws, "c-expiring", mint(sub="judy", ttl_seconds=3))
    subscribe(ws, "c-expiring", resource_kind="ConfigMap", namespace=ns)
    revoked = mint(sub="kim")
    connect(ws, "c-revoked", revoked)
    subscribe(ws, "c-revoked", resource_kind="ConfigMap", namespace=ns)
    connect(ws, "c-fine", mint(sub="lee"))
    subscribe(ws, "c-fine", resource_kind="ConfigMap", namespace=ns)
    revoke(revoked)

    calls = record_management_calls()
    relay = services.watch_relay(
        "relay-tokens", services.connection_notifier, RelayOptions(token_check_seconds=0.5)
    )
    relay.run(deadline=time.time() + 5)

    said = {c: json.loads(body)["error"]["error"] for (_, body), (op, c) in zip(calls, calls.by, strict=True)
            if op == "PostToConnection" and b'"ERROR"' in body}  # fmt: skip
    assert said == {"c-expiring": "token_expired", "c-revoked": "token_revoked"}
    # ... then API Gateway closes both sockets
    assert sorted(c for op, c in calls.by if op == "DeleteConnection") == ["c-expiring", "c-revoked"]
    assert items(aws, "conn#c-expiring") == [] and items(aws, "conn#c-revoked") == []
    assert items(aws, "conn#c-fine") and not [m for m in posted("c-fine") if m["type"] == "ERROR"]


# ---- the caller's RBAC, on API Gateway's WebSocket API ---------------------------------------------


def test_each_message_acts_with_the_callers_rbac(ws, aws, mint, ns, k8s_cluster):
    """The groups of the token survive in the connection record: every later message impersonates the
    caller. Bound to `view` in `ns` only, she subscribes there, and nowhere else; no logs elsewhere,
    no shell anywhere (no pods/exec)."""
    import uuid

    viewer = f"viewer-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl(
        "create",
        "rolebinding",
        f"{viewer}-view",
        "-n",
        ns,
        "--clusterrole=view",
        f"--user=kubilitics:{viewer}",
    )
    assert (
        connect(ws, "c-rbac", mint(sub=viewer, scopes="read,exec", groups=("viewers",)))["statusCode"] == 200
    )
    subscribe(ws, "c-rbac", resource_kind="Pod", namespace=ns)
    refused = [
        {"action": "subscribe", "resource_kind": "Pod", "namespace": "default"},
        {"action": "subscribe", "resource_kind": "Secret", "namespace": ns},
        {"action": "logs", "namespace": "default", "pod_name": "anything"},
    ]
    for message in refused:
        ws(event("subscribe.json", "c-rbac", message), LambdaContext())
        reply = posted("c-rbac")[-1]
        assert (reply["type"], reply["status"], reply["error"]["error"]) == ("ERROR", 403, "forbidden"), reply
    assert f"kubilitics:{viewer}" in reply["error"]["message"]
    # The connection record keeps her groups (impersonated as kubilitics:viewers).
    from kubilitics.container import get_container

    stored = get_container().realtime_store.get_connection("c-rbac")
    assert stored.groups == ("viewers",) and stored.principal.groups == ("viewers",)
