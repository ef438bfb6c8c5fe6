"""Probes that fail: readiness (Running but never Ready, no traffic) and liveness/startup (the
kubelet kills and restarts a container that may be perfectly fine, exit 137/143 without OOM).

The probe's own failure message says what the kubelet saw (connection refused on a port, an HTTP
status); comparing the probe's port with the ports the container declares turns that into a fix.
"""

from __future__ import annotations

import re
from typing import Any

from kubilitics.ai.analyzers._common import (
    container_events,
    container_patch,
    describe,
    is_recent,
    on_pod,
    outage_severity,
    quote,
    workload_ref,
)
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_event, cite_field
from kubilitics.ai.kube_json import ContainerView, containers

KINDS = {
    "readinessProbe": ("Readiness", "readiness_probe_failure"),
    "livenessProbe": ("Liveness", "liveness_probe_failure"),
    "startupProbe": ("Startup", "liveness_probe_failure"),
}
RECENT = 900  # probe failures older than this, on a container that is fine now, are history


def analyze(ev: Evidence) -> list[Finding]:
    findings: dict[tuple[str, str, str], Finding] = {}
    for pod in ev.pods:
        for c in containers(pod):
            for probe_kind in ("livenessProbe", "startupProbe", "readinessProbe"):
                finding = _probe(ev, pod, c, probe_kind)
                if finding is None:
                    continue
                key = (str(finding.subject), c.name, finding.category)
                if key in findings:
                    findings[key].citations.extend(finding.citations[:1])
                else:
                    findings[key] = finding
    return list(findings.values())


def _probe(ev: Evidence, pod: dict[str, Any], c: ContainerView, probe_kind: str) -> Finding | None:
    label, category = KINDS[probe_kind]
    failures = [
        e
        for e in container_events(ev, pod, c.name, reason="Unhealthy")
        if str(e.get("message", "")).startswith(f"{label} probe failed") and is_recent(ev, e, RECENT)
    ]
    if not failures:
        return None
    probe = dict(c.spec.get(probe_kind) or {})
    wref = workload_ref(ev, pod)
    message = str(failures[0].get("message") or "")
    cites: list[Citation] = [cite_event(failures[0])]
    if probe_kind == "readinessProbe":
        if not c.running or c.ready:
            return None  # not running: another analyzer explains it; ready now: it recovered
        cites.insert(0, cite_field(pod, f"{c.status_path}.ready", False))
        confidence = 0.92
        effect = "the container runs but never becomes Ready, so Services send it no traffic"
    else:
        kills = [
            e
            for e in container_events(ev, pod, c.name, reason="Killing")
            if f"failed {label.lower()} probe" in str(e.get("message", "")) and is_recent(ev, e, RECENT)
        ]
        if not kills and c.restarts == 0:
            return None  # failing but not yet over the threshold
        cites += [cite_event(e) for e in kills[:1]]
        term, path = c.recent_termination()
        if term:
            cites.append(cite_field(pod, f"{path}.exitCode", term.get("exitCode")))
            if term.get("reason") == "OOMKilled":
                return None
        confidence = 0.93 if kills else 0.75
        effect = f"the kubelet kills and restarts the container ({c.restarts} restart(s) so far)"
    target = _probe_target(probe)
    summary = (
        f"The {label.lower()} probe of container {c.name} in {on_pod(wref, pod)} fails"
        f"{f' on {target}' if target else ''}: {quote(message.split(':', 1)[-1].strip(), 140)!r}; {effect}."
    )
    return Finding(
        category=category,
        summary=summary,
        confidence=confidence,
        severity="high" if category == "liveness_probe_failure" else _readiness_severity(ev),
        subject=wref,
        citations=cites,
        recommendations=[_fix(c, wref, probe_kind, probe, message)],
    )


def _probe_target(probe: dict[str, Any]) -> str:
    if "httpGet" in probe:
        hg = probe["httpGet"]
        return f"HTTP {hg.get('path', '/')} port {hg.get('port')}"
    if "tcpSocket" in probe:
        return f"TCP port {probe['tcpSocket'].get('port')}"
    if "grpc" in probe:
        return f"gRPC port {probe['grpc'].get('port')}"
    if "exec" in probe:
        return "command " + " ".join(map(str, probe["exec"].get("command") or []))
    return ""


def _fix(
    c: ContainerView, wref: ObjectRef, probe_kind: str, probe: dict[str, Any], message: str
) -> Recommendation:
    ports = [p for p in c.spec.get("ports") or [] if p.get("containerPort")]
    declared = {p.get("containerPort") for p in ports} | {p.get("name") for p in ports if p.get("name")}
    handler = "httpGet" if "httpGet" in probe else "tcpSocket" if "tcpSocket" in probe else None
    port = (probe.get(handler) or {}).get("port") if handler else None
    refused = "connection refused" in message or "connect: " in message
    if handler and port is not None and ports and port not in declared and refused:
        right = ports[0]["containerPort"]
        return Recommendation(
            "fix_probe_port",
            f"Point the {probe_kind} of container {c.name} in {describe(wref)} at port {right} (the port the "
            f"container declares); it probes port {port}, where nothing listens.",
            wref,
            container_patch(wref.kind, c, {probe_kind: {handler: {"port": right}}}),
        )
    status = re.search(r"statuscode: (\d+)", message)
    if status and handler == "httpGet":
        path = probe["httpGet"].get("path", "/")
        return Recommendation(
            "fix_probe_path",
            f"The {probe_kind} of container {c.name} in {describe(wref)} requests {path}, which answers "
            f"{status.group(1)}: probe a path the application serves with 200 (its health endpoint).",
            wref,
        )
    if refused and handler and port is not None:
        return Recommendation(
            "fix_probe_port",
            f"Nothing listens on port {port} that the {probe_kind} of container {c.name} in {describe(wref)} "
            "checks: probe the port the application really serves, or fix the application's listen address.",
            wref,
        )
    delay = int(probe.get("initialDelaySeconds") or 0)
    return Recommendation(
        "tune_probe",
        f"Make the {probe_kind} of container {c.name} in {describe(wref)} match the application: check what "
        "it "
        f"tests, and if the application is just slow to start raise initialDelaySeconds (now {delay}) or "
        "use a "
        "startupProbe.",
        wref,
    )


def _readiness_severity(ev: Evidence) -> Any:
    return "critical" if outage_severity(ev) == "critical" else "medium"


ANALYZER = Analyzer("probes", ("readiness_probe_failure", "liveness_probe_failure"), analyze)
