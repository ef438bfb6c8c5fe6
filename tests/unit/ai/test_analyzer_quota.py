"""quota analyzer: ResourceQuotas that forbid creating the pods a workload needs."""

from __future__ import annotations

from kubilitics.ai.analyzers import quota
from kubilitics.ai.evidence import Evidence


def test_quota_exceeded_proposes_what_all_replicas_need(evidence):
    [finding] = quota.ANALYZER(evidence("quota-exceeded"))
    assert finding.category == "quota_exceeded"
    assert finding.subject.kind == "Deployment" and finding.subject.name == "renderer"
    assert "requests.cpu=1" in finding.summary and "2 pod(s) are missing" in finding.summary
    assert any(c.source == "event" and c.reason == "FailedCreate" for c in finding.citations)
    rec = finding.recommendations[0]
    assert rec.target is not None and rec.target.name == "team-quota"
    assert rec.patch == {"spec": {"hard": {"requests.cpu": "1600m"}}}


def test_quota_errors_that_no_longer_hold(raw):
    doc = raw("quota-exceeded")
    rs = next(o for o in doc["objects"].values() if o["kind"] == "ReplicaSet")
    rs["status"]["replicas"] = rs["spec"]["replicas"]  # the quota was raised; all pods exist now
    dep = next(o for o in doc["objects"].values() if o["kind"] == "Deployment")
    dep["status"]["conditions"] = [c for c in dep["status"]["conditions"] if c["type"] != "ReplicaFailure"]
    dep["status"]["replicas"] = dep["spec"]["replicas"]
    assert quota.ANALYZER(Evidence.from_dict(doc)) == []


def test_no_quota_no_finding(evidence):
    assert quota.ANALYZER(evidence("healthy-deployment")) == []
