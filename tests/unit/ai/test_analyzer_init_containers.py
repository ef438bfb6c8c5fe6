"""init_containers analyzer: an init container that fails keeps the pod from starting."""

from __future__ import annotations

from kubilitics.ai.analyzers import init_containers


def test_failing_migration_init_container(evidence):
    [finding] = init_containers.ANALYZER(evidence("init-container-fails"))
    assert finding.category == "init_container_failure"
    assert "Init container migrate" in finding.summary and "exits with code 3" in finding.summary
    assert "column invoices.total already exists" in finding.summary
    assert any(c.source == "log" and c.container == "migrate" for c in finding.citations)


def test_no_init_findings_without_failing_init_containers(evidence):
    for name in ("healthy-deployment", "crashloop-app-error", "missing-configmap"):
        assert init_containers.ANALYZER(evidence(name)) == [], name
