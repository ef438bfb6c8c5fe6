"""gather_evidence + diagnose on the real test cluster, for a handful of the eval scenarios.

Each scenario is applied into a fresh namespace exactly as `python -m tests.evals.run` does (the same
runner code), its symptoms are awaited, and the diagnosis must name the scenario's category and
cite what it rests on. The full set runs with `python -m tests.evals.run`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.evals.run import Diagnoser, Kubectl, Scenario, ScenarioRun

pytestmark = pytest.mark.cluster

EVALS = Path(__file__).resolve().parents[1] / "evals"
FAST = [
    "crashloop-app-error",
    "oomkilled-worker",
    "missing-configmap",
    "too-much-cpu-requested",
    "service-wrong-selector",
    "healthy-deployment",
]


@pytest.fixture(scope="module")
def runner(k8s_cluster):
    kubectl = Kubectl(k8s_cluster.kubeconfig, k8s_cluster.context, k8s_cluster.kubectl_path)
    return kubectl, Diagnoser(k8s_cluster.kubeconfig, k8s_cluster.context)


@pytest.mark.parametrize("name", FAST)
def test_scenario_is_diagnosed_with_its_category(runner, name):
    kubectl, diagnoser = runner
    scenario = Scenario.load(EVALS / "scenarios" / name)
    result = ScenarioRun(scenario, kubectl, diagnoser).run()
    assert result.error is None
    assert result.symptoms_seen, f"the test cluster did not show the symptoms of {name}"
    assert result.got == scenario.expected, result.summary
    diagnosis = result.diagnosis or {}
    assert diagnosis["root_cause"]["category"] == scenario.expected
    if scenario.expected == "healthy":
        assert diagnosis["problems"] == [] and diagnosis["recommendations"] == []
    else:
        assert diagnosis["evidence"], "the root cause must cite objects, events or log lines"
        assert all(item["object"]["name"] for item in diagnosis["evidence"])
        assert diagnosis["recommendations"][0]["priority"] == 1


def test_secret_values_never_reach_the_evidence(runner):
    """missing-secret-key creates a Secret whose value is a canary; only its key names may appear."""
    kubectl, diagnoser = runner
    scenario = Scenario.load(EVALS / "extra" / "missing-secret-key")
    result = ScenarioRun(scenario, kubectl, diagnoser).run()
    assert result.got == "missing_secret_key", result.summary
    text = json.dumps(result.evidence) + json.dumps(result.diagnosis)
    assert "s3cr3t-canary-value" not in text
    assert '"pasword"' in text  # the key name is there: that is what shows the typo
