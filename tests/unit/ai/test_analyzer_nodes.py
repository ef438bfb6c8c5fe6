"""nodes analyzer: nodes that are not ready, and evictions under node pressure."""

from __future__ import annotations

from kubilitics.ai.analyzers import nodes
from kubilitics.ai.evidence import Evidence

EVICTION = (
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. Container resizer "
    "was using 921600Ki, request is 64Mi, has larger consumption of memory. "
)


def test_node_that_stopped_reporting(evidence):
    ev = evidence("node-down")
    [finding] = nodes.ANALYZER(ev)
    assert finding.category == "node_not_ready"
    assert finding.severity == "critical"
    assert "Ready=Unknown" in finding.summary and "2 pod(s) on it" in finding.summary
    assert any(c.field == "spec.taints" and "unreachable" in (c.value or "") for c in finding.citations)
    assert any(c.source == "event" and c.reason == "NodeNotReady" for c in finding.citations)
    assert finding.recommendations[0].patch == {"spec": {"unschedulable": True}}


def evicted(doc: dict) -> dict:
    """What the kubelet reports when it evicts a pod under memory pressure (shapes of k8s 1.34)."""
    node = next(o for o in doc["objects"].values() if o["kind"] == "Node")
    for cond in node["status"]["conditions"]:
        if cond["type"] == "MemoryPressure":
            cond.update(
                status="True",
                reason="KubeletHasInsufficientMemory",
                message="kubelet has insufficient memory available",
            )
    node["spec"]["taints"] = [{"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]
    pod = next(o for o in doc["objects"].values() if o["kind"] == "Pod")
    pod["status"].update(phase="Failed", reason="Evicted", message=EVICTION)
    doc["events"].append(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "type": "Warning",
            "reason": "Evicted",
            "message": EVICTION,
            "count": 1,
            "lastTimestamp": pod["status"]["startTime"],
            "source": {"component": "kubelet", "host": node["metadata"]["name"]},
            "metadata": {
                "name": pod["metadata"]["name"] + ".evicted",
                "namespace": pod["metadata"]["namespace"],
                "uid": "evicted-event",
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "namespace": pod["metadata"]["namespace"],
                "uid": pod["metadata"]["uid"],
            },
        }
    )
    return doc


def test_evicted_pod_proposes_a_request_that_matches_its_use(raw):
    findings = nodes.ANALYZER(Evidence.from_dict(evicted(raw("evicted-memory-pressure"))))
    by_subject = {f.subject.kind: f for f in findings}
    pod_finding = by_subject["Deployment"]
    assert pod_finding.category == "eviction_pressure"
    assert "low on resource: memory" in pod_finding.summary
    rec = pod_finding.recommendations[0]
    assert rec.action == "set_memory_request"
    assert rec.patch == {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "resizer",
                            "resources": {"requests": {"memory": "1125Mi"}, "limits": {"memory": "1125Mi"}},
                        }
                    ]
                }
            }
        }
    }
    assert by_subject["Node"].category == "eviction_pressure"  # MemoryPressure=True on the pods' node


def test_eviction_captured_from_the_test_cluster(evidence):
    findings = nodes.ANALYZER(evidence("evicted-memory-pressure"))
    assert {f.category for f in findings} == {"eviction_pressure"}
    by_subject = {f.subject.kind: f for f in findings}
    assert "low on resource: memory" in by_subject["Deployment"].summary
    assert "MemoryPressure" in by_subject["Node"].summary


def test_healthy_nodes(evidence):
    for name in ("healthy-deployment", "crashloop-app-error"):
        assert nodes.ANALYZER(evidence(name)) == [], name
