"""diagnose(): one root cause from all findings, `healthy` only when nothing is wrong, `unknown` when
nothing explains what is wrong, and the result shape of spec-decisions 10 / reference section 10."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubilitics.ai.diagnosis import diagnose
from kubilitics.ai.evidence import Evidence, LogTail

EVALS = Path(__file__).resolve().parents[2] / "evals"
FIXTURES = Path(__file__).parent / "fixtures"


def expected_of(name: str) -> str:
    for folder in (EVALS / "scenarios", EVALS / "extra"):
        spec = folder / name / "scenario.yaml"
        if spec.is_file():
            return str(yaml.safe_load(spec.read_text())["expected"])
    raise LookupError(name)


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_each_captured_scenario_gets_its_category(name):
    ev = Evidence.from_dict(json.loads((FIXTURES / f"{name}.json").read_text()))
    d = diagnose(ev)
    assert d.root_cause.category == expected_of(name), d.root_cause.summary
    if d.root_cause.category != "healthy":
        assert d.evidence, "a cause must cite what it rests on"
        assert d.recommendations and d.recommendations[0]["priority"] == 1


def test_result_shape(evidence):
    d = diagnose(evidence("oomkilled-worker")).to_dict()
    assert set(d["root_cause"]) == {"category", "summary", "confidence"}
    assert d["severity"] in ("critical", "high", "medium", "low")
    for item in d["evidence"]:
        assert item["source"] in ("object", "event", "log", "absent")
        assert {"kind", "name"} <= set(item["object"])
    rec = d["recommendations"][0]
    assert {"priority", "action", "details"} <= set(rec)
    json.dumps(d)  # serializable as it is


def test_missing_configmap_outranks_the_crash_it_causes(raw):
    doc = raw("missing-configmap")
    crash = raw("crashloop-app-error")
    ns = doc["target"]["namespace"]
    # A second replica of the same Deployment that is crashing (e.g. from before the ConfigMap went).
    pod = next(o for o in crash["objects"].values() if o["kind"] == "Pod")
    mine = next(o for o in doc["objects"].values() if o["kind"] == "Pod")
    pod["metadata"].update(
        namespace=ns,
        name=mine["metadata"]["name"] + "-old",
        uid="old-pod",
        ownerReferences=mine["metadata"]["ownerReferences"],
    )
    doc["objects"][f"Pod/{ns}/{pod['metadata']['name']}"] = pod
    ev = Evidence.from_dict(doc)
    ev.logs.append(LogTail(ns, pod["metadata"]["name"], "orders", lines=("panic: config not loaded",)))
    d = diagnose(ev)
    assert d.root_cause.category == "missing_configmap"
    assert "app_crash" in [f.category for f in d.findings]


def test_node_down_outranks_the_pods_not_ready(evidence):
    d = diagnose(evidence("node-down"))
    assert d.root_cause.category == "node_not_ready"
    assert d.severity == "critical"


def test_quota_outranks_the_rollout_it_blocks(raw):
    doc = raw("quota-exceeded")
    dep = next(o for o in doc["objects"].values() if o["kind"] == "Deployment")
    for cond in dep["status"]["conditions"]:
        if cond["type"] == "Progressing":
            cond.update(
                status="False",
                reason="ProgressDeadlineExceeded",
                message=f'ReplicaSet "{dep["metadata"]["name"]}" has timed out progressing.',
            )
    d = diagnose(Evidence.from_dict(doc))
    assert d.root_cause.category == "quota_exceeded"
    assert [f.category for f in d.findings][:2] == ["quota_exceeded", "rollout_stuck"]


def test_healthy_means_nothing_at_all_is_wrong(evidence):
    d = diagnose(evidence("healthy-deployment"))
    assert d.root_cause.category == "healthy"
    assert d.root_cause.confidence >= 0.9 and d.settled and not d.problems


def test_a_problem_no_rule_explains_is_unknown_never_healthy(raw):
    doc = raw("healthy-deployment")
    pod = next(o for o in doc["objects"].values() if o["kind"] == "Pod")
    status = pod["status"]["containerStatuses"][0]
    status["state"] = {"waiting": {"reason": "SomethingNew", "message": "a failure no analyzer knows"}}
    status["ready"] = False
    d = diagnose(Evidence.from_dict(doc))
    assert d.root_cause.category == "unknown"
    assert "SomethingNew" in d.root_cause.summary
    assert d.evidence  # it still says what it saw


def test_pods_still_starting_are_not_yet_healthy(raw):
    doc = raw("healthy-deployment")
    for obj in doc["objects"].values():
        if obj["kind"] == "Pod":
            obj["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "ContainerCreating"}}
            obj["status"]["containerStatuses"][0]["ready"] = False
            obj["metadata"]["creationTimestamp"] = "2026-11-25T23:59:59Z"
    ev = Evidence.from_dict(doc)
    ev.collected_at = 1795651210.0  # 2026-11-26T00:00:10Z: the pods are 11 s old
    d = diagnose(ev)
    assert d.root_cause.category == "unknown"
    assert not d.settled
    assert "still starting" in d.root_cause.summary


def test_job_with_retries_left_is_not_settled(raw):
    doc = raw("job-always-fails")
    job = next(o for o in doc["objects"].values() if o["kind"] == "Job")
    job["status"]["conditions"] = []
    job["status"]["failed"] = 1
    job["status"]["active"] = 1
    d = diagnose(Evidence.from_dict(doc))
    assert not d.settled
    assert d.root_cause.category == "app_crash"  # what it knows so far


def test_target_that_does_not_exist():
    from kubilitics.ai.evidence import ObjectRef

    ev = Evidence(target=ObjectRef("Deployment", "ghost", "default"), collected_at=0.0)
    ev.notes.append("Deployment/default/ghost was not found")
    d = diagnose(ev)
    assert d.root_cause.category == "unknown"
    assert "does not exist" in d.root_cause.summary
