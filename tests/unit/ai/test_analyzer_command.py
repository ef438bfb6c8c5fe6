"""command analyzer: commands the image does not contain, and images built for another CPU."""

from __future__ import annotations

from kubilitics.ai.analyzers import command
from kubilitics.ai.evidence import Evidence, LogTail


def test_executable_not_in_path(evidence):
    [finding] = command.ANALYZER(evidence("bad-entrypoint"))
    assert finding.category == "command_not_found"
    assert "'gunicorn'" in finding.summary
    assert any("executable file not found in $PATH" in (c.value or "") for c in finding.citations)
    assert "python:3.12-slim" in finding.recommendations[0].details


def test_exec_format_error_names_the_node_architecture(evidence):
    [finding] = command.ANALYZER(evidence("exec-format-error"))
    assert finding.category == "exec_format_error"
    assert "arm64" in finding.summary
    assert any(c.source == "log" and "exec format error" in (c.value or "") for c in finding.citations)
    assert any(c.field == "status.nodeInfo.architecture" and c.value == "arm64" for c in finding.citations)


def test_shell_exit_127_with_not_found_in_the_log(raw):
    doc = raw("crashloop-app-error")
    ns = doc["target"]["namespace"]
    pod = next(o for o in doc["objects"].values() if o["kind"] == "Pod")
    status = pod["status"]["containerStatuses"][0]
    status["state"] = {
        "terminated": {
            **status["state"].get("terminated", status["lastState"]["terminated"]),
            "exitCode": 127,
        }
    }
    ev = Evidence.from_dict(doc)
    ev.logs = [LogTail(ns, pod["metadata"]["name"], "orders", lines=("sh: migrate-db: not found",))]
    findings = [f for f in command.ANALYZER(ev) if f.subject.name == "orders"]
    assert findings and findings[0].category == "command_not_found"
    assert "'migrate-db'" in findings[0].summary


def test_application_errors_are_not_command_problems(evidence):
    for name in ("crashloop-app-error", "healthy-deployment", "oomkilled-worker", "dns-lookup-fails"):
        assert command.ANALYZER(evidence(name)) == [], name
