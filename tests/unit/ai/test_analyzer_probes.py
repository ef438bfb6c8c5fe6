"""probes analyzer: readiness and liveness probes that fail."""

from __future__ import annotations

from kubilitics.ai.analyzers import probes


def test_readiness_probe_on_the_wrong_port(evidence):
    [finding] = probes.ANALYZER(evidence("readiness-never-ready"))
    assert finding.category == "readiness_probe_failure"
    assert "port 8080" in finding.summary and "connection refused" in finding.summary
    assert any(c.source == "event" and c.reason == "Unhealthy" for c in finding.citations)
    assert finding.recommendations[0].patch == {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "nginx", "readinessProbe": {"httpGet": {"port": 80}}}]}
            }
        }
    }


def test_liveness_probe_on_a_path_that_answers_404(evidence):
    [finding] = probes.ANALYZER(evidence("liveness-probe-kills"))
    assert finding.category == "liveness_probe_failure"
    assert "/healthz" in finding.summary and "404" in finding.summary
    assert any(c.source == "event" and c.reason == "Killing" for c in finding.citations)
    assert finding.recommendations[0].action == "fix_probe_path"


def test_passing_probes_are_not_findings(evidence):
    assert probes.ANALYZER(evidence("healthy-deployment")) == []
    assert probes.ANALYZER(evidence("crashloop-app-error")) == []
