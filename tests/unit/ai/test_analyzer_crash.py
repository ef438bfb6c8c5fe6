"""crash analyzer: applications that exit with an error, told by exit code and log."""

from __future__ import annotations

from kubilitics.ai.analyzers import crash
from kubilitics.ai.evidence import Evidence


def test_panic_at_start_is_app_crash_quoting_the_log(evidence):
    [finding] = crash.ANALYZER(evidence("crashloop-app-error"))
    assert finding.category == "app_crash"
    assert finding.subject.kind == "Deployment" and finding.subject.name == "orders"
    assert "exits with code 1" in finding.summary
    assert "panic: runtime error: invalid memory address" in finding.summary
    logs = [c for c in finding.citations if c.source == "log"]
    assert logs and logs[0].container == "orders"
    assert any(c.field and c.field.endswith(".exitCode") and c.value == "1" for c in finding.citations)


def test_a_bare_pod_is_its_own_subject(evidence):
    [finding] = crash.ANALYZER(evidence("pod-crash-target"))
    assert finding.subject.kind == "Pod" and finding.subject.name == "one-off"
    assert "ValueError: DATABASE_URL is not set" in finding.summary


def test_command_that_completes_in_a_deployment(raw):
    doc = raw("crashloop-app-error")
    for obj in doc["objects"].values():
        if obj["kind"] == "Pod":
            status = obj["status"]["containerStatuses"][0]
            last = status["lastState"]["terminated"]
            status["lastState"]["terminated"] = {**last, "exitCode": 0, "reason": "Completed"}
            status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}
            status["restartCount"] = 3
    [finding] = crash.ANALYZER(Evidence.from_dict(doc))
    assert "exits with code 0" in finding.summary
    assert finding.recommendations[0].action == "fix_container_command"


def test_other_exits_are_left_to_the_analyzers_that_explain_them(evidence):
    for name in (
        "oomkilled-worker",
        "liveness-probe-kills",
        "bad-entrypoint",
        "exec-format-error",
        "init-container-fails",
        "healthy-deployment",
        "image-never-pull",
        "evicted-memory-pressure",  # exit 143: the kubelet stopped it under node pressure
    ):
        assert crash.ANALYZER(evidence(name)) == [], name
