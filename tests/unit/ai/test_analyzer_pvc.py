"""pvc analyzer: claims that do not bind."""

from __future__ import annotations

from kubilitics.ai.analyzers import pvc
from kubilitics.ai.evidence import Evidence


def test_claim_without_class_on_a_cluster_without_default(evidence):
    [finding] = pvc.ANALYZER(evidence("pvc-no-storageclass"))
    assert finding.category == "unbound_pvc"
    assert finding.subject.kind == "PersistentVolumeClaim" and finding.subject.name == "pgdata"
    assert "no default StorageClass" in finding.summary
    assert any(c.source == "event" and c.reason == "FailedBinding" for c in finding.citations)
    assert any(c.source == "event" and c.reason == "FailedScheduling" for c in finding.citations)


def test_claim_naming_a_storage_class_that_does_not_exist(raw):
    doc = raw("pvc-no-storageclass")
    claim = next(o for o in doc["objects"].values() if o["kind"] == "PersistentVolumeClaim")
    claim["spec"]["storageClassName"] = "fast-ssd"
    event = next(e for e in doc["events"] if e["reason"] == "FailedBinding")
    event.update(
        reason="ProvisioningFailed",
        type="Warning",
        message='storageclass.storage.k8s.io "fast-ssd" not found',
    )
    doc["absent"].append({"kind": "StorageClass", "name": "fast-ssd"})
    [finding] = pvc.ANALYZER(Evidence.from_dict(doc))
    assert "StorageClass fast-ssd, which does not exist" in finding.summary
    assert finding.recommendations[0].action == "fix_storage_class"


def test_bound_claims_are_fine(raw, evidence):
    doc = raw("pvc-no-storageclass")
    claim = next(o for o in doc["objects"].values() if o["kind"] == "PersistentVolumeClaim")
    claim["status"]["phase"] = "Bound"
    for obj in doc["objects"].values():
        if obj["kind"] == "Pod":
            obj["spec"]["nodeName"] = "testbed-node-1"
    assert pvc.ANALYZER(Evidence.from_dict(doc)) == []
    assert pvc.ANALYZER(evidence("healthy-deployment")) == []
