"""Node investigations ("what is wrong with this node?") on the test cluster, end to end through the
investigations Lambda handler and the state machine (ai/node_triage.py).

Each test brings its own KWOK node (cluster-wide, named after a random suffix, tainted like a
dedicated pool so nothing else lands there) and removes it afterwards:

- a node whose kubelet stops (its Lease held by another identity: the real node lifecycle controller
  marks it Unknown and its pods not ready): root cause node_not_ready on the node, both pods listed;
- a node with a NoSchedule taint and a pod that selects it without tolerating it (the real scheduler
  leaves it Pending, Unschedulable): untolerated_taint, the pending pod listed;
- a healthy node with a pod running on it: healthy, allocation against allocatable reported;
- a caller bound to no role gets the API server's 403 (nothing read as the service).
"""

from __future__ import annotations

import importlib
import json
import uuid

import pytest

from tests.investigations_testbed import invoke, list_event, start_event, wait_for
from tests.support import expect_error

pytestmark = pytest.mark.cluster


def node_manifest(name: str, taint_value: str) -> str:
    return f"""
apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}}
spec:
  taints: [{{key: dedicated, value: {taint_value}, effect: NoSchedule}}]
status:
  allocatable: {{cpu: "2", memory: 8Gi, pods: "110"}}
  capacity: {{cpu: "2", memory: 8Gi, pods: "110"}}
  nodeInfo: {{architecture: amd64, operatingSystem: linux, kubeletVersion: v1.34.4,
             containerRuntimeVersion: "containerd://1.7.24"}}
"""


def deployment(name: str, node: str, replicas: int, toleration: str | None) -> str:
    tolerations = (
        f"tolerations: [{{key: dedicated, operator: Equal, value: {toleration}, effect: NoSchedule}}]"
        if toleration
        else "tolerations: []"
    )
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      {tolerations}
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: nginx:1.27
          resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}
"""


# The kubelet dies: its Lease is held by another identity with a renewTime kwok never sees expire, so
# kwok leaves the node alone (scripts/testbed, tests/evals/scenarios/node-down).
STOPPED_KUBELET = """
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {{name: {node}, namespace: kube-node-lease}}
spec:
  holderIdentity: {node}-crashed-kubelet
  leaseDurationSeconds: 40
  renewTime: "2099-01-01T00:00:00.000000Z"
"""


@pytest.fixture()
def handler(on_cluster, investigation_machine):
    return importlib.import_module("functions.ai_investigations.app").handler


def _json(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def _ready(node: dict) -> str:
    return next((c["status"] for c in node["status"].get("conditions") or [] if c["type"] == "Ready"), "")


@pytest.fixture()
def own_node(k8s_cluster):
    """A node of the test's own (and a namespace), removed afterwards with its Lease."""
    from tests.pods_testbed import create_namespace, delete_namespace

    suffix = uuid.uuid4().hex[:6]
    name = f"inv-node-{suffix}"
    ns = create_namespace(k8s_cluster, "inv-node")
    k8s_cluster.kubectl("apply", "-f", "-", input=node_manifest(name, suffix))
    try:
        wait_for(lambda: _ready(_json(k8s_cluster, "node", name)) == "True", timeout=60, what=f"{name} Ready")
        yield name, ns, suffix
    finally:
        delete_namespace(k8s_cluster, ns)
        k8s_cluster.kubectl("delete", "node", name, "--wait=false", "--ignore-not-found", check=False)
        k8s_cluster.kubectl(
            "delete", "lease", name, "-n", "kube-node-lease", "--ignore-not-found", check=False
        )


def investigate_node(handler, token: str, node: str) -> dict:
    status, _, started = invoke(handler, start_event(token, {"resource_kind": "Node", "resource_name": node}))
    assert status == 202, started
    assert started["resource"] == {"kind": "Node", "name": node}
    investigation_id = started["investigation_id"]

    def finished():
        code, _, body = invoke(handler, list_event(token, include_findings=True, limit=500))
        assert code == 200, body
        item = next((i for i in body["items"] if i["investigation_id"] == investigation_id), None)
        return item if item and item["status"] in ("completed", "failed") else None

    item: dict = wait_for(finished, timeout=120, what=f"investigation of node {node}")
    assert item["status"] == "completed", item
    return item


def _pods(cluster, ns: str) -> list[dict]:
    return _json(cluster, "pods", "-n", ns)["items"]


def test_a_node_whose_kubelet_stopped_is_the_cause_and_its_pods_are_listed(
    handler, mint, own_node, k8s_cluster
):
    node, ns, suffix = own_node
    k8s_cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment("ledger", node, 2, suffix))
    wait_for(
        lambda: (
            sum(
                1
                for p in _pods(k8s_cluster, ns)
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions") or []
                )
            )
            == 2
        ),
        timeout=120,
        what="ledger's two pods ready",
    )
    k8s_cluster.kubectl("apply", "-f", "-", input=STOPPED_KUBELET.format(node=node))
    wait_for(
        lambda: _ready(_json(k8s_cluster, "node", node)) == "Unknown", timeout=120, what=f"{node} Unknown"
    )
    wait_for(
        lambda: all(
            any(c["type"] == "Ready" and c["status"] == "False" for c in p["status"].get("conditions") or [])
            for p in _pods(k8s_cluster, ns)
        ),
        timeout=60,
        what="ledger's pods marked not ready",
    )
    pods = sorted(p["metadata"]["name"] for p in _pods(k8s_cluster, ns))

    item = investigate_node(handler, mint(sub="alice", scopes="read,write"), node)
    root = item["root_cause"]
    assert root["category"] == "node_not_ready", item["findings_summary"]
    assert root["subject"] == {"kind": "Node", "name": node}
    assert "Ready=Unknown" in root["summary"] and "2 of its 2 pod(s) are not ready" in root["summary"]
    assert item["severity"] == "critical"
    top = item["findings"][0]
    assert top["subject"] == {"kind": "Node", "name": node}
    assert sorted(top["affects"]) == sorted(f"{ns}/{p}" for p in pods)
    listed = sorted(f["subject"]["name"] for f in item["findings"] if f["subject"]["kind"] == "Pod")
    assert listed == pods
    assert all(f["category"] == "node_not_ready" for f in item["findings"])
    assert item["triage"]["conditions"]["Ready"] == "Unknown"
    assert item["triage"]["affected"] == 2
    assert any(e.get("field") == "status.conditions[Ready]" for e in item["evidence"])
    assert item["recommendations"][0]["action"] == "cordon_node"


def test_pods_pending_on_a_tainted_node_they_select_are_listed(handler, mint, own_node, k8s_cluster):
    node, ns, _ = own_node
    k8s_cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment("reports", node, 1, None))

    def unschedulable():
        for p in _pods(k8s_cluster, ns):
            for c in p["status"].get("conditions") or []:
                if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable":
                    return p["metadata"]["name"]
        return None

    pending = wait_for(unschedulable, timeout=60, what="reports pending")
    item = investigate_node(handler, mint(sub="alice", scopes="read,write"), node)
    root = item["root_cause"]
    assert root["category"] == "untolerated_taint", item["findings_summary"]
    assert root["subject"] == {"kind": "Node", "name": node}
    assert "dedicated=" in root["summary"] and "1 pod(s) that select node" in root["summary"]
    pods = [f["subject"] for f in item["findings"] if f["subject"]["kind"] == "Pod"]
    assert pods == [{"kind": "Pod", "namespace": ns, "name": pending}]
    assert item["findings"][0]["affects"] == [f"{ns}/{pending}"]
    assert item["triage"]["conditions"]["Ready"] == "True"


def test_a_healthy_node_is_healthy(handler, mint, own_node, k8s_cluster):
    node, ns, suffix = own_node
    k8s_cluster.kubectl("apply", "-n", ns, "-f", "-", input=deployment("web", node, 1, suffix))
    wait_for(
        lambda: _json(k8s_cluster, "deployment", "web", "-n", ns)["status"].get("readyReplicas") == 1,
        timeout=120,
        what="web ready",
    )
    item = investigate_node(handler, mint(sub="alice", scopes="read,write"), node)
    assert item["root_cause"]["category"] == "healthy", item["findings_summary"]
    assert item["findings"] == [] and item["recommendations"] == []
    triage = item["triage"]
    assert triage["pods"] == 1 and triage["affected"] == 0
    assert triage["allocation"]["cpu"] == {"requested": "100m", "allocatable": "2", "percent": 5}
    assert triage["taints"] == [f"dedicated={suffix}:NoSchedule"]
    assert item["findings_summary"].startswith(f"Node {node} is healthy")


def test_a_caller_who_may_not_read_nodes_gets_the_api_servers_403(handler, mint, k8s_cluster):
    node = _json(k8s_cluster, "nodes")["items"][0]["metadata"]["name"]
    token = mint(sub=f"nobody-{uuid.uuid4().hex[:6]}", scopes="read,write", groups=())
    body = expect_error(
        handler, start_event(token, {"resource_kind": "Node", "resource_name": node}), 403, "forbidden"
    )
    assert "nodes" in body["message"]
