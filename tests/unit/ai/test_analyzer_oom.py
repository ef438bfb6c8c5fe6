"""oom analyzer: the kernel kills a container over its memory limit."""

from __future__ import annotations

from kubilitics.ai.analyzers import oom
from kubilitics.ai.evidence import Evidence


def test_oomkilled_proposes_twice_the_limit(evidence):
    [finding] = oom.ANALYZER(evidence("oomkilled-worker"))
    assert finding.category == "oom_killed"
    assert "limit of 256Mi" in finding.summary
    assert any(c.value == "OOMKilled" for c in finding.citations)
    assert any(c.source == "event" and c.reason == "OOMKilling" for c in finding.citations)
    rec = finding.recommendations[0]
    assert rec.action == "increase_memory_limit"
    assert rec.patch == {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "worker", "resources": {"limits": {"memory": "512Mi"}}}]}
            }
        }
    }


def test_no_limit_means_the_node_ran_out(raw):
    doc = raw("oomkilled-worker")
    for obj in doc["objects"].values():
        if obj["kind"] == "Pod":
            obj["spec"]["containers"][0]["resources"].pop("limits")
    [finding] = oom.ANALYZER(Evidence.from_dict(doc))
    assert finding.recommendations[0].action == "set_memory_limit"


def test_no_oom_elsewhere(evidence):
    for name in ("healthy-deployment", "crashloop-app-error", "liveness-probe-kills"):
        assert oom.ANALYZER(evidence(name)) == [], name
