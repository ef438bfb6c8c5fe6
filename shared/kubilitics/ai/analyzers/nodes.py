"""Node trouble: a node that is not ready (kubelet down or unreachable), and evictions because a node
ran short of memory, disk or PIDs (pods Evicted, node pressure conditions)."""

from __future__ import annotations

import re
from typing import Any

from kubilitics.ai.analyzers._common import container_patch, describe, outage_severity, workload_of
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_event, cite_field
from kubilitics.ai.kube_json import (
    containers,
    format_bytes,
    name_of,
    node_condition,
    parse_quantity,
    pod_node,
)

PRESSURES = {"MemoryPressure": "memory", "DiskPressure": "disk", "PIDPressure": "PIDs"}
EVICTED_USAGE = re.compile(r"Container (\S+) was using (\S+?), request is (\S+?)[,.]")
LOW_ON = re.compile(r"low on resource: ([a-z-]+)")


def analyze(ev: Evidence) -> list[Finding]:
    findings: list[Finding] = []
    for node in _nodes_in_scope(ev):
        finding = _not_ready(ev, node)
        if finding:
            findings.append(finding)
        pressure = _pressure(ev, node)
        if pressure:
            findings.append(pressure)
    findings += _evicted_pods(ev)
    return findings


def _nodes_in_scope(ev: Evidence) -> list[dict[str, Any]]:
    """The target node, or the nodes the target's pods are bound to (not every node in the list)."""
    if ev.target.kind == "Node":
        target = ev.target_object
        return [target] if target else []
    names = {pod_node(p) for p in ev.pods if pod_node(p)}
    return [n for n in ev.of_kind("Node") if name_of(n) in names]


def _not_ready(ev: Evidence, node: dict[str, Any]) -> Finding | None:
    ready = node_condition(node, "Ready")
    if not ready or ready.get("status") == "True":
        return None
    ref = ObjectRef.of(node)
    status, reason, message = ready.get("status"), ready.get("reason", ""), ready.get("message", "")
    cites: list[Citation] = [cite_field(node, "status.conditions[Ready]", f"{status} ({reason}): {message}")]
    since = ready.get("lastHeartbeatTime")
    taints = [
        t
        for t in (node.get("spec") or {}).get("taints") or []
        if t.get("key", "").startswith("node.kubernetes.io/")
    ]
    if taints:
        cites.append(
            cite_field(node, "spec.taints", ", ".join(f"{t['key']}:{t.get('effect')}" for t in taints))
        )
    cites += [cite_event(e) for e in ev.events_for(node, reason="NodeNotReady")[:1]]
    affected = [p for p in ev.pods if pod_node(p) == name_of(node)]
    for pod in affected[:2]:
        cites += [cite_event(e) for e in ev.events_for(pod, reason="NodeNotReady")[:1]]
    if ev.target.kind == "Node":
        affected_names = [
            p["metadata"]["name"] for p in ev.nearby_pods if (p.get("spec") or {}).get("nodeName")
        ]
    else:
        affected_names = [name_of(p) for p in affected]
    why = (
        "the kubelet stopped reporting (node unreachable)"
        if status == "Unknown"
        else f"the kubelet reports {reason}"
    )
    what = f"; {len(affected_names)} pod(s) on it are cut off" if affected_names else ""
    subject = ref
    return Finding(
        category="node_not_ready",
        summary=(
            f"Node {ref.name} is not ready (Ready={status}): {why}{f' since {since}' if since else ''}{what}."
        ),
        confidence=0.96,
        severity="critical",
        subject=subject,
        citations=cites,
        recommendations=[
            Recommendation(
                "cordon_node",
                f"Cordon node {ref.name} so nothing new is scheduled there (kubectl cordon {ref.name}).",
                ref,
                {"spec": {"unschedulable": True}},
            ),
            Recommendation(
                "repair_node",
                f"Restore the kubelet on {ref.name} (check the machine, its network and `journalctl -u "
                "kubelet`) or "
                "replace the node; its pods are evicted and rescheduled after their NoExecute toleration "
                "(300 s by default) expires.",
                ref,
            ),
        ],
    )


def _pressure(ev: Evidence, node: dict[str, Any]) -> Finding | None:
    hot: list[tuple[str, dict[str, Any]]] = []
    for ctype in PRESSURES:
        cond = node_condition(node, ctype)
        if cond and cond.get("status") == "True":
            hot.append((ctype, cond))
    if not hot:
        return None
    ref = ObjectRef.of(node)
    cites = [
        cite_field(node, f"status.conditions[{t}]", f"True ({c.get('reason')}): {c.get('message')}")
        for t, c in hot
    ]
    cites += [
        cite_event(e)
        for e in ev.events_for(node)[:3]
        if e.get("reason")
        in ("EvictionThresholdMet", "NodeHasInsufficientMemory", "NodeHasDiskPressure", "FreeDiskSpaceFailed")
    ]
    what = " and ".join(PRESSURES[t] for t, _ in hot)
    return Finding(
        category="eviction_pressure",
        summary=f"Node {ref.name} is short of {what} ({', '.join(t for t, _ in hot)}): the kubelet evicts "
        "pods from it.",
        confidence=0.85,
        severity="high",
        subject=ref,
        citations=cites,
        recommendations=[
            Recommendation(
                "relieve_node_pressure",
                f"Free {what} on node {ref.name} or add capacity; give the pods running there requests and "
                "limits that "
                "match what they use so the scheduler does not overcommit the node.",
                ref,
            )
        ],
    )


def _evicted_pods(ev: Evidence) -> list[Finding]:
    findings: dict[str, Finding] = {}
    candidates = ev.pods + (ev.nearby_pods if ev.target.kind == "Node" else [])
    for pod in candidates:
        status = pod.get("status") or {}
        if status.get("reason") != "Evicted":
            continue
        message = str(status.get("message") or "")
        workload = workload_of(ev, pod) if pod in ev.pods else pod
        wref = ObjectRef.of(workload)
        cites: list[Citation] = [
            cite_field(pod, "status.reason", "Evicted"),
            cite_field(pod, "status.message", message),
        ]
        cites += [cite_event(e) for e in ev.events_for(pod, reason="Evicted")[:1]]
        node = ev.get("Node", pod_node(pod) or "")
        for t in PRESSURES:
            cond = node_condition(node, t) if node else None
            if cond and cond.get("status") == "True":
                cites.append(cite_field(node or {}, f"status.conditions[{t}]", "True"))
        low = LOW_ON.search(message)
        resource = low.group(1) if low else "a resource"
        recs = [
            Recommendation(
                "relieve_node_pressure",
                f"Node {pod_node(pod) or '?'} ran low on {resource}: add capacity or move memory-hungry "
                "pods elsewhere.",
                ObjectRef("Node", pod_node(pod) or "?"),
            )
        ]
        usage = EVICTED_USAGE.search(message)
        if usage and resource == "memory" and pod in ev.pods:
            cname, used, request = usage.groups()
            used_bytes = parse_quantity(used)
            view = next((c for c in containers(pod) if c.name == cname), None)
            if used_bytes and view is not None:
                proposed = format_bytes(used_bytes * 1.25)
                recs.insert(
                    0,
                    Recommendation(
                        "set_memory_request",
                        f"Container {cname} of {describe(wref)} used {used} of memory with a request of "
                        f"{request}: set "
                        f"its memory request (and limit) to about {proposed} so the scheduler reserves what "
                        "it uses.",
                        wref,
                        container_patch(
                            wref.kind,
                            view,
                            {"resources": {"requests": {"memory": proposed}, "limits": {"memory": proposed}}},
                        ),
                    ),
                )
        summary = (
            f"Pod {name_of(pod)} of {describe(wref)} was evicted from node {pod_node(pod) or '?'}: "
            f"{message or 'the node ran out of resources'}"
        )
        if str(wref) in findings:
            findings[str(wref)].citations.extend(cites[:2])
            continue
        findings[str(wref)] = Finding(
            category="eviction_pressure",
            summary=summary,
            confidence=0.95 if message else 0.85,
            severity=outage_severity(ev) if ev.pods else "high",
            subject=wref,
            citations=cites,
            recommendations=recs,
        )
    return list(findings.values())


ANALYZER = Analyzer("nodes", ("node_not_ready", "eviction_pressure"), analyze)
