"""Running but failing: pods that stay Running and Ready while every call they make fails, on the
test cluster (its kubelet stand-in runs their endless loops in time, so their logs grow).

- checkout logs "connection refused" in one line of two: the namespace investigation names it
  (category connection_refused, the log line cited, the address in the summary), and the Deployment's
  own investigation agrees;
- catalog logs the same error once among twelve ordinary lines each round: more than five such
  lines, but fewer than one in ten (the threshold, ai/analyzers/log_patterns.py), so the namespace
  around it is healthy;
- the cluster investigation finds checkout through the same log scan;
- the investigation of checkout's node lists it (its own problem, not the node's).
"""

from __future__ import annotations

import importlib

import pytest

from tests.integration.test_namespace_investigations import investigate_namespace
from tests.investigations_testbed import NODES, invoke, list_event, start_event, wait_for

pytestmark = pytest.mark.cluster

REFUSED = "dial tcp 10.96.14.2:5432: connect: connection refused"


def looping(name: str, body: str) -> str:
    """A Deployment whose container runs `while true; do <body>; sleep 1; done` and stays Ready."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      {NODES}
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: busybox:1.36
          resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{memory: 64Mi}}}}
          command:
            - sh
            - -c
            - |
              echo "{name} starting"
              while true; do
                {body}
                sleep 1
              done
"""


CHECKOUT = looping(
    "checkout", f'echo "GET /cart 200 3ms"; echo "level=error msg=\\"db ping\\" err=\\"{REFUSED}\\""'
)
CATALOG = looping(
    "catalog",
    'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "GET /items/$i 200 2ms"; done; '
    f'echo "level=warn msg=\\"cache ping\\" err=\\"{REFUSED}\\""',
)


@pytest.fixture()
def handler(on_cluster, investigation_machine):
    return importlib.import_module("functions.ai_investigations.app").handler


def _finished(handler, token: str, investigation_id: str, timeout: float, what: str) -> dict:
    def finished():
        code, _, body = invoke(handler, list_event(token, include_findings=True, limit=500))
        assert code == 200, body
        item = next((i for i in body["items"] if i["investigation_id"] == investigation_id), None)
        return item if item and item["status"] in ("completed", "failed") else None

    return wait_for(finished, timeout=timeout, what=what)


def _refused_lines(cluster, ns: str, app: str) -> int:
    out = cluster.kubectl("logs", "-n", ns, f"deployment/{app}", check=False).stdout
    return str(out).count("connection refused")


def _namespace_with(cluster, prefix: str, manifests: str, app: str, lines: int):
    from tests.pods_testbed import create_namespace

    ns = create_namespace(cluster, prefix)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifests)
    # The log grows one round a second: wait until the error has been logged `lines` times.
    wait_for(lambda: _refused_lines(cluster, ns, app) >= lines, timeout=120, what=f"{app} logging")
    return ns


@pytest.fixture(scope="module")
def failing_ns(k8s_cluster):
    from tests.pods_testbed import delete_namespace

    ns = _namespace_with(k8s_cluster, "running-failing", CHECKOUT, "checkout", 8)
    try:
        yield ns
    finally:
        delete_namespace(k8s_cluster, ns)


@pytest.fixture(scope="module")
def noisy_ns(k8s_cluster):
    from tests.pods_testbed import delete_namespace

    ns = _namespace_with(k8s_cluster, "running-noisy", CATALOG, "catalog", 8)
    try:
        yield ns
    finally:
        delete_namespace(k8s_cluster, ns)


def test_a_ready_pod_that_logs_refused_connections_is_the_namespaces_problem(handler, mint, failing_ns):
    token = mint(sub="alice", scopes="read,write")
    item = investigate_namespace(handler, token, failing_ns)
    root = item["root_cause"]
    assert root["category"] == "connection_refused", item["findings_summary"]
    assert root["subject"] == {"kind": "Deployment", "name": "checkout", "namespace": failing_ns}
    assert "'10.96.14.2:5432'" in root["summary"]
    assert "while running" in root["summary"]
    cited = [e for e in item["evidence"] if e.get("source") == "log"]
    assert cited and REFUSED in cited[0]["value"], item["evidence"]
    assert item["triage"]["affected_workloads"] == ["Deployment checkout"]
    assert item["recommendations"][0]["action"] == "check_dependency"


def test_the_deployments_own_investigation_agrees(handler, mint, failing_ns):
    token = mint(sub="alice", scopes="read,write")
    status, _, started = invoke(
        handler,
        start_event(
            token, {"resource_kind": "Deployment", "resource_name": "checkout", "namespace": failing_ns}
        ),
    )
    assert status == 202, started

    item = _finished(handler, token, started["investigation_id"], 120, "checkout investigation")
    assert item["root_cause"]["category"] == "connection_refused", item["findings_summary"]


def test_a_few_errors_among_normal_output_leave_the_namespace_healthy(handler, mint, noisy_ns, k8s_cluster):
    assert _refused_lines(k8s_cluster, noisy_ns, "catalog") >= 5  # enough lines, too small a share
    token = mint(sub="alice", scopes="read,write")
    item = investigate_namespace(handler, token, noisy_ns)
    assert item["root_cause"]["category"] == "healthy", item["findings_summary"]
    assert item["triage"]["affected"] == 0


def test_the_cluster_investigation_finds_it_through_the_same_scan(handler, mint, failing_ns, noisy_ns):
    token = mint(sub="alice", scopes="read,write")
    status, _, started = invoke(handler, start_event(token, {"resource_kind": "Cluster"}))
    assert status == 202, started

    item = _finished(handler, token, started["investigation_id"], 180, "cluster investigation")
    assert item["status"] == "completed", item
    found = {
        (f["category"], f["subject"].get("namespace"), f["subject"]["name"])
        for f in item["findings"]
        if f.get("subject")
    }
    assert ("connection_refused", failing_ns, "checkout") in found, sorted(found)
    assert not any(ns == noisy_ns for _, ns, _ in found), sorted(found)


def test_the_node_investigation_lists_it_as_its_own_problem(handler, mint, failing_ns, k8s_cluster):
    node = k8s_cluster.kubectl(
        "get", "pods", "-n", failing_ns, "-l", "app=checkout", "-o", "jsonpath={.items[0].spec.nodeName}"
    ).stdout.strip()
    token = mint(sub="alice", scopes="read,write")
    status, _, started = invoke(handler, start_event(token, {"resource_kind": "Node", "resource_name": node}))
    assert status == 202, started
    item = _finished(handler, token, started["investigation_id"], 120, "node investigation")
    assert item["status"] == "completed", item
    logged = [e for e in item["triage"]["logged"] if e["subject"]["namespace"] == failing_ns]
    assert [e["subject"]["name"] for e in logged] == ["checkout"], item["triage"]["logged"]
    assert "connection_refused" in logged[0]["why"] and REFUSED in logged[0]["why"]
    assert not any(f["subject"].get("name") == "checkout" for f in item["findings"])
