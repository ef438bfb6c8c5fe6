"""rollout analyzer: Deployments past their progress deadline."""

from __future__ import annotations

from kubilitics.ai.analyzers import rollout


def test_progress_deadline_exceeded_explains_a_slow_readiness_probe(evidence):
    [finding] = rollout.ANALYZER(evidence("rollout-deadline"))
    assert finding.category == "rollout_stuck"
    assert "progressDeadlineSeconds (20 s)" in finding.summary
    assert "initialDelaySeconds" in finding.summary
    assert any("ProgressDeadlineExceeded" in (c.value or "") for c in finding.citations)
    tune = finding.recommendations[0]
    assert tune.action == "tune_probe"
    assert tune.patch == {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "reports", "readinessProbe": {"initialDelaySeconds": 10}}]}
            }
        }
    }


def test_finished_rollouts(evidence):
    for name in ("healthy-deployment", "crashloop-app-error", "readiness-never-ready"):
        assert rollout.ANALYZER(evidence(name)) == [], name
