"""Pods the scheduler cannot place (Pending, Unschedulable): the scheduler says why per node.

"0/3 nodes are available: 1 node(s) had untolerated taint {...}, 2 Insufficient cpu." is read as a
count of nodes per reason; the reason that rules out the most nodes is the finding (a control-plane
taint is ignored when another reason exists: nobody expects workloads there). A taint that marks a
node unreachable or under memory pressure is a node problem, not a toleration problem.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from kubilitics.ai.analyzers._common import (
    container_patch,
    describe,
    on_pod,
    outage_severity,
    template_patch,
    workload_ref,
)
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_event, cite_field
from kubilitics.ai.kube_json import (
    condition,
    containers,
    labels_of,
    name_of,
    parse_quantity,
    pod_finished,
    pod_node,
    pod_template,
    selector_matches,
)
from kubilitics.ai.taxonomy import precedence

NODE_TAINTS = {
    "node.kubernetes.io/unreachable": "node_not_ready",
    "node.kubernetes.io/not-ready": "node_not_ready",
    "node.kubernetes.io/memory-pressure": "eviction_pressure",
    "node.kubernetes.io/disk-pressure": "eviction_pressure",
    "node.kubernetes.io/pid-pressure": "eviction_pressure",
}
CONTROL_PLANE = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
TAINT = re.compile(r"taints?\s*\{([^:}]+):\s*([^}]*)\}")
ITEM_SPLIT = re.compile(r",\s+(?=\d+\s)")


def parse_reasons(message: str) -> list[tuple[int, str]]:
    """(node count, reason) pairs of a FailedScheduling message, before the preemption part."""
    text = message.split("preemption:", 1)[0]
    total = re.search(r"(\d+)/(\d+) nodes are available", text)
    n_nodes = int(total.group(2)) if total else 0
    if "nodes are available:" in text:
        text = text.split("nodes are available:", 1)[1]
    text = text.strip().rstrip(".").strip()
    # The scheduler ends the list with ". " before free-form notes ("no new claims to deallocate").
    text = re.split(r"\.\s+(?=[a-z])", text)[0]
    out = []
    for item in ITEM_SPLIT.split(text):
        item = item.strip().rstrip(".")
        m = re.match(r"(\d+)\s+(.*)", item)
        out.append((int(m.group(1)), m.group(2)) if m else (n_nodes, item))
    return [(n, r) for n, r in out if r]


def categorize(reason: str) -> str | None:
    low = reason.lower()
    if "insufficient cpu" in low:
        return "insufficient_cpu"
    if "insufficient memory" in low:
        return "insufficient_memory"
    if (
        "node affinity/selector" in low
        or "didn't match node selector" in low
        or "node(s) didn't match pod's node" in low
    ):
        return "node_selector_mismatch"
    if "pod affinity" in low or "anti-affinity" in low:
        return "node_selector_mismatch"
    if "taint" in low:
        m = TAINT.search(reason)
        key = m.group(1).strip() if m else ""
        return NODE_TAINTS.get(key, "untolerated_taint")
    if "unbound immediate persistentvolumeclaims" in low or (
        "persistentvolumeclaim" in low and "not found" in low
    ):
        return "unbound_pvc"
    if "were unschedulable" in low:
        return "untolerated_taint"  # cordoned nodes carry node.kubernetes.io/unschedulable
    return None


def untolerated_taints(
    pod: dict[str, Any], nodes: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(node, taint) pairs that keep the pod off the nodes its nodeSelector allows.

    Recent schedulers say only "had untolerated taint(s)"; the nodes say which.
    """
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    out = []
    for node in nodes:
        if not _selector_allows(pod, node):
            continue
        for taint in (node.get("spec") or {}).get("taints") or []:
            if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(taint, tolerations):
                out.append((node, taint))
    return out


def _selector_allows(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    """nodeSelector and required node affinity (terms ORed, expressions ANDed) against the node."""
    spec = pod.get("spec") or {}
    labels = labels_of(node)
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(
        selector_matches(
            {
                "matchExpressions": [
                    e
                    for e in term.get("matchExpressions") or []
                    if e.get("operator") in ("In", "NotIn", "Exists", "DoesNotExist")
                ]
            },
            labels,
        )
        for term in terms
    )


def candidate_nodes(pod: dict[str, Any], nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes the pod could run on if they had room: selector matches, taints tolerated, not cordoned."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    return [
        n
        for n in nodes
        if _selector_allows(pod, n)
        and not (n.get("spec") or {}).get("unschedulable")
        and all(
            _tolerated(t, tolerations)
            for t in (n.get("spec") or {}).get("taints") or []
            if t.get("effect") in ("NoSchedule", "NoExecute")
        )
    ]


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol.get("key") == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _taint_key(reason: str, pod: dict[str, Any], nodes: list[dict[str, Any]]) -> str:
    m = TAINT.search(reason)
    if m:
        return m.group(1).strip()
    found = untolerated_taints(pod, nodes)
    return str(found[0][1].get("key")) if found else ""


def analyze(ev: Evidence) -> list[Finding]:
    findings: dict[tuple[str, str], Finding] = {}
    for pod in ev.pods:
        if pod_node(pod) or pod_finished(pod):
            continue
        message, cites = _scheduler_says(ev, pod)
        if not message:
            continue
        reasons = parse_reasons(message)
        nodes = ev.of_kind("Node")
        selected = [n for n in nodes if _selector_allows(pod, n)]
        by_category: Counter[str] = Counter()
        real = [(n, r) for n, r in reasons if not any(cp in r for cp in CONTROL_PLANE)] or reasons
        for n, reason in real:
            category = categorize(reason)
            if category == "untolerated_taint" and "taint" in reason:
                taint_key = _taint_key(reason, pod, nodes)
                if nodes and not taint_key and not TAINT.search(reason):
                    continue  # the tainted nodes are ones the selector rules out anyway
                category = NODE_TAINTS.get(taint_key, category)
            if category:
                by_category[category] += max(n, 1)
        # The scheduler names one reason per node, the first filter that failed: a node that is both
        # tainted and of the wrong zone counts as "tainted". The node list settles it: when no node
        # matches the selector, the selector is the cause; when some do, what rules those out is.
        spec = pod.get("spec") or {}
        if nodes and (spec.get("nodeSelector") or (spec.get("affinity") or {}).get("nodeAffinity")):
            if not selected:
                by_category = Counter({"node_selector_mismatch": len(nodes)})
            elif len(by_category) > 1:
                by_category.pop("node_selector_mismatch", None)
        elif len(by_category) > 1:
            by_category.pop("node_selector_mismatch", None)
        if not by_category:
            continue
        category = sorted(by_category, key=lambda k: (-by_category[k], precedence(k)))[0]
        counted = sum(by_category.values())
        covered = by_category[category] / max(1, counted)
        confidence = 0.95 if covered >= 0.99 else 0.7 + 0.2 * covered
        if category == "unbound_pvc":
            confidence = min(confidence, 0.8)  # the pvc analyzer says why the claim is unbound
        finding = _finding(ev, pod, category, reasons, message, cites, confidence)
        key = (str(finding.subject), category)
        if key not in findings:
            findings[key] = finding
    return list(findings.values())


def _scheduler_says(ev: Evidence, pod: dict[str, Any]) -> tuple[str, list[Citation]]:
    cites: list[Citation] = []
    message = ""
    cond = condition(pod, "PodScheduled")
    if cond and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
        message = str(cond.get("message") or "")
        cites.append(cite_field(pod, "status.conditions[PodScheduled].message", message))
    events = ev.events_for(pod, reason="FailedScheduling")
    if events:
        message = message or str(events[0].get("message") or "")
        cites.append(cite_event(events[0]))
    return message, cites


def _finding(
    ev: Evidence,
    pod: dict[str, Any],
    category: str,
    reasons: list[tuple[int, str]],
    message: str,
    cites: list[Citation],
    confidence: float,
) -> Finding:
    wref = workload_ref(ev, pod)
    nodes = ev.of_kind("Node")
    where = f"{on_pod(wref, pod)}"
    recs: list[Recommendation] = []
    if category in ("insufficient_cpu", "insufficient_memory"):
        resource = "cpu" if category == "insufficient_cpu" else "memory"
        summary, recs = _capacity(ev, pod, wref, resource, nodes, cites)
        if recs and recs[0].action.startswith("reduce_"):
            confidence = max(confidence, 0.95)  # larger than any node it may use: it can never fit
    elif category == "node_selector_mismatch":
        summary, recs = _selector(pod, wref, nodes, cites, reasons)
    elif category in ("untolerated_taint", "node_not_ready", "eviction_pressure"):
        taints = [
            (m.group(1).strip(), m.group(2).strip()) for _, r in reasons for m in [TAINT.search(r)] if m
        ]
        taints += [(str(t.get("key")), str(t.get("value") or "")) for _, t in untolerated_taints(pod, nodes)]
        wanted = [t for t in taints if NODE_TAINTS.get(t[0], "untolerated_taint") == category]
        taint = (wanted or taints or [("", "")])[0]
        tainted = [
            n
            for n in nodes
            if any(t.get("key") == taint[0] for t in (n.get("spec") or {}).get("taints") or [])
        ]
        cites += [cite_field(n, "spec.taints", _taints_text(n)) for n in tainted[:3]]
        if category == "node_not_ready":
            summary = (
                f"{where} cannot be scheduled: the node(s) it may run on are not ready (taint {taint[0]})."
            )
            recs = [
                Recommendation(
                    "repair_node",
                    "Bring back node(s) "
                    f"{', '.join(name_of(n) for n in tainted) or 'that carry ' + taint[0]} "
                    "(kubelet down or unreachable), or let the pod run elsewhere by relaxing its "
                    "nodeSelector.",
                    wref,
                )
            ]
        elif category == "eviction_pressure":
            summary = (
                f"{where} cannot be scheduled: the nodes are under resource pressure (taint {taint[0]})."
            )
            recs = [
                Recommendation(
                    "relieve_node_pressure",
                    f"Free memory/disk on the nodes tainted {taint[0]} or add "
                    "nodes; set requests that match real usage so pods spread out.",
                    wref,
                )
            ]
        else:
            summary = (
                f"{where} cannot be scheduled: the nodes carry taint {taint[0]}"
                f"{'=' + taint[1] if taint[1] else ''} and the pod has no matching toleration."
            )
            effect = next(
                (
                    t.get("effect")
                    for n in tainted
                    for t in (n.get("spec") or {}).get("taints") or []
                    if t.get("key") == taint[0]
                ),
                "NoSchedule",
            )
            toleration = {"key": taint[0], "operator": "Exists", "effect": effect}
            template = pod_template(ev.get_ref(wref) or {}) if wref.kind != "Pod" else pod
            existing = list((template.get("spec") or {}).get("tolerations") or [])
            recs = [
                Recommendation(
                    "add_toleration",
                    f"Add a toleration for {taint[0]} ({effect}) to {describe(wref)} if it is meant to run "
                    "on those nodes, "
                    "or remove the taint from a node it should use.",
                    wref,
                    template_patch(wref.kind, {"tolerations": [*existing, toleration]}),
                )
            ]
            if "were unschedulable" in message:
                summary = f"{where} cannot be scheduled: the nodes are cordoned (unschedulable)."
                recs = [
                    Recommendation("uncordon_node", "Uncordon a node (kubectl uncordon) or add nodes.", wref)
                ]
    else:  # unbound_pvc: the pvc analyzer says why the claim is unbound
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in (pod.get("spec") or {}).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")
        ]
        summary = (
            f"{where} cannot be scheduled: its PersistentVolumeClaim(s) {', '.join(claims)} are not bound."
        )
        recs = [
            Recommendation(
                "bind_pvc",
                f"Make PersistentVolumeClaim(s) {', '.join(claims)} bindable: a "
                "StorageClass that exists (or a default one), or a matching PersistentVolume.",
                wref,
            )
        ]
    return Finding(
        category=category,
        summary=summary,
        confidence=confidence,
        severity=outage_severity(ev),
        subject=wref,
        citations=cites,
        recommendations=recs,
    )


def _capacity(
    ev: Evidence,
    pod: dict[str, Any],
    wref: ObjectRef,
    resource: str,
    nodes: list[dict[str, Any]],
    cites: list[Citation],
) -> tuple[str, list[Recommendation]]:
    cpu = resource == "cpu"
    requests = [
        (
            c,
            parse_quantity(((c.spec.get("resources") or {}).get("requests") or {}).get(resource), cpu=cpu)
            or 0.0,
        )
        for c in containers(pod, init=False)
    ]
    total = sum(v for _, v in requests)
    biggest = max(requests, key=lambda cv: cv[1], default=None)
    nodes = candidate_nodes(pod, nodes) or nodes
    allocatable = [
        parse_quantity(((n.get("status") or {}).get("allocatable") or {}).get(resource), cpu=cpu) or 0.0
        for n in nodes
    ]
    largest = max(allocatable, default=0.0)
    shown = _fmt(total, cpu)
    if biggest and biggest[1]:
        cites.append(
            cite_field(
                pod,
                f"{biggest[0].spec_path}.resources.requests.{resource}",
                ((biggest[0].spec.get("resources") or {}).get("requests") or {}).get(resource),
            )
        )
    if nodes:
        cites.append(
            cite_field(
                nodes[0],
                f"status.allocatable.{resource}",
                ((nodes[0].get("status") or {}).get("allocatable") or {}).get(resource),
            )
        )
    if largest and total > largest and biggest:
        proposed = _fmt(largest / 2, cpu)
        summary = (
            f"{describe(wref)} requests {shown} {resource} per pod, more than any node can offer (the "
            "largest "
            f"has {_fmt(largest, cpu)} allocatable), so its pods stay Pending."
        )
        recs = [
            Recommendation(
                f"reduce_{resource}_request",
                f"Lower the {resource} request of container {biggest[0].name} in {describe(wref)} from "
                f"{_fmt(biggest[1], cpu)} to {proposed} (what the application needs; no node has more than "
                f"{_fmt(largest, cpu)}), or add nodes with more {resource}.",
                wref,
                container_patch(wref.kind, biggest[0], {"resources": {"requests": {resource: proposed}}}),
            )
        ]
    else:
        summary = (
            f"{describe(wref)} requests {shown} {resource} per pod and no node has that much {resource} free "
            "(the other pods' requests use it), so its pods stay Pending."
        )
        recs = [
            Recommendation(
                f"free_{resource}_capacity",
                f"Add nodes (or larger nodes), lower the {resource} requests of {describe(wref)} ({shown} "
                "per pod) to what "
                "it really uses, or scale down other workloads.",
                wref,
            )
        ]
    return summary, recs


def _selector(
    pod: dict[str, Any],
    wref: ObjectRef,
    nodes: list[dict[str, Any]],
    cites: list[Citation],
    reasons: list[tuple[int, str]],
) -> tuple[str, list[Recommendation]]:
    selector = dict((pod.get("spec") or {}).get("nodeSelector") or {})
    where = describe(wref)
    if not selector:
        affinity = (
            "pod affinity/anti-affinity"
            if any("affinity rules" in r for _, r in reasons)
            else "node affinity"
        )
        cites.append(cite_field(pod, "spec.affinity", "set"))
        return (
            f"{where} cannot be scheduled: no node satisfies its {affinity}.",
            [
                Recommendation(
                    "fix_affinity",
                    f"Relax the {affinity} rules of {where} or label nodes to match them.",
                    wref,
                )
            ],
        )
    unmatched = {k: v for k, v in selector.items() if not any(labels_of(n).get(k) == v for n in nodes)}
    if not nodes:
        unmatched = selector
    cites.append(cite_field(pod, "spec.nodeSelector", ", ".join(f"{k}={v}" for k, v in selector.items())))
    recs: list[Recommendation] = []
    for key, value in unmatched.items():
        seen = sorted({labels_of(n)[key] for n in nodes if key in labels_of(n)})
        if seen:
            closest = min(seen, key=lambda s: _distance(s, value))
            recs.append(
                Recommendation(
                    "fix_node_selector",
                    f"Change nodeSelector {key}={value} of {where} to {key}={closest}: nodes have {key} = "
                    f"{', '.join(seen)}, none has {value}.",
                    wref,
                    template_patch(wref.kind, {"nodeSelector": {key: closest}}),
                )
            )
        else:
            recs.append(
                Recommendation(
                    "fix_node_selector",
                    f"No node has label {key}: remove nodeSelector {key}={value} from {where}, or label the "
                    "nodes it "
                    f"should run on (kubectl label node <node> {key}={value}).",
                    wref,
                    template_patch(wref.kind, {"nodeSelector": {key: None}}),
                )
            )
    terms = ", ".join(f"{k}={v}" for k, v in (unmatched or selector).items())
    summary = f"{where} cannot be scheduled: no node has the label(s) {terms} that its nodeSelector requires."
    return summary, recs or [
        Recommendation("fix_node_selector", f"Fix nodeSelector {terms} of {where}.", wref)
    ]


def _taints_text(node: dict[str, Any]) -> str:
    return ", ".join(
        f"{t.get('key')}{'=' + t['value'] if t.get('value') else ''}:{t.get('effect')}"
        for t in (node.get("spec") or {}).get("taints") or []
    )


def _fmt(value: float, cpu: bool) -> str:
    if cpu:
        return f"{value:g}" if value >= 1 and value == int(value) else f"{round(value * 1000)}m"
    for unit, size in (("Gi", 1024**3), ("Mi", 1024**2)):
        if value >= size:
            return f"{value / size:.0f}{unit}" if value % size == 0 else f"{int(value // size)}{unit}"
    return f"{int(value)}"


def _distance(a: str, b: str) -> int:
    """Edit distance: the node label value a typo was most likely meant to be."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


ANALYZER = Analyzer(
    "scheduling",
    ("insufficient_cpu", "insufficient_memory", "node_selector_mismatch", "untolerated_taint"),
    analyze,
)
