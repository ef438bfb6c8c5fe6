"""Cluster investigations ("what is broken in my cluster?") on the test cluster, end to end through
the investigations Lambda handler and the state machine (ai/cluster_triage.py).

Other tests run on the same cluster at the same time: the assertions are about this test's own
namespaces (two broken, one healthy), never about the cluster being otherwise healthy.

- `resource_kind: Cluster`, and a body with no resource at all, both investigate the cluster: the two
  broken namespaces appear in the ranked roll-up (the crash-looping one with its Deployment named),
  the healthy one does not; the API server's readiness checks and the nodes are reported;
- a caller who may not list nodes gets the API server's 403; a kind without a name is still refused
  as the reference refuses a missing field.
"""

from __future__ import annotations

import importlib
import uuid

import pytest

from tests.integration.test_namespace_investigations import BROKEN, HEALTHY_WEB, _jsonpath
from tests.investigations_testbed import CRASHING_POD, invoke, list_event, start_event, wait_for
from tests.support import expect_error

pytestmark = pytest.mark.cluster


@pytest.fixture()
def handler(on_cluster, investigation_machine):
    return importlib.import_module("functions.ai_investigations.app").handler


@pytest.fixture(scope="module")
def namespaces(k8s_cluster):
    """Two broken namespaces (a crash-looping Deployment with a failed Job; a crash-looping bare pod)
    and a healthy one."""
    from tests.pods_testbed import create_namespace, delete_namespace

    broken_a = create_namespace(k8s_cluster, "cluster-a")
    broken_b = create_namespace(k8s_cluster, "cluster-b")
    healthy = create_namespace(k8s_cluster, "cluster-ok")
    k8s_cluster.kubectl("apply", "-n", broken_a, "-f", "-", input=BROKEN)
    k8s_cluster.kubectl("apply", "-n", broken_b, "-f", "-", input=CRASHING_POD)
    k8s_cluster.kubectl("apply", "-n", healthy, "-f", "-", input=HEALTHY_WEB)
    try:
        for ns, selector in ((broken_a, "app=orders"), (broken_b, "app=orders")):
            wait_for(
                lambda ns=ns, selector=selector: "CrashLoopBackOff"
                in str(
                    k8s_cluster.kubectl(
                        "get", "pods", "-n", ns, "-l", selector, "-o",
                        "jsonpath={.items[*].status.containerStatuses[*].state.waiting.reason}", check=False,
                    ).stdout
                ),
                timeout=120,
                what=f"orders crash-looping in {ns}",
            )  # fmt: skip
        wait_for(
            lambda: _jsonpath(k8s_cluster, "deployment", "web", healthy, "{.status.readyReplicas}") == "2",
            timeout=120,
            what="web ready",
        )
        yield broken_a, broken_b, healthy
    finally:
        for ns in (broken_a, broken_b, healthy):
            delete_namespace(k8s_cluster, ns)


def investigate_cluster(handler, token: str, body: dict) -> dict:
    status, _, started = invoke(handler, start_event(token, body))
    assert status == 202, started
    assert started["resource"]["kind"] == "Cluster"
    investigation_id = started["investigation_id"]

    def finished():
        code, _, listed = invoke(handler, list_event(token, include_findings=True, limit=500))
        assert code == 200, listed
        item = next((i for i in listed["items"] if i["investigation_id"] == investigation_id), None)
        return item if item and item["status"] in ("completed", "failed") else None

    item: dict = wait_for(finished, timeout=180, what="investigation of the cluster")
    assert item["status"] == "completed", item
    return item


@pytest.mark.parametrize("body", [{"resource_kind": "Cluster"}, {}], ids=["kind-cluster", "no-resource"])
def test_two_broken_namespaces_are_ranked_and_a_healthy_one_is_not_listed(handler, mint, namespaces, body):
    broken_a, broken_b, healthy = namespaces
    item = investigate_cluster(handler, mint(sub="alice", scopes="read,write"), body)
    triage = item["triage"]
    ranked = [n["namespace"] for n in triage["namespaces"]]
    assert broken_a in ranked and broken_b in ranked, ranked
    assert healthy not in ranked
    by_ns = {n["namespace"]: n for n in triage["namespaces"]}
    for ns in (broken_a, broken_b):
        if by_ns[ns]["examined"]:  # within the bounds (other tests may have failing namespaces too)
            assert by_ns[ns]["top"] == "app_crash", by_ns[ns]
    if by_ns[broken_a]["examined"]:
        assert "Deployment orders: app_crash" in by_ns[broken_a]["problems"]
        assert "Job db-migrate: job_backoff_limit" in by_ns[broken_a]["problems"]
        subjects = {(f["subject"].get("namespace"), f["subject"]["name"]) for f in item["findings"]}
        assert (broken_a, "orders") in subjects and (broken_a, "db-migrate") in subjects
    assert not any(f["subject"].get("namespace") == healthy for f in item["findings"])
    assert item["root_cause"]["category"] != "healthy"
    assert triage["apiserver"]["read"] is True and triage["apiserver"]["checks"] > 5
    assert triage["nodes"]["total"] >= 1
    assert triage["bounds"]["namespaces_examined"] >= 2
    assert triage["pods"] >= 3


def test_a_caller_who_may_not_list_nodes_gets_the_api_servers_403(handler, mint, on_cluster):
    token = mint(sub=f"nobody-{uuid.uuid4().hex[:6]}", scopes="read,write", groups=())
    body = expect_error(handler, start_event(token, {"resource_kind": "Cluster"}), 403, "forbidden")
    assert "nodes" in body["message"]
    expect_error(handler, start_event(token, {}), 403, "forbidden")


def test_a_kind_without_a_name_is_still_a_missing_field(handler, mint, on_cluster):
    token = mint(sub="alice", scopes="read,write")
    error = expect_error(handler, start_event(token, {"resource_kind": "Pod"}), 400, "missing_required_field")
    assert error["details"]["field"] == "resource_name"
    assert [v["field"] for v in error["details"]["violations"]] == ["resource_name"]
