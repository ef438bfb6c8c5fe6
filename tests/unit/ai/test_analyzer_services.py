"""services analyzer: selectors that match nothing, targetPorts the pods do not serve."""

from __future__ import annotations

from kubilitics.ai.analyzers import services


def test_selector_matching_no_pod_proposes_the_labels_of_the_closest_pods(evidence):
    [finding] = services.ANALYZER(evidence("service-wrong-selector"))
    assert finding.category == "service_selector_mismatch"
    assert "app=catalog-api" in finding.summary and "app=catalog" in finding.summary
    assert finding.recommendations[0].patch == {"spec": {"selector": {"app": "catalog"}}}
    assert any(c.field == "spec.selector" for c in finding.citations)


def test_target_port_the_pods_do_not_serve(evidence):
    [finding] = services.ANALYZER(evidence("service-port-mismatch"))
    assert finding.category == "service_port_mismatch"
    assert "targetPort 6380" in finding.summary and "serve 6379" in finding.summary
    assert "Deployment cart" in finding.summary
    assert finding.recommendations[0].patch == {"spec": {"ports": [{"port": 6379, "targetPort": 6379}]}}


def test_services_that_reach_their_pods(evidence):
    for name in ("healthy-deployment", "crashloop-app-error", "readiness-never-ready"):
        assert services.ANALYZER(evidence(name)) == [], name
