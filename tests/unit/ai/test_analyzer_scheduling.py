"""scheduling analyzer: what the scheduler says about pods it cannot place."""

from __future__ import annotations

import pytest
from kubilitics.ai.analyzers import scheduling
from kubilitics.ai.evidence import Evidence


@pytest.mark.parametrize(
    ("message", "category"),
    [
        (
            "0/3 nodes are available: 3 Insufficient cpu. no new claims to deallocate, preemption: 0/3 "
            "nodes are "
            "available: 3 Preemption is not helpful for scheduling.",
            "insufficient_cpu",
        ),
        ("0/3 nodes are available: 1 Insufficient memory, 2 Insufficient cpu.", "insufficient_cpu"),
        (
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 "
            "nodes are "
            "available: 3 Preemption is not helpful for scheduling.",
            "node_selector_mismatch",
        ),
        (
            "0/4 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 3 "
            "node(s) "
            "didn't match Pod's node affinity/selector.",
            "node_not_ready",
        ),
        ("0/2 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}.", "untolerated_taint"),
        (
            "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 "
            "nodes are "
            "available: 1 Preemption is not helpful for scheduling.",
            "unbound_pvc",
        ),
        (
            "0/3 nodes are available: 1 node(s) had untolerated taint "
            "{node-role.kubernetes.io/control-plane: }, "
            "2 Insufficient memory.",
            "insufficient_memory",
        ),
    ],
)
def test_reasons_of_real_scheduler_messages(message, category):
    reasons = scheduling.parse_reasons(message)
    cats = {scheduling.categorize(r) for _, r in reasons}
    assert category in cats or (category == "insufficient_cpu" and "insufficient_cpu" in cats)


def test_cpu_request_larger_than_any_node(evidence):
    [finding] = scheduling.ANALYZER(evidence("too-much-cpu-requested"))
    assert finding.category == "insufficient_cpu"
    assert "requests 8 cpu per pod" in finding.summary and "largest has 4 allocatable" in finding.summary
    assert any(c.source == "event" and c.reason == "FailedScheduling" for c in finding.citations)
    assert finding.recommendations[0].patch == {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "analytics", "resources": {"requests": {"cpu": "2"}}}]}
            }
        }
    }


def test_memory_request_larger_than_any_node(evidence):
    [finding] = scheduling.ANALYZER(evidence("insufficient-memory"))
    assert finding.category == "insufficient_memory"
    assert "64Gi" in finding.summary and "16Gi" in finding.summary


def test_node_selector_typo_proposes_the_closest_existing_value(evidence):
    [finding] = scheduling.ANALYZER(evidence("node-selector-typo"))
    assert finding.category == "node_selector_mismatch"
    assert "kubernetes.io/os=linx" in finding.summary
    assert finding.recommendations[0].patch == {
        "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}}
    }


def test_untolerated_taint_is_read_from_the_nodes_when_the_scheduler_does_not_name_it(evidence):
    ev = evidence("untolerated-taint")
    [finding] = scheduling.ANALYZER(ev)
    assert finding.category == "untolerated_taint"
    assert "nvidia.com/gpu" in finding.summary
    patch = finding.recommendations[0].patch
    assert patch == {
        "spec": {
            "template": {
                "spec": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
                }
            }
        }
    }


def test_unreachable_taint_on_the_only_allowed_node_is_a_node_problem(raw):
    doc = raw("untolerated-taint")
    node = next(o for o in doc["objects"].values() if o["kind"] == "Node" and "gpu" in o["metadata"]["name"])
    node["spec"]["taints"] = [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]
    [finding] = scheduling.ANALYZER(Evidence.from_dict(doc))
    assert finding.category == "node_not_ready"


def test_scheduled_pods_have_no_scheduling_findings(evidence):
    for name in ("healthy-deployment", "crashloop-app-error", "node-down"):
        assert scheduling.ANALYZER(evidence(name)) == [], name
