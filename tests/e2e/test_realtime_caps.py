"""Watch subscription caps on the local server (review M4), at their defaults: 50 per connection,
200 per user across connections; a refusal is an ERROR with status 429 and the standard body."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from tests.e2e.test_realtime import receive, send, socket
from tests.support import dev_token

pytestmark = pytest.mark.cluster


def subscribe(ws, subscription_id: str, namespace: str) -> dict:
    send(
        ws,
        {
            "action": "subscribe",
            "resource_kind": "Pod",
            "namespace": namespace,
            "subscription_id": subscription_id,
        },
    )
    return receive(ws)


def test_fifty_per_connection_and_two_hundred_per_user(local_server, k8s_namespace):
    token = dev_token(f"watcher-{time.time_ns()}", "read")
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket(local_server, token)) for _ in range(5)]
        answers = [subscribe(sockets[0], f"a{i}", k8s_namespace) for i in range(51)]
        assert [a["type"] for a in answers] == ["SUBSCRIBED"] * 50 + ["ERROR"]
        assert answers[-1]["status"] == 429 and answers[-1]["subscription_id"] == "a50"
        assert answers[-1]["error"]["error"] == "rate_limit_exceeded"
        assert answers[-1]["error"]["details"] == {
            "category": "watch_subscriptions",
            "concurrent_limit": 50,
            "scope": "connection",
        }
        for n, ws in enumerate(sockets[1:4], start=1):
            assert all(subscribe(ws, f"s{n}-{i}", k8s_namespace)["type"] == "SUBSCRIBED" for i in range(50))
        refused = subscribe(sockets[4], "over", k8s_namespace)
        assert refused["status"] == 429
        assert refused["error"]["details"] == {
            "category": "watch_subscriptions",
            "concurrent_limit": 200,
            "scope": "user",
        }

        # An unsubscribe gives one back at once; a closed connection gives back all of its own.
        send(sockets[1], {"action": "unsubscribe", "subscription_id": "s1-0"})
        assert receive(sockets[1])["type"] == "UNSUBSCRIBED"
        assert subscribe(sockets[4], "over", k8s_namespace)["type"] == "SUBSCRIBED"
        sockets[0].close()
        deadline = time.monotonic() + 10
        while (answer := subscribe(sockets[4], f"late-{time.time_ns()}", k8s_namespace))[
            "type"
        ] != "SUBSCRIBED":
            assert answer["error"]["details"]["scope"] == "user" and time.monotonic() < deadline, answer
            time.sleep(0.1)
