"""A request over its rate limit is refused before it reaches Kubernetes (review M3).

The Lambda handlers run in process against moto and the real test cluster; every request to the API
server goes through `KubeRestClient.request`, which these tests count. The clock is fixed inside one
window so that the window cannot end halfway through a test.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import invoke, load_event, with_query

pytestmark = pytest.mark.cluster

LIMITS_TABLE = "kubilitics-rate-limits"


class FixedClock:
    def __init__(self, now: float):
        self.t = now

    def now(self) -> float:
        return self.t


@pytest.fixture()
def clock(aws, on_cluster) -> FixedClock:
    """1 s into the current window, for every service of the container."""
    from kubilitics.container import get_container

    fixed = FixedClock(int(time.time()) // 60 * 60 + 1.0)
    get_container().clock = fixed  # before any service is built: they all take it from here
    return fixed


@pytest.fixture()
def kube_calls(monkeypatch) -> Iterator[list[tuple[float, str]]]:
    """(time, path) of every request made to the API server from now on."""
    from kubilitics.adapters.kube_rest import KubeRestClient

    calls: list[tuple[float, str]] = []
    real = KubeRestClient.request

    def counting(self: Any, method: str, path: str, **kwargs: Any) -> Any:
        calls.append((time.monotonic(), path))
        return real(self, method, path, **kwargs)

    monkeypatch.setattr(KubeRestClient, "request", counting)
    yield calls


def fill_window(dynamodb, clock: FixedClock, sub: str, category: str, count: int) -> str:
    """The user has made `count` requests in the category's current window; returns the counter key."""
    window = int(clock.now()) // 60 * 60
    key = f"rl#{sub}#{category}#{window}"
    dynamodb.put_item(
        TableName=LIMITS_TABLE,
        Item={"pk": {"S": key}, "n": {"N": str(count)}, "expires_at": {"N": str(window + 3600)}},
    )
    return key


def counted(dynamodb, key: str) -> int:
    return int(dynamodb.get_item(TableName=LIMITS_TABLE, Key={"pk": {"S": key}})["Item"]["n"]["N"])


def handler(function: str) -> Any:
    return importlib.import_module(f"functions.{function}.app").handler


def test_refused_topology_requests_make_no_kubernetes_call(aws, clock, kube_calls, mint):
    """Five refused `topology?depth=5` made 63 Kubernetes calls; now none: topology fans out, so it
    waits for the verdict, and the refusal is remembered for the rest of the window."""
    key = fill_window(aws, clock, "greedy", "topology", 50 + 20)  # limit and burst used up
    token = mint(sub="greedy")
    topology = handler("observability")
    for _ in range(5):
        event = with_query(load_event("observability/get_topology.json", token=token), depth=5)
        status, headers, body = invoke(topology, event)
        assert (status, body["error"]) == (429, "rate_limit_exceeded")
        assert headers["retry-after"] == "59" and headers["x-ratelimit-remaining"] == "0"
    assert kube_calls == []
    assert counted(aws, key) == 71  # the first refusal was counted; the next four never left the instance


def test_a_refused_window_is_remembered_by_the_resources_list(aws, clock, kube_calls, mint, k8s_namespace):
    """The plain list keeps overlapping the counter update with its read: the first refused request
    of a window still reads (its verdict comes later), every later one is refused before it starts."""
    key = fill_window(aws, clock, "lister", "read", 200 + 20)
    token = mint(sub="lister")
    resources = handler("resources")
    statuses, calls = [], []
    for _ in range(5):
        event = with_query(load_event("resources/list_resources.json", token=token), namespace=k8s_namespace)
        before = len(kube_calls)
        statuses.append(invoke(resources, event)[0])
        calls.append(len(kube_calls) - before)
    assert statuses == [429] * 5
    assert calls[0] >= 1 and calls[1:] == [0, 0, 0, 0]
    assert counted(aws, key) == 221
    # The next window is a fresh start.
    clock.t += 60
    assert invoke(resources, event)[0] == 200


@pytest.mark.parametrize(
    ("function", "event_file", "category", "limit"),
    [
        ("cluster", "cluster/list_namespaces.json", "read", 200),
        ("observability", "observability/list_events.json", "read", 200),
        ("observability", "observability/get_node_metrics.json", "standard", 100),
        ("cluster", "cluster/list_contexts.json", "standard", 100),
    ],
)
def test_routes_that_fan_out_wait_for_the_verdict(
    aws, clock, kube_calls, mint, function, event_file, category, limit
):
    fill_window(aws, clock, "fan", category, limit + 20)
    status, _, body = invoke(handler(function), load_event(event_file, token=mint(sub="fan")))
    assert (status, body["error"]) == (429, "rate_limit_exceeded")
    assert kube_calls == []


def test_allowed_requests_keep_the_overlap_and_fan_outs_start_after_the_verdict(
    aws, clock, kube_calls, mint, monkeypatch, k8s_namespace
):
    """With a slow counter store (0.3 s), the list reads Kubernetes before the verdict is in; the
    topology's first call comes after it."""
    from kubilitics.adapters.dynamodb import DynamoRateLimitStore

    counted_at: list[float] = []
    real = DynamoRateLimitStore.increment_window

    def slow(self: Any, *args: Any, **kwargs: Any) -> int:
        time.sleep(0.3)
        result = real(self, *args, **kwargs)
        counted_at.append(time.monotonic())
        return result

    monkeypatch.setattr(DynamoRateLimitStore, "increment_window", slow)
    token = mint(sub="patient")

    event = with_query(load_event("resources/list_resources.json", token=token), namespace=k8s_namespace)
    assert invoke(handler("resources"), event)[0] == 200
    assert kube_calls and kube_calls[0][0] < counted_at[-1]  # read while the counter was written

    kube_calls.clear()
    event = with_query(load_event("observability/get_topology.json", token=token), depth=2)
    assert invoke(handler("observability"), event)[0] == 200
    assert kube_calls and kube_calls[0][0] > counted_at[-1]
