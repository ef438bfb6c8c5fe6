"""Pod logs and exec over real HTTP on the local server, including Server-Sent Events follows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import httpx
import pytest

from tests.pods_testbed import PODS, append_log, create_namespace, delete_namespace, start_pods
from tests.support import dev_token

RATE_LIMIT_TABLE = "kubilitics-rate-limits"  # the local server's default table name


@pytest.fixture(scope="module")
def ns(k8s_cluster) -> Iterator[str]:
    name = create_namespace(k8s_cluster, "pods-http")
    start_pods(k8s_cluster, name, PODS, ["solo", "quiet"])
    yield name
    delete_namespace(k8s_cluster, name)


@pytest.fixture()
def follower() -> tuple[str, str]:
    """A user of its own (sub, token): its concurrency counter starts at zero."""
    sub = f"follower-{uuid.uuid4().hex[:8]}"
    return sub, dev_token(sub, "read")


def slots_in_use(server, sub: str) -> int:
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=server.moto_url, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    item = dynamodb.get_item(
        TableName=RATE_LIMIT_TABLE, Key={"pk": {"S": f"cc#{sub}#logs"}}, ConsistentRead=True
    )
    return int(item.get("Item", {}).get("n", {}).get("N", "0"))


def wait_for(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def logs_url(server, namespace: str, pod: str) -> str:
    return f"{server.url}/api/v1/pods/{namespace}/{pod}/logs"


def sse_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}


def read_events(lines: Iterator[str], until, timeout: float = 20) -> list[tuple[str, str]]:
    """(event type, data) pairs from SSE lines until `until(events)` holds or the stream ends."""
    events: list[tuple[str, str]] = []
    kind, deadline = "message", time.monotonic() + timeout
    for line in lines:
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((kind, line[len("data: ") :]))
            kind = "message"
            if until(events):
                break
        assert time.monotonic() < deadline, f"stream too slow; got {events}"
    return events


def test_logs_over_http(local_server, ns):
    response = httpx.get(
        logs_url(local_server, ns, "solo"),
        params={"timestamps": "false", "search": "ERROR"},
        headers={"Authorization": f"Bearer {local_server.admin_token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "Bravo ERROR\n"


def test_follow_streams_lines_written_after_the_request(local_server, ns, k8s_cluster, follower):
    _, token = follower
    append_log(k8s_cluster, ns, "quiet", "app", [(datetime.now(UTC), "wanted zero")])
    params = {"follow": "true", "tail_lines": "1", "timestamps": "false", "search": "wanted"}
    url = logs_url(local_server, ns, "quiet")
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", url, params=params, headers=sse_headers(token)) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        lines = response.iter_lines()
        # the line already there arrives first: the follow is open from here on
        assert read_events(lines, until=lambda got: len(got) >= 1) == [("message", "wanted zero")]
        now = datetime.now(UTC)
        append_log(
            k8s_cluster, ns, "quiet", "app", [(now, "noise"), (now, "wanted one"), (now, "Wanted two")]
        )
        events = read_events(lines, until=lambda got: len(got) >= 2)
    assert events == [("message", "wanted one"), ("message", "Wanted two")]


def test_disconnecting_frees_the_follow_slot(local_server, ns, follower):
    sub, token = follower
    params = {"follow": "true", "tail_lines": "0"}
    url = logs_url(local_server, ns, "solo")
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", url, params=params, headers=sse_headers(token)) as response,
    ):
        assert response.status_code == 200
        assert slots_in_use(local_server, sub) == 1
    # the client went away without the log ending: the server notices and gives the slot back
    assert wait_for(lambda: slots_in_use(local_server, sub) == 0), slots_in_use(local_server, sub)


def test_follow_ends_at_until_time(local_server, ns, follower):
    sub, token = follower
    until = datetime.fromtimestamp(time.time() + 2, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    params = {"follow": "true", "timestamps": "false", "until_time": until}
    started = time.monotonic()
    with httpx.stream(
        "GET", logs_url(local_server, ns, "solo"), params=params, headers=sse_headers(token), timeout=30
    ) as response:
        assert response.status_code == 200
        events = read_events(response.iter_lines(), until=lambda got: got[-1][0] == "end")
    assert events == [("message", "alpha"), ("message", "Bravo ERROR"), ("message", "charlie"),
                      ("end", "until_time reached")]  # fmt: skip
    assert 1 < time.monotonic() - started < 10
    assert wait_for(lambda: slots_in_use(local_server, sub) == 0)


def test_follow_of_a_missing_pod_is_a_404_and_keeps_no_slot(local_server, ns, follower):
    sub, token = follower
    response = httpx.get(
        logs_url(local_server, ns, "ghost"), params={"follow": "true"}, headers=sse_headers(token), timeout=30
    )
    assert response.status_code == 404
    assert response.json()["details"] == {"namespace": ns, "pod_name": "ghost"}
    assert slots_in_use(local_server, sub) == 0


def test_follows_are_limited_by_concurrency_not_per_minute(local_server, ns, follower):
    sub, token = follower
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=local_server.moto_url, region_name="us-east-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    # 100 follows already open for this user (the limit for a user token)
    dynamodb.put_item(
        TableName=RATE_LIMIT_TABLE,
        Item={
            "pk": {"S": f"cc#{sub}#logs"},
            "n": {"N": "100"},
            "lease_until": {"N": str(int(time.time()) + 600)},
        },
    )
    response = httpx.get(
        logs_url(local_server, ns, "solo"), params={"follow": "true"}, headers=sse_headers(token), timeout=30
    )
    assert response.status_code == 429 and response.json()["error"] == "rate_limit_exceeded"
    assert response.json()["details"]["concurrent_limit"] == 100
    # a plain read is counted per minute instead, and still goes through
    plain = httpx.get(
        logs_url(local_server, ns, "solo"), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert plain.status_code == 200 and plain.headers["x-ratelimit-limit"] == "100"


def test_follow_without_event_stream_returns_what_is_there(local_server, ns, follower):
    _, token = follower
    started = time.monotonic()
    response = httpx.get(
        logs_url(local_server, ns, "solo"),
        params={"follow": "true", "timestamps": "false"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert (response.status_code, response.text) == (200, "alpha\nBravo ERROR\ncharlie\n")
    assert time.monotonic() - started < 10  # not waiting for more lines


def test_exec_over_http(local_server, ns):
    headers = {"Authorization": f"Bearer {local_server.admin_token}"}
    url = f"{local_server.url}/api/v1/pods/{ns}/solo/exec"
    response = httpx.post(url, json={"command": ["echo", "hello"]}, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == "hello\n" and response.json()["exit_code"] == 0
    failed = httpx.post(url, json={"command": ["sh", "-c", "exit 4"]}, headers=headers, timeout=30)
    assert failed.status_code == 500
    assert failed.json()["error"] == "exec_failed" and failed.json()["exit_code"] == 4
    no_scope = httpx.post(
        url, json={"command": ["true"]}, headers={"Authorization": f"Bearer {dev_token('reader', 'read')}"}
    )
    assert no_scope.status_code == 403 and no_scope.json()["error"] == "insufficient_scope"
