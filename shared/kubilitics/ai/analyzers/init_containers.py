"""Init containers that fail (Init:Error, Init:CrashLoopBackOff), so the app containers never start.

An init container that cannot start at all for a reason another analyzer names (image pull, a
missing ConfigMap, a command not in the image, OOM) is left to that analyzer.
"""

from __future__ import annotations

from typing import Any

from kubilitics.ai.analyzers._common import (
    crash_logs,
    describe,
    error_lines,
    on_pod,
    outage_severity,
    quote,
    workload_ref,
)
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.analyzers.command import EXEC_FORMAT, NOT_IN_IMAGE
from kubilitics.ai.evidence import Evidence
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_field, cite_log
from kubilitics.ai.kube_json import ContainerView, containers


def analyze(ev: Evidence) -> list[Finding]:
    findings: dict[tuple[str, str], Finding] = {}
    for pod in ev.pods:
        for c in containers(pod, init=True):
            if c.sidecar:
                continue
            finding = _container(ev, pod, c)
            if finding is None:
                continue
            key = (str(finding.subject), c.name)
            if key in findings:
                findings[key].citations.extend(finding.citations[:1])
            else:
                findings[key] = finding
    return list(findings.values())


def _container(ev: Evidence, pod: dict[str, Any], c: ContainerView) -> Finding | None:
    term, path = c.recent_termination()
    if not term or int(term.get("exitCode") or 0) == 0:
        return None
    if term.get("reason") in ("OOMKilled", "StartError", "ContainerCannotRun"):
        return None
    if term.get("exitCode") == 127 or NOT_IN_IMAGE.search(str(term.get("message") or "")):
        return None
    if c.ready or (c.terminated and c.terminated.get("exitCode") == 0):
        return None  # it failed before but has since succeeded
    tails = crash_logs(ev, pod, c)
    argv = [*(c.spec.get("command") or []), *(c.spec.get("args") or [])]
    runs = quote(" ".join(map(str, argv)), 120) if argv else "its image default"
    if any(EXEC_FORMAT.search(line) for t in tails for line in t.lines):
        return None
    wref = workload_ref(ev, pod)
    code = term.get("exitCode")
    cites: list[Citation] = [cite_field(pod, f"{path}.exitCode", code)]
    if c.waiting.get("reason") == "CrashLoopBackOff":
        cites.insert(0, cite_field(pod, f"{c.status_path}.state.waiting.reason", "CrashLoopBackOff"))
    quoted = ""
    for tail in tails[:1]:
        lines = error_lines(tail)
        cites += [cite_log(tail, line) for line in lines]
        quoted = lines[-1] if lines else ""
    said = f": {quote(quoted, 160)!r}" if quoted else ""
    return Finding(
        category="init_container_failure",
        summary=(
            f"Init container {c.name} of {on_pod(wref, pod)} exits with code {code}{said}; "
            f"the pod's app containers never start (restarts: {c.restarts})."
        ),
        confidence=0.92 if quoted else 0.85,
        severity=outage_severity(ev),
        subject=wref,
        citations=cites,
        recommendations=[
            Recommendation(
                "fix_init_container",
                f"Make init container {c.name} of {describe(wref)} succeed: it runs "
                f"{runs}"
                f"{f' and fails with {quote(quoted, 120)!r}' if quoted else ''}. If it waits for a "
                "dependency "
                "(a database, a Service), make sure that dependency exists and is reachable.",
                wref,
            )
        ],
    )


ANALYZER = Analyzer("init_containers", ("init_container_failure",), analyze)
