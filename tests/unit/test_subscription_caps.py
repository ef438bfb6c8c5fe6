"""Caps on watch subscriptions per connection and per user (review M4: one `read` connection opened
220 watch sets in a minute). The WebSocket service and the connections store run on moto, as both
transports (API Gateway's Lambda and the local server) run them; Kubernetes is a fake that knows Pods.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.auth.tokens import Principal
from kubilitics.errors import KubiliticsError
from kubilitics.services.realtime_model import Connection

TABLE = "kubilitics-connections"
SERVICE_MODE = ContextConfig("ctx", "ctx", "https://127.0.0.1:6443")  # no impersonation: no review


@dataclass(frozen=True)
class PodType:
    kind: str = "Pod"
    plural: str = "pods"
    group: str = ""
    version: str = "v1"
    namespaced: bool = True
    verbs: tuple[str, ...] = ("list", "watch")


class FakeKube:
    def __init__(self) -> None:
        self.lists: list[str | None] = []  # the namespace of every list (a new watch set's start)

    def resource_type(self, context: Any, kind: str) -> PodType:
        return PodType()

    def list_objects(self, context: Any, rtype: Any, **params: Any) -> dict[str, Any]:
        self.lists.append(params.get("namespace"))
        return {"metadata": {"resourceVersion": "100"}, "items": []}


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def post(self, connection_id: str, message: str) -> bool:
        self.sent.append((connection_id, json.loads(message)))
        return True

    def close(self, connection_id: str) -> None:
        pass


@pytest.fixture()
def realtime(aws, atomic_moto, settings_env):
    """The WebSocket service as the container builds it, caps 3 per connection and 5 per user."""
    from kubilitics import container

    settings_env.setenv("KUBILITICS_WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", "3")
    settings_env.setenv("KUBILITICS_WS_MAX_SUBSCRIPTIONS_PER_USER", "5")
    container.reset()
    services = container.get_container()
    services.__dict__["kube"] = FakeKube()
    services.caller_context = lambda principal, name: SERVICE_MODE  # type: ignore[method-assign]
    notifier = Recorder()
    sessions = SimpleNamespace(close_all=lambda pointers: None)  # no shells or live logs here
    return services.realtime_service(notifier, sessions), notifier  # type: ignore[arg-type]


def connect(realtime, connection_id: str, sub: str = "alice", token_type: str = "user") -> Connection:
    service, _ = realtime
    principal = Principal(sub, frozenset({"read"}), token_type, f"jti-{sub}", int(time.time()) + 3600)
    connection = Connection.of(connection_id, principal, "ctx", time.time())
    service._store.put_connection(connection)
    return connection


def send(realtime, connection: Connection, **message: Any) -> dict[str, Any]:
    service, notifier = realtime
    service.handle(connection.connection_id, connection, json.dumps(message), "trace-1")
    return notifier.sent[-1][1]


def subscribe(
    realtime, connection: Connection, subscription_id: str, namespace: str = "default"
) -> dict[str, Any]:
    return send(
        realtime,
        connection,
        action="subscribe",
        resource_kind="Pod",
        namespace=namespace,
        subscription_id=subscription_id,
    )


def refused(answer: dict[str, Any], scope: str, limit: int) -> bool:
    assert answer["type"] == "ERROR" and answer["status"] == 429, answer
    error = answer["error"]
    assert error["error"] == "rate_limit_exceeded"
    assert error["details"] == {"category": "watch_subscriptions", "concurrent_limit": limit, "scope": scope}
    assert set(error) >= {"error", "message", "details", "timestamp", "trace_id"}
    return True


def test_a_connection_holds_at_most_its_cap_until_it_unsubscribes(realtime):
    c1 = connect(realtime, "c1")
    assert [subscribe(realtime, c1, f"s{i}")["type"] for i in range(3)] == ["SUBSCRIBED"] * 3
    answer = subscribe(realtime, c1, "s3")
    assert refused(answer, "connection", 3) and answer["subscription_id"] == "s3"
    assert send(realtime, c1, action="unsubscribe", subscription_id="s0")["type"] == "UNSUBSCRIBED"
    assert subscribe(realtime, c1, "s3")["type"] == "SUBSCRIBED"
    assert refused(subscribe(realtime, c1, "s4"), "connection", 3)
    # A new watch set would start with a Kubernetes list: refused before it.
    service, _ = realtime
    assert refused(subscribe(realtime, c1, "s5", namespace="elsewhere"), "connection", 3)
    assert service._subscriptions._kube.lists == ["default"]


def test_a_user_holds_at_most_their_cap_across_connections_until_one_closes(realtime, aws):
    service, _ = realtime
    c1, c2, c3 = connect(realtime, "c1"), connect(realtime, "c2"), connect(realtime, "c3")
    for i in range(3):
        assert subscribe(realtime, c1, f"a{i}")["type"] == "SUBSCRIBED"
    for i in range(2):
        assert subscribe(realtime, c2, f"b{i}")["type"] == "SUBSCRIBED"
    assert refused(subscribe(realtime, c3, "c0"), "user", 5)
    assert subscribe(realtime, connect(realtime, "bob-1", sub="bob"), "x")["type"] == "SUBSCRIBED"  # per user
    service.disconnect("c1")  # its three subscriptions are given back
    for i in range(3):
        assert subscribe(realtime, c3, f"c{i}")["type"] == "SUBSCRIBED"
    assert refused(subscribe(realtime, c3, "c3"), "connection", 3)
    assert refused(subscribe(realtime, c2, "b2"), "user", 5)
    owner = aws.get_item(TableName=TABLE, Key={"pk": {"S": "user#alice"}, "sk": {"S": "watch"}})["Item"]
    assert owner["n"]["N"] == "5"


def test_service_tokens_get_five_times_the_user_cap(realtime):
    connections = [connect(realtime, f"ci-{i}", sub="ci", token_type="service") for i in range(9)]
    answers = [subscribe(realtime, c, f"s{i}")["type"] for c in connections for i in range(3)]
    assert answers == ["SUBSCRIBED"] * 25 + ["ERROR"] * 2


def test_a_burst_of_subscriptions_cannot_overshoot(realtime):
    """Both caps are conditions of the subscription's own write: 40 at once, exactly the cap admitted."""
    service, _ = realtime
    one = connect(realtime, "burst")

    def attempt(i: int) -> bool:
        try:
            service._subscriptions.subscribe(one, _message(f"s{i}"))
        except KubiliticsError as exc:
            assert exc.code == "rate_limit_exceeded"
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(attempt, range(40))) == 3
    many = [connect(realtime, f"m{i}", sub="erin") for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        admitted = list(pool.map(lambda c: _subscribes(service, c), many * 2))
    assert sum(admitted) == 5


def test_a_count_left_high_by_a_crash_is_corrected_when_it_would_refuse(realtime, aws, caplog):
    c1 = connect(realtime, "c1")
    assert subscribe(realtime, c1, "s0")["type"] == "SUBSCRIBED"
    # An instance died between deleting subscriptions and counting them down.
    aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "user#alice"}, "sk": {"S": "watch"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "5"}},
    )
    aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "conn#c1"}, "sk": {"S": "meta"}},
        UpdateExpression="SET watch_count = :n",
        ExpressionAttributeValues={":n": {"N": "3"}},
    )
    with caplog.at_level(logging.WARNING):
        assert subscribe(realtime, c1, "s1")["type"] == "SUBSCRIBED"
    assert "was 3, counted 1" in caplog.text and "was 5, counted 1" in caplog.text
    owner = aws.get_item(TableName=TABLE, Key={"pk": {"S": "user#alice"}, "sk": {"S": "watch"}})["Item"]
    assert owner["n"]["N"] == "2"


def _message(subscription_id: str) -> Any:
    from kubilitics.services.realtime_messages import Subscribe

    return Subscribe(
        action="subscribe", resource_kind="Pod", namespace="default", subscription_id=subscription_id
    )


def _subscribes(service: Any, connection: Connection) -> bool:
    try:
        service._subscriptions.subscribe(connection, _message(f"s-{time.time_ns()}"))
    except KubiliticsError as exc:
        assert exc.code == "rate_limit_exceeded"
        return False
    return True
