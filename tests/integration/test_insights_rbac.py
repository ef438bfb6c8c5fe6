"""Insights are found once, as the service; each caller sees (and may dismiss) only those whose
resources their own RBAC lets them read. The access reviews are the test cluster's own answers."""

from __future__ import annotations

import importlib
import time
import uuid

import pytest

from tests.integration.test_ai_insights_function import LIST, dismiss_event, seed
from tests.pods_testbed import create_namespace, delete_namespace
from tests.support import expect_error, invoke, load_event, with_query

pytestmark = pytest.mark.cluster


@pytest.fixture()
def handler(aws, on_cluster):
    return importlib.import_module("functions.ai_insights.app").handler


@pytest.fixture(scope="module")
def namespaces(k8s_cluster):
    a, b = create_namespace(k8s_cluster, "insights-a"), create_namespace(k8s_cluster, "insights-b")
    viewer = f"viewer-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl(
        "create", "rolebinding", "viewer", "-n", a, "--clusterrole=view", f"--user=kubilitics:{viewer}"
    )
    yield a, b, viewer
    delete_namespace(k8s_cluster, a)
    delete_namespace(k8s_cluster, b)


def listed(handler, token: str) -> set[str]:
    status, _, body = invoke(handler, with_query(load_event(LIST, token=token), limit=1000))
    assert status == 200, body
    return {i["insight_id"] for i in body["insights"]}


def test_a_caller_sees_the_insights_of_what_they_may_read(handler, mint, namespaces, k8s_cluster):
    a, b, viewer = namespaces
    now = time.time()
    in_a = seed(k8s_cluster.context, "security", "privileged_container", "critical", a, now)
    in_b = seed(k8s_cluster.context, "security", "privileged_container", "critical", b, now)

    assert {in_a, in_b} <= listed(handler, mint(sub="admin", scopes="read"))
    assert listed(handler, mint(sub=viewer, scopes="read", groups=())) & {in_a, in_b} == {in_a}
    # Someone bound nowhere sees neither, whatever their scopes.
    assert listed(handler, mint(sub="nobody", scopes="admin", groups=())) & {in_a, in_b} == set()


def test_an_insight_the_caller_may_not_read_cannot_be_dismissed(handler, mint, namespaces, k8s_cluster):
    a, b, viewer = namespaces
    now = time.time()
    in_a = seed(k8s_cluster.context, "cost_optimization", "idle_workload", "info", a, now)
    in_b = seed(k8s_cluster.context, "cost_optimization", "idle_workload", "info", b, now)
    token = mint(sub=viewer, scopes="read,write", groups=())
    body = {"reason": "known"}

    hidden = expect_error(handler, dismiss_event(token, in_b, body), 404, "not_found")
    unknown = expect_error(handler, dismiss_event(token, "ins-does-not-exist", body), 404, "not_found")
    assert hidden["message"] == unknown["message"].replace("ins-does-not-exist", in_b)
    assert in_b in listed(handler, mint(sub="admin", scopes="read"))  # not dismissed

    status, _, dismissed = invoke(handler, dismiss_event(token, in_a, body))
    assert status == 200 and dismissed["dismissed_by"] == viewer, dismissed
    assert in_a not in listed(handler, token)
