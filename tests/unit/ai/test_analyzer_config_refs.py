"""config_refs analyzer: ConfigMaps and Secrets (or keys of them) that a pod needs and that do not exist."""

from __future__ import annotations

from kubilitics.ai.analyzers import config_refs
from kubilitics.ai.evidence import Evidence


def test_missing_configmap_confirmed_by_kubelet_and_by_absence(evidence):
    ev = evidence("missing-configmap")
    [finding] = config_refs.ANALYZER(ev)
    assert finding.category == "missing_configmap"
    assert finding.confidence >= 0.95
    assert "ConfigMap checkout-config" in finding.summary
    assert any(c.source == "absent" and c.object.name == "checkout-config" for c in finding.citations)
    assert any("CreateContainerConfigError" in (c.value or "") for c in finding.citations)
    rec = finding.recommendations[0]
    assert (
        rec.action == "create_configmap" and rec.target is not None and rec.target.name == "checkout-config"
    )


def test_missing_secret_names_the_keys_the_pod_reads(evidence):
    [finding] = config_refs.ANALYZER(evidence("missing-secret"))
    assert finding.category == "missing_secret"
    assert "Secret billing-db-credentials" in finding.summary
    assert "--from-literal=password=..." in finding.recommendations[0].details


def test_missing_keys_list_what_the_object_has(evidence):
    [cm] = config_refs.ANALYZER(evidence("missing-configmap-key"))
    assert cm.category == "missing_configmap_key"
    assert "ELASTICSEARCH_URL" in cm.summary and "INDEX_NAME, LOG_LEVEL" in cm.summary
    [secret] = config_refs.ANALYZER(evidence("missing-secret-key"))
    assert secret.category == "missing_secret_key"
    assert "key password of Secret smtp-credentials" in secret.summary
    assert "pasword" in secret.summary  # the key it does have: the typo is visible


def test_found_from_the_spec_before_the_kubelet_reports(raw):
    doc = raw("missing-configmap")
    for obj in doc["objects"].values():
        if obj["kind"] == "Pod":
            obj["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
    doc["events"] = []
    [finding] = config_refs.ANALYZER(Evidence.from_dict(doc))
    assert finding.category == "missing_configmap"
    assert finding.confidence >= 0.95  # the spec names it and the cluster does not have it


def test_optional_references_and_existing_objects_are_fine(raw, evidence):
    doc = raw("missing-configmap")
    for obj in doc["objects"].values():
        if obj["kind"] == "Pod":
            obj["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["optional"] = True
            obj["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
    doc["events"] = []
    assert config_refs.ANALYZER(Evidence.from_dict(doc)) == []
    for name in ("healthy-deployment", "crashloop-app-error", "missing-secret-key"):
        findings = config_refs.ANALYZER(evidence(name))
        assert all(f.category == "missing_secret_key" for f in findings), name
