"""The pods function's Lambda handler (logs and exec), driven with events/pods payloads through Mangum.

DynamoDB is moto (tables from template.yaml); Kubernetes is the real test cluster, whose simulated
containers print known lines and whose exec runs commands in the simulated container (never on
this machine: scripts/testbed/simexec.py).
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.pods_testbed import (
    PODS,
    SOLO_LINES,
    append_log,
    create_namespace,
    delete_namespace,
    start_pods,
    start_restarter,
)
from tests.support import LambdaContext, expect_error, load_event, revoke

STAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (.*)$")


@pytest.fixture(scope="module")
def ns(k8s_cluster):
    name = create_namespace(k8s_cluster, "pods-fn")
    start_pods(k8s_cluster, name, PODS, ["solo", "duo", "quiet"])
    yield name
    delete_namespace(k8s_cluster, name)


@pytest.fixture()
def handler(aws, on_cluster):
    return importlib.import_module("functions.pods.app").handler


@pytest.fixture()
def token(mint):
    return mint(sub="pat", scopes="read,exec")


def logs_event(token: str | None, namespace: str, pod: str, headers: dict | None = None, **query: Any):
    path = f"/api/v1/pods/{namespace}/{pod}/logs"
    return _event("pods/get_logs.json", token, path, query, headers=headers)


def exec_event(token: str | None, namespace: str, pod: str, body: Any, **query: Any):
    path = f"/api/v1/pods/{namespace}/{pod}/exec"
    raw = body if isinstance(body, str) else json.dumps(body)
    return _event("pods/exec.json", token, path, query, body=raw)


def _event(sample: str, token, path, query, body: str | None = None, headers: dict | None = None):
    event = load_event(sample, token=token, headers=headers or {})
    query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = urlencode(query)
    event["queryStringParameters"] = query or None
    namespace, pod = path.split("/")[4:6]
    event["pathParameters"] = {"namespace": namespace, "name": pod}
    if body is not None:
        event["body"] = body
        event["headers"]["content-length"] = str(len(body.encode()))
    return event


def invoke(handler, event, context: Any = None):
    response = handler(event, context or LambdaContext())
    headers = {k.lower(): v for k, v in response["headers"].items()}
    return response["statusCode"], headers, response["body"]


def invoke_json(handler, event, context: Any = None):
    status, headers, body = invoke(handler, event, context)
    return status, headers, json.loads(body)


def messages(text: str) -> list[str]:
    """The lines of a timestamped log, without their timestamps (each line must carry one)."""
    out = []
    for line in text.splitlines():
        match = STAMPED.match(line)
        assert match, f"line without an RFC 3339 timestamp: {line!r}"
        out.append(match.group(2))
    return out


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- logs


def test_logs_default_is_the_last_lines_with_timestamps(handler, token, ns):
    status, headers, body = invoke(handler, logs_event(token, ns, "solo"))
    assert status == 200, body
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert messages(body) == SOLO_LINES
    assert headers["x-ratelimit-limit"] == "100" and headers["x-ratelimit-remaining"] == "99"


def test_logs_without_timestamps(handler, token, ns):
    status, _, body = invoke(handler, logs_event(token, ns, "solo", timestamps=False))
    assert status == 200
    assert body == "alpha\nBravo ERROR\ncharlie\n"


def test_logs_tail_lines(handler, token, ns):
    _, _, body = invoke(handler, logs_event(token, ns, "solo", tail_lines=2, timestamps=False))
    assert body == "Bravo ERROR\ncharlie\n"
    status, _, body = invoke(handler, logs_event(token, ns, "solo", tail_lines=0))
    assert (status, body) == (200, "")


def test_logs_search_is_a_case_insensitive_substring(handler, token, ns):
    _, _, body = invoke(handler, logs_event(token, ns, "solo", search="bravo error"))
    assert messages(body) == ["Bravo ERROR"]
    _, _, body = invoke(handler, logs_event(token, ns, "solo", search="A", timestamps=False))
    assert body == "alpha\nBravo ERROR\ncharlie\n"
    _, _, body = invoke(handler, logs_event(token, ns, "solo", search="no such text"))
    assert body == ""


def test_logs_since_and_until_cut_on_each_lines_timestamp(handler, token, ns, k8s_cluster):
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    at = {
        word: base + timedelta(seconds=10 * i)
        for i, word in enumerate(["first", "second", "third", "fourth"])
    }
    append_log(k8s_cluster, ns, "quiet", "app", [(moment, word) for word, moment in at.items()])

    def window(**query):
        status, _, body = invoke(handler, logs_event(token, ns, "quiet", timestamps=False, **query))
        assert status == 200, body
        return body.splitlines()

    assert window(since_time=iso(at["second"]), until_time=iso(at["third"])) == ["second", "third"]
    # a fraction of a second after "second": the cut is exact, not at whole seconds
    assert window(since_time=iso(at["second"] + timedelta(milliseconds=500))) == ["third", "fourth"]
    assert window(until_time=iso(at["first"])) == ["first"]
    assert window(until_time=iso(at["third"]), tail_lines=1) == ["third"]
    # the same instant written with an offset
    plus_two = at["fourth"].astimezone(timezone(timedelta(hours=2))).isoformat()
    assert window(since_time=plus_two) == ["fourth"]
    assert window(until_time=iso(base - timedelta(seconds=1))) == []
    # timestamps=true keeps the API server's own timestamp on each line
    _, _, body = invoke(handler, logs_event(token, ns, "quiet", since_time=iso(at["fourth"])))
    assert body == f"{at['fourth'].strftime('%Y-%m-%dT%H:%M:%S')}.000000000Z fourth\n"


def test_logs_of_one_container_of_a_multi_container_pod(handler, token, ns):
    _, _, body = invoke(handler, logs_event(token, ns, "duo", container="sidecar", timestamps=False))
    assert body == "side one\n"
    _, _, body = invoke(handler, logs_event(token, ns, "duo", container="app", timestamps=False))
    assert body == "app one\napp two\n"


def test_logs_of_a_multi_container_pod_need_the_container(handler, token, ns):
    body = expect_error(handler, logs_event(token, ns, "duo"), 400, "invalid_parameter")
    assert body["details"]["containers"] == ["app", "sidecar"]
    assert body["details"]["parameter"] == "container"
    assert "app, sidecar" in body["message"]


def test_logs_of_an_unknown_container(handler, token, ns):
    body = expect_error(handler, logs_event(token, ns, "duo", container="db"), 400, "invalid_parameter")
    assert body["details"]["containers"] == ["app", "sidecar"]


def test_logs_of_the_previous_container(handler, token, ns, k8s_cluster):
    start_restarter(k8s_cluster, ns)
    _, _, previous = invoke(handler, logs_event(token, ns, "restarter", container="main", previous=True))
    _, _, current = invoke(handler, logs_event(token, ns, "restarter", container="main"))
    assert messages(previous) == ["run started", "about to fail"]
    assert messages(current) == ["run started", "about to fail"]
    # the previous run's lines were written before the current run's
    assert STAMPED.match(previous.splitlines()[-1]).group(1) < STAMPED.match(current.splitlines()[0]).group(1)


def test_logs_of_a_missing_pod(handler, token, ns):
    body = expect_error(handler, logs_event(token, ns, "ghost"), 404, "not_found")
    assert body["details"] == {"namespace": ns, "pod_name": "ghost"}
    assert body["message"] == f"Pod {ns}/ghost not found"
    body = expect_error(handler, logs_event(token, "no-such-ns", "solo"), 404, "not_found")
    assert body["details"] == {"namespace": "no-such-ns", "pod_name": "solo"}


def test_follow_in_lambda_returns_what_is_there(handler, token, ns):
    # Mangum buffers the response, so even an SSE request gets the plain log (spec-decisions 9)
    for accept in ("text/plain", "text/event-stream"):
        started = time.monotonic()
        event = logs_event(token, ns, "solo", headers={"accept": accept}, follow=True, timestamps=False)
        status, headers, body = invoke(handler, event)
        assert (status, body) == (200, "alpha\nBravo ERROR\ncharlie\n")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert time.monotonic() - started < 10  # not waiting for more lines


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"tail_lines": 10001}, "tail_lines"),
        ({"tail_lines": -1}, "tail_lines"),
        ({"tail_lines": "ten"}, "tail_lines"),
        ({"timestamps": "maybe"}, "timestamps"),
        ({"since_time": "yesterday"}, "since_time"),
        ({"until_time": "2026-02-10 14:23:45"}, "until_time"),
        ({"since_time": "2026-02-10T14:23:45Z", "until_time": "2026-02-10T14:00:00Z"}, "since_time"),
    ],
    ids=["tail-too-big", "tail-negative", "tail-not-int", "timestamps-not-bool", "since-not-time",
         "until-no-zone", "since-after-until"],
)  # fmt: skip
def test_logs_bad_parameters(handler, token, ns, query, parameter):
    body = expect_error(handler, logs_event(token, ns, "solo", **query), 400, "invalid_parameter")
    assert body["details"]["parameter"] == parameter


def test_logs_bad_pod_name(handler, token, ns):
    expect_error(handler, logs_event(token, ns, "Not_A_Pod"), 400, "invalid_parameter")


# ---------------------------------------------------------------- exec


def test_exec_echo(handler, token, ns):
    status, headers, body = invoke_json(
        handler, exec_event(token, ns, "solo", {"command": ["echo", "hello"]})
    )
    assert status == 200, body
    assert body["exit_code"] == 0 and body["stdout"] == "hello\n" and body["stderr"] == ""
    assert body["pod"] == "solo" and body["container"] == "app"
    assert isinstance(body["execution_time_ms"], int) and 0 <= body["execution_time_ms"] < 5000
    assert headers["x-ratelimit-limit"] == "50"


def test_exec_stdout_and_stderr_are_separate(handler, token, ns):
    event = exec_event(token, ns, "solo", {"command": ["sh", "-c", "echo out; echo oops >&2"]})
    status, _, body = invoke_json(handler, event)
    assert (status, body["stdout"], body["stderr"], body["exit_code"]) == (200, "out\n", "oops\n", 0)


def test_exec_non_zero_exit_is_exec_failed_with_the_exit_code(handler, token, ns):
    event = exec_event(token, ns, "solo", {"command": ["sh", "-c", "echo partial; echo broken >&2; exit 3"]})
    body = expect_error(handler, event, 500, "exec_failed")
    assert body["exit_code"] == 3 and body["details"]["exit_code"] == 3
    assert body["stdout"] == "partial\n" and body["stderr"] == "broken\n"
    assert body["pod"] == "solo" and body["container"] == "app"


def test_exec_timeout(handler, token, ns):
    started = time.monotonic()
    event = exec_event(token, ns, "solo", {"command": ["sleep", "20"]}, timeout_seconds=1)
    body = expect_error(handler, event, 500, "exec_failed")
    assert body["details"]["reason"] == "timeout" and body["exit_code"] is None
    assert time.monotonic() - started < 10  # ended at the timeout, not with the command
    # the pod is free again at once
    status, _, body = invoke_json(handler, exec_event(token, ns, "solo", {"command": ["echo", "next"]}))
    assert (status, body["stdout"]) == (200, "next\n")


def test_exec_stops_before_the_lambda_runs_out_of_time(handler, token, ns):
    class ShortLambda(LambdaContext):
        def get_remaining_time_in_millis(self) -> int:
            return 3500

    started = time.monotonic()
    event = exec_event(token, ns, "solo", {"command": ["sleep", "20"]}, timeout_seconds=60)
    status, _, body = invoke_json(handler, event, ShortLambda())
    assert (status, body["error"], body["details"]["reason"]) == (500, "exec_failed", "timeout")
    assert body["details"]["timeout_seconds"] == 2.0
    assert time.monotonic() - started < 10


def test_exec_working_dir_and_environment(handler, token, ns):
    request = {
        "command": ["sh", "-c", 'pwd; echo "$GREETING, $WHO"'],
        "working_dir": "/tmp",
        "environment": {"GREETING": "hello", "WHO": "it's me; $(rm -rf /)"},
    }
    status, _, body = invoke_json(handler, exec_event(token, ns, "solo", request))
    assert status == 200, body
    assert body["stdout"] == "/tmp\nhello, it's me; $(rm -rf /)\n"


def test_exec_in_a_missing_working_dir_fails_with_the_shells_message(handler, token, ns):
    request = {"command": ["true"], "working_dir": "/no/such/dir"}
    body = expect_error(handler, exec_event(token, ns, "solo", request), 500, "exec_failed")
    assert body["exit_code"] != 0 and "/no/such/dir" in body["stderr"]


def test_exec_in_a_multi_container_pod(handler, token, ns):
    body = expect_error(
        handler, exec_event(token, ns, "duo", {"command": ["true"]}), 400, "invalid_parameter"
    )
    assert body["details"]["containers"] == ["app", "sidecar"]
    event = exec_event(token, ns, "duo", {"command": ["echo", "x"]}, container="sidecar")
    status, _, body = invoke_json(handler, event)
    assert (status, body["container"]) == (200, "sidecar")
    expect_error(
        handler, exec_event(token, ns, "duo", {"command": ["true"]}, container="db"), 400, "invalid_parameter"
    )


def test_exec_in_a_missing_pod(handler, token, ns):
    body = expect_error(handler, exec_event(token, ns, "ghost", {"command": ["true"]}), 404, "not_found")
    assert body["details"] == {"namespace": ns, "pod_name": "ghost"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "missing_required_field"),
        ({"command": []}, "validation_failed"),
        ({"command": "echo hello"}, "validation_failed"),
        ({"command": ["echo", 1]}, "validation_failed"),
        ({"command": [""]}, "validation_failed"),
        ({"command": ["true"], "working_dir": "relative/dir"}, "validation_failed"),
        ({"command": ["true"], "environment": {"NOT-A-NAME": "x"}}, "validation_failed"),
        ({"command": ["true"], "environment": {"N": 1}}, "validation_failed"),
        ({"command": ["true"], "workdir": "/tmp"}, "validation_failed"),
        ('{"command": ["true"', "validation_failed"),
    ],
    ids=["no-command", "empty", "string", "non-string-arg", "empty-program", "relative-dir", "env-name",
         "env-value", "unknown-field", "bad-json"],
)  # fmt: skip
def test_exec_bad_bodies(handler, token, ns, body, code):
    expect_error(handler, exec_event(token, ns, "solo", body), 400, code)


@pytest.mark.parametrize("timeout", [0, 301, "soon"])
def test_exec_bad_timeout(handler, token, ns, timeout):
    event = exec_event(token, ns, "solo", {"command": ["true"]}, timeout_seconds=timeout)
    body = expect_error(handler, event, 400, "invalid_parameter")
    assert body["details"]["parameter"] == "timeout_seconds"


def wait_for(predicate, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _concurrently(handler, events: list[dict]) -> list[tuple[int, dict]]:
    """Invoke the handler once per event at the same time, as separate Lambda instances would."""
    results: list[Any] = [None] * len(events)

    def run(i: int) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())  # Mangum runs on the thread's loop
        status, _, body = invoke_json(handler, events[i])
        results[i] = (status, body)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


TIMED = ["sh", "-c", "date +%s.%N; sleep 2; date +%s.%N"]


def _interval(body: dict) -> tuple[float, float]:
    start, end = (float(x) for x in body["stdout"].split())
    return start, end


def test_exec_commands_in_one_pod_never_overlap(handler, token, ns):
    results = _concurrently(handler, [exec_event(token, ns, "solo", {"command": TIMED}) for _ in range(3)])
    assert [status for status, _ in results] == [200, 200, 200], results
    intervals = sorted(_interval(body) for _, body in results)
    for (_, earlier_end), (later_start, _) in itertools.pairwise(intervals):
        assert earlier_end <= later_start, intervals


def test_exec_commands_in_different_pods_run_side_by_side(handler, token, ns):
    events = [exec_event(token, ns, pod, {"command": TIMED}) for pod in ("solo", "quiet")]
    results = _concurrently(handler, events)
    (a_start, a_end), (b_start, b_end) = (_interval(body) for _, body in results)
    assert a_start < b_end and b_start < a_end  # they overlapped: the lock is per pod


def test_exec_waits_at_most_its_timeout_for_the_pod(handler, token, ns, on_cluster, aws):
    from kubilitics.container import get_container
    from kubilitics.services.pods import exec_lease_name

    slow = exec_event(token, ns, "solo", {"command": ["sleep", "8"]})
    holder = threading.Thread(target=_concurrently, args=(handler, [slow]))
    holder.start()
    lease = {"pk": {"S": f"lease#{exec_lease_name(on_cluster.context, ns, 'solo')}"}}
    table = get_container().settings.rate_limit_table
    assert wait_for(lambda: "Item" in aws.get_item(TableName=table, Key=lease, ConsistentRead=True))
    started = time.monotonic()
    event = exec_event(token, ns, "solo", {"command": ["echo", "late"]}, timeout_seconds=1)
    body = expect_error(handler, event, 409, "resource_conflict")
    assert body["details"]["reason"] == "exec_in_progress"
    assert 0.9 < time.monotonic() - started < 6  # it waited its timeout, not for the 8 s command
    holder.join(20)


def test_exec_takes_over_the_lease_of_a_crashed_instance(handler, token, ns, on_cluster):
    from kubilitics.adapters.dynamodb import DynamoLeaseStore
    from kubilitics.container import get_container
    from kubilitics.services.pods import exec_lease_name

    leases = DynamoLeaseStore(get_container().settings.rate_limit_table)
    name = exec_lease_name(on_cluster.context, ns, "solo")
    now = time.time()
    assert leases.acquire(name, "live-instance", lease_until=now + 60, now=now)
    event = exec_event(token, ns, "solo", {"command": ["true"]}, timeout_seconds=1)
    expect_error(handler, event, 409, "resource_conflict")  # held, and the lease has not run out
    leases.release(name, "live-instance")
    assert leases.acquire(name, "crashed-instance", lease_until=now - 1, now=now)  # never released
    status, _, body = invoke_json(handler, exec_event(token, ns, "solo", {"command": ["echo", "mine"]}))
    assert (status, body["stdout"]) == (200, "mine\n")


# ---------------------------------------------------------------- auth


def _both(token, ns):
    return [logs_event(token, ns, "solo"), exec_event(token, ns, "solo", {"command": ["true"]})]


def test_no_token(handler, ns):
    for event in _both(None, ns):
        expect_error(handler, event, 401, "unauthorized")


def test_expired_token(handler, mint, ns):
    expired = mint(scopes="read,exec", now=time.time() - 7200, ttl_seconds=3600)
    for event in _both(expired, ns):
        expect_error(handler, event, 401, "token_expired")


def test_revoked_token(handler, token, ns):

    revoke(token)
    for event in _both(token, ns):
        expect_error(handler, event, 401, "token_revoked")


def test_exec_needs_the_exec_scope(handler, mint, ns):
    event = exec_event(mint(scopes="read,write"), ns, "solo", {"command": ["true"]})
    body = expect_error(handler, event, 403, "insufficient_scope")
    assert body["details"] == {"required_scope": "exec", "granted_scopes": ["read", "write"]}


def test_logs_need_the_read_scope(handler, mint, ns):
    body = expect_error(handler, logs_event(mint(scopes="exec"), ns, "solo"), 403, "insufficient_scope")
    assert body["details"]["required_scope"] == "read"
    status, _, _ = invoke(handler, logs_event(mint(scopes="admin"), ns, "solo"))
    assert status == 200
