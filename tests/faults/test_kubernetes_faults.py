"""The API server stopped, slow and resetting connections (a proxy of the harness in front of the
test cluster's): every request ends within its configured timeout in the reference's error, 502
`kubernetes_api_error` (spec-decisions 2: timeouts and 5xx) with `Retry-After` and the reason, and the
next request after the fault is answered again (no broken pooled connection is reused).
"""

from __future__ import annotations

import importlib
import time

import pytest

from tests.support import invoke, load_event, with_query

pytestmark = pytest.mark.cluster

NAMESPACES = "cluster/list_namespaces.json"
PODS = "resources/list_resources.json"


@pytest.fixture()
def cluster_handler(through_proxy):
    return importlib.import_module("functions.cluster.app").handler


@pytest.fixture()
def resources_handler(through_proxy):
    return importlib.import_module("functions.resources.app").handler


def pods_event(token: str) -> dict:
    return with_query(load_event(PODS, token=token), namespace="default", limit=5)


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def fails_with(handler, event, reason: str, within: float) -> dict:
    (status, headers, body), took = timed(lambda: invoke(handler, event))
    assert (status, body["error"]) == (502, "kubernetes_api_error"), body
    assert body["details"]["reason"] == reason, body
    assert headers["retry-after"] == "5"
    assert took < within, f"answered after {took:.1f} s"
    return body


def test_a_stopped_api_server_is_a_quick_502_with_retry_after(cluster_handler, through_proxy, mint):
    token = mint()
    status, _, _ = invoke(cluster_handler, load_event(NAMESPACES, token=token))
    assert status == 200  # through the proxy
    through_proxy.set("stopped")
    fails_with(cluster_handler, load_event(NAMESPACES, token=token), "connection_refused", within=2)
    through_proxy.set("pass")
    status, _, body = invoke(cluster_handler, load_event(NAMESPACES, token=token))
    assert status == 200 and any(n["name"] == "default" for n in body["items"]), body


def test_a_server_that_resets_connections_is_a_502_not_a_hang(resources_handler, through_proxy, mint):
    token = mint()
    assert invoke(resources_handler, pods_event(token))[0] == 200
    through_proxy.set("reset")
    through_proxy.drop_open()  # the pooled keep-alive connection goes too
    (status, headers, body), took = timed(lambda: invoke(resources_handler, pods_event(token)))
    assert (status, body["error"]) == (502, "kubernetes_api_error"), body
    assert body["details"]["reason"] in ("connection_error", "connection_refused"), body
    assert headers["retry-after"] == "5" and took < 5
    through_proxy.set("pass")
    assert invoke(resources_handler, pods_event(token))[0] == 200


def test_a_slow_api_server_times_out_at_the_configured_timeout(resources_handler, through_proxy, mint):
    token = mint()
    assert invoke(resources_handler, pods_event(token))[0] == 200
    through_proxy.set("slow", delay=3.0)  # 3 s per response against a 2 s timeout
    body = fails_with(resources_handler, pods_event(token), "connection_timeout", within=2 * 2 + 1.5)
    assert "unreachable" in body["message"].lower()
    through_proxy.set("slow", delay=0.5)  # slow, but within the timeout: answered, correctly
    status, _, listed = invoke(resources_handler, pods_event(token))
    assert status == 200 and "items" in listed


def test_a_server_that_goes_away_mid_response_is_a_502(cluster_handler, through_proxy, mint):
    import threading

    token = mint()
    through_proxy.set("slow", delay=1.0)
    threading.Timer(0.3, through_proxy.drop_open).start()  # the connection dies while held
    (status, _, body), took = timed(lambda: invoke(cluster_handler, load_event(NAMESPACES, token=token)))
    assert (status, body["error"]) == (502, "kubernetes_api_error"), body
    assert took < 5
