"""Containers that cannot run their command: an executable the image does not have (StartError,
RunContainerError, exit 127) or one built for another CPU architecture ("exec format error")."""

from __future__ import annotations

import re
from typing import Any

from kubilitics.ai.analyzers._common import (
    container_events,
    crash_logs,
    describe,
    is_recent,
    outage_severity,
    quote,
    workload_ref,
)
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_event, cite_field, cite_log
from kubilitics.ai.kube_json import ContainerView, containers, pod_node

NOT_IN_IMAGE = re.compile(
    r"(executable file not found in \$PATH|exec: \"[^\"]+\": stat [^:]+: no such file or directory|"
    r"no such file or directory: unknown|exec: \"[^\"]+\": permission denied)",
    re.IGNORECASE,
)
EXE = re.compile(r'exec: "([^"]+)"')
SHELL_NOT_FOUND = re.compile(
    r"(?:^|\s)(?:sh|bash|/bin/sh|/bin/bash|env)?:?\s*(?:line \d+: )?(\S+): (?:command )?not found",
    re.IGNORECASE,
)
EXEC_FORMAT = re.compile(r"exec format error", re.IGNORECASE)


def analyze(ev: Evidence) -> list[Finding]:
    findings: list[Finding] = []
    for pod in ev.pods:
        for c in containers(pod):
            f = _exec_format(ev, pod, c) or _not_in_image(ev, pod, c)
            if f:
                findings.append(f)
    return findings


def _not_in_image(ev: Evidence, pod: dict[str, Any], c: ContainerView) -> Finding | None:
    cites: list[Citation] = []
    message = ""
    term, path = c.recent_termination()
    waiting = c.waiting
    if waiting.get("reason") in (
        "RunContainerError",
        "CreateContainerError",
        "StartError",
    ) and NOT_IN_IMAGE.search(str(waiting.get("message") or "")):
        message = str(waiting.get("message"))
        cites.append(
            cite_field(pod, f"{c.status_path}.state.waiting", f"{waiting['reason']}: {quote(message)}")
        )
    if term and NOT_IN_IMAGE.search(str(term.get("message") or "")):
        message = message or str(term.get("message"))
        cites.append(
            cite_field(
                pod,
                path,
                f"{term.get('reason')} (exit {term.get('exitCode')}): {quote(str(term.get('message')))}",
            )
        )
    for event in container_events(ev, pod, c.name, reason="Failed"):
        if is_recent(ev, event, 900) and NOT_IN_IMAGE.search(str(event.get("message"))):
            message = message or str(event.get("message"))
            cites.append(cite_event(event))
            break
    wref = workload_ref(ev, pod)
    argv = [*(c.spec.get("command") or []), *(c.spec.get("args") or [])]
    if message:
        exe_match = EXE.search(message)
        exe = exe_match.group(1) if exe_match else (argv[0] if argv else "?")
        return _finding(ev, pod, c, wref, exe, cites, 0.96, "the runtime cannot find it in the image")
    # A shell in the container could not find a command: exit 127 and "not found" in its output.
    if term and term.get("exitCode") == 127:
        cites.append(cite_field(pod, f"{path}.exitCode", 127))
        for tail in crash_logs(ev, pod, c):
            hits = [line for line in tail.lines if SHELL_NOT_FOUND.search(line)]
            if hits:
                cites.append(cite_log(tail, hits[-1]))
                m = SHELL_NOT_FOUND.search(hits[-1])
                exe = m.group(1) if m else "?"
                return _finding(ev, pod, c, wref, exe, cites, 0.9, "the shell reports it is not found")
        exe = argv[0] if argv else "?"
        return _finding(
            ev, pod, c, wref, exe, cites, 0.7, "it exits with 127, the shell's 'command not found'"
        )
    return None


def _finding(
    ev: Evidence,
    pod: dict[str, Any],
    c: ContainerView,
    wref: Any,
    exe: str,
    cites: list[Citation],
    confidence: float,
    how: str,
) -> Finding:
    image = c.spec.get("image")
    has_command = bool(c.spec.get("command"))
    advice = (
        f"Change the command of container {c.name} in {describe(wref)}: {exe!r} is not in image {image}. "
        + (
            "Remove `command` to run the image's own entrypoint, or use a path that exists in the image."
            if has_command
            else "Use an executable the image contains, or an image that contains it."
        )
    )
    return Finding(
        category="command_not_found",
        summary=(
            f"Container {c.name} of {describe(wref)} runs {exe!r}, but {how}; the container never starts "
            f"and restarts {c.restarts} time(s)."
        ),
        confidence=confidence,
        severity=outage_severity(ev),
        subject=wref,
        citations=cites,
        recommendations=[Recommendation("fix_container_command", advice, wref)],
    )


def _exec_format(ev: Evidence, pod: dict[str, Any], c: ContainerView) -> Finding | None:
    cites: list[Citation] = []
    term, path = c.recent_termination()
    if term and EXEC_FORMAT.search(str(term.get("message") or "")):
        cites.append(cite_field(pod, f"{path}.message", quote(str(term.get("message")))))
    for tail in crash_logs(ev, pod, c):
        hits = [line for line in tail.lines if EXEC_FORMAT.search(line)]
        if hits:
            cites.append(cite_log(tail, hits[-1]))
            break
    for event in container_events(ev, pod, c.name, reason="Failed"):
        if EXEC_FORMAT.search(str(event.get("message"))):
            cites.append(cite_event(event))
            break
    if not cites:
        return None
    wref = workload_ref(ev, pod)
    node = ev.get("Node", pod_node(pod) or "")
    arch = ((node or {}).get("status", {}).get("nodeInfo") or {}).get("architecture")
    if arch:
        cites.append(cite_field(node or {}, "status.nodeInfo.architecture", arch))
    image = c.spec.get("image")
    on = f" (node {pod_node(pod)} is {arch})" if arch else ""
    return Finding(
        category="exec_format_error",
        summary=(
            f"Container {c.name} of {describe(wref)} fails with 'exec format error': image {image} is not "
            f"built for the node's CPU architecture{on}."
        ),
        confidence=0.95,
        severity=outage_severity(ev),
        subject=wref,
        citations=cites,
        recommendations=[
            Recommendation(
                "use_multiarch_image",
                f"Use a build of {image} for {arch or 'the nodes'} (a multi-arch image), or "
                "schedule "
                f"{describe(wref)} onto nodes of the image's architecture with a nodeSelector on "
                "kubernetes.io/arch.",
                wref,
            )
        ],
    )


ANALYZER = Analyzer("command", ("command_not_found", "exec_format_error"), analyze)
