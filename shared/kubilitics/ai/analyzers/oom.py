"""Containers the kernel kills for exceeding their memory limit (OOMKilled, exit 137)."""

from __future__ import annotations

from typing import Any

from kubilitics.ai.analyzers._common import (
    container_events,
    container_patch,
    describe,
    is_recent,
    on_pod,
    outage_severity,
    workload_ref,
)
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_event, cite_field
from kubilitics.ai.kube_json import (
    ContainerView,
    container_limits,
    container_requests,
    containers,
    format_bytes,
    parse_quantity,
)


def analyze(ev: Evidence) -> list[Finding]:
    findings: dict[tuple[str, str], Finding] = {}
    for pod in ev.pods:
        for c in containers(pod):
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
    cites: list[Citation] = []
    for term, path in (
        (c.terminated, f"{c.status_path}.state.terminated"),
        (c.last_terminated, f"{c.status_path}.lastState.terminated"),
    ):
        if term.get("reason") == "OOMKilled":
            cites.append(cite_field(pod, f"{path}.reason", "OOMKilled"))
            cites.append(cite_field(pod, f"{path}.exitCode", term.get("exitCode", 137)))
            break
    kills = [e for e in container_events(ev, pod, c.name, reason="OOMKilling") if is_recent(ev, e, 3600)]
    cites += [cite_event(e) for e in kills[:1]]
    if not cites:
        return None
    wref = workload_ref(ev, pod)
    limit_raw = container_limits(c.spec, "memory")
    limit = parse_quantity(limit_raw)
    request = parse_quantity(container_requests(c.spec, "memory"))
    restarts = f" and has restarted {c.restarts} time(s)" if c.restarts else ""
    if limit:
        cites.append(cite_field(pod, f"{c.spec_path}.resources.limits.memory", limit_raw))
        proposed = format_bytes(limit * 2)
        fields: dict[str, Any] = {"resources": {"limits": {"memory": proposed}}}
        if request and request > limit:
            fields["resources"]["requests"] = {"memory": proposed}
        summary = (
            f"Container {c.name} of {on_pod(wref, pod)} uses more memory than its limit of "
            f"{limit_raw}: the kernel killed it (OOMKilled, exit 137){restarts}."
        )
        rec = Recommendation(
            "increase_memory_limit",
            f"Raise the memory limit of container {c.name} in {describe(wref)} from {limit_raw} to "
            f"{proposed} "
            "(measure the real peak with kubectl top pod and keep ~25% headroom), or reduce what the "
            "application holds in memory.",
            wref,
            container_patch(wref.kind, c, fields),
        )
    else:
        summary = (
            f"Container {c.name} of {on_pod(wref, pod)} was OOMKilled{restarts}; it has no "
            "memory limit, so the node itself ran out of memory."
        )
        rec = Recommendation(
            "set_memory_limit",
            f"Give container {c.name} of {describe(wref)} a memory request and limit that match what it "
            "really uses, "
            "so the scheduler places it on a node with that much memory free.",
            wref,
        )
    return Finding(
        category="oom_killed",
        summary=summary,
        confidence=0.96 if len(cites) > 1 else 0.85,
        severity=outage_severity(ev),
        subject=wref,
        citations=cites,
        recommendations=[rec],
    )


ANALYZER = Analyzer("oom", ("oom_killed",), analyze)
