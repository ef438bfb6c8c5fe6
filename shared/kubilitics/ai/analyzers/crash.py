"""Applications that exit with an error (CrashLoopBackOff, non-zero exit): the generic crash.

Exits that another analyzer explains better are left to it: OOMKilled (oom), the command missing
from the image (command), an exec format error (command), a liveness kill (probes), init containers
(init_containers), pods the kubelet evicted (nodes). What remains is the application's own
failure, told by its exit code and the last error lines of the run that failed.
"""

from __future__ import annotations

from typing import Any

from kubilitics.ai.analyzers._common import (
    container_events,
    crash_logs,
    describe,
    error_lines,
    is_recent,
    on_pod,
    outage_severity,
    quote,
    workload_of,
)
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.analyzers.command import EXEC_FORMAT, NOT_IN_IMAGE
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_event, cite_field, cite_log
from kubilitics.ai.kube_json import ContainerView, containers, meta

SIGNALS = {137: "SIGKILL", 143: "SIGTERM", 139: "SIGSEGV", 134: "SIGABRT"}


def analyze(ev: Evidence) -> list[Finding]:
    findings: dict[tuple[str, str], Finding] = {}
    for pod in ev.pods:
        for c in containers(pod):
            if c.init and not c.sidecar:
                continue
            finding = _container(ev, pod, c)
            if finding is None:
                continue
            key = (str(finding.subject), c.name)
            if key in findings:  # another replica with the same failure: one finding, more evidence
                findings[key].citations.extend(finding.citations[:1])
                findings[key].confidence = max(findings[key].confidence, finding.confidence)
            else:
                findings[key] = finding
    return list(findings.values())


def _container(ev: Evidence, pod: dict[str, Any], c: ContainerView) -> Finding | None:
    if (pod.get("status") or {}).get("reason") == "Evicted":
        return None  # stopped by the kubelet under node pressure: the nodes analyzer tells that
    term, path = c.recent_termination()
    if not term or term.get("reason") in ("OOMKilled", "StartError", "ContainerCannotRun"):
        return None
    code = int(term.get("exitCode") or 0)
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    crashing = c.waiting.get("reason") == "CrashLoopBackOff"
    if code in (127, 128) or EXEC_FORMAT.search(str(term.get("message") or "")):
        return None
    if NOT_IN_IMAGE.search(str(term.get("message") or "")):
        return None
    if code in (137, 143) and _killed_by_probe(ev, pod, c):
        return None
    tails = crash_logs(ev, pod, c)
    if any(EXEC_FORMAT.search(line) for t in tails for line in t.lines):
        return None
    if code == 0:
        # A program that finishes where the pod expects a server: Completed, then restarted forever.
        if policy != "Always" or not (crashing or c.restarts > 0):
            return None
        confidence = 0.7
    else:
        confidence = 0.9 if (crashing or c.restarts >= 2) else 0.8
    workload = workload_of(ev, pod)
    wref = ObjectRef.of(workload)
    cites: list[Citation] = []
    if crashing:
        cites.append(cite_field(pod, f"{c.status_path}.state.waiting.reason", "CrashLoopBackOff"))
    cites.append(cite_field(pod, f"{path}.exitCode", code))
    if c.restarts:
        cites.append(cite_field(pod, f"{c.status_path}.restartCount", c.restarts))
    backoff = [e for e in container_events(ev, pod, c.name, reason="BackOff") if is_recent(ev, e, 900)]
    cites += [cite_event(e) for e in backoff[:1] if "restarting failed container" in str(e.get("message"))]
    quoted = ""
    for tail in tails[:1]:
        lines = error_lines(tail)
        cites += [cite_log(tail, line) for line in lines]
        if lines:
            quoted = lines[0] if len(lines) == 1 else lines[0] + " … " + lines[-1]
            confidence = min(0.95, confidence + 0.05)
    signal = f" ({SIGNALS[code]})" if code in SIGNALS else ""
    if code == 0:
        what = "exits with code 0 (its command finishes) but the pod's restartPolicy is Always"
    else:
        what = f"exits with code {code}{signal}"
    restarts = f", restarted {c.restarts} time(s)" if c.restarts else ""
    said = (
        f"; its last log lines: {quote(quoted, 200)!r}" if quoted else "; it logged nothing that explains it"
    )
    summary = f"Container {c.name} of {on_pod(wref, pod)} {what}{restarts}{said}."
    recs = [_fix(c, wref, code, quoted)]
    previous = _previous_revision(ev, workload)
    if previous:
        recs.append(
            Recommendation(
                "rollback_deployment",
                f"Roll {describe(wref)} back to revision {previous} (its last ReplicaSet that ran) while "
                "the error is "
                f"fixed: kubectl rollout undo deployment/{wref.name} --to-revision={previous}.",
                wref,
            )
        )
    return Finding(
        category="app_crash",
        summary=summary,
        confidence=confidence,
        severity=outage_severity(ev),
        subject=wref,
        citations=cites,
        recommendations=recs,
    )


def _fix(c: ContainerView, wref: ObjectRef, code: int, quoted: str) -> Recommendation:
    if code == 0:
        return Recommendation(
            "fix_container_command",
            f"Container {c.name} of {describe(wref)} runs a command that finishes. Run a long-lived process "
            "(a server) in a Deployment, or use a Job for work that completes.",
            wref,
        )
    about = f" ({quote(quoted, 120)!r})" if quoted else ""
    return Recommendation(
        "fix_application_error",
        f"Fix the error that makes container {c.name} of {describe(wref)} exit with code {code}{about}: "
        "check its configuration (env, mounted files, arguments) and the application code; read the whole "
        f"log with kubectl logs --previous -c {c.name}.",
        wref,
    )


def _killed_by_probe(ev: Evidence, pod: dict[str, Any], c: ContainerView) -> bool:
    for event in container_events(ev, pod, c.name, reason="Killing"):
        if "probe" in str(event.get("message")):
            return True
    return False


def _previous_revision(ev: Evidence, workload: dict[str, Any]) -> int | None:
    """The revision before the current one of a Deployment (what `rollout undo` goes back to)."""
    if workload.get("kind") != "Deployment":
        return None
    uid = meta(workload).get("uid")
    current = int((meta(workload).get("annotations") or {}).get("deployment.kubernetes.io/revision") or 0)
    older = [
        int((meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision") or 0)
        for rs in ev.of_kind("ReplicaSet")
        if any(r.get("uid") == uid for r in meta(rs).get("ownerReferences") or [])
    ]
    older = [r for r in older if 0 < r < current]
    return max(older) if older else None


ANALYZER = Analyzer("crash", ("app_crash",), analyze)
