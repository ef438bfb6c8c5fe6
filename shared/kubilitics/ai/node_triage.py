"""Node triage: "what is wrong with this node, and which pods fail because of it?"

`gather_node` reads the node, the pods bound to it (one list, `spec.nodeName=<node>`), the pods that
wait to be scheduled anywhere (`status.phase=Pending,spec.nodeName=`) and the node's events, all
as the caller (their RBAC: a caller who may not read nodes gets the API server's 403). It keeps a
slim copy of each (no env, no spec beyond scheduling), the node's requested totals against its
allocatable, and stores that document between the state machine's steps.

`node_problems` judges one node from that data alone (the cluster investigation reuses it for every
node, from its cluster-wide lists):

- Ready not True (the kubelet stopped reporting or reports NotReady): `node_not_ready`; the pods
  bound to it that are not ready since then (their Ready condition turned False after the node's, or
  the node controller's NodeNotReady event names them) are listed as affected;
- NetworkUnavailable True: `node_not_ready` (its pods have no network);
- MemoryPressure / DiskPressure / PIDPressure True, or pods evicted from it within the window:
  `eviction_pressure`, the evicted pods affected;
- pods pending because of it: they select this node (nodeSelector / required node affinity match its
  labels) and the scheduler's Unschedulable message reports an untolerated taint, and this node
  carries a NoSchedule/NoExecute taint the pod does not tolerate (`untolerated_taint`, or the
  pressure / not-ready category when the node lifecycle controller put the taint there);
- pods the kubelet refused (status.reason OutOfcpu, OutOfmemory, OutOfpods, ...): the requests of
  the pods bound to it exceed its allocatable (`insufficient_cpu` / `insufficient_memory`).

A pod that fails for its own reasons (a crash, a bad image) on a healthy node is not the node's
problem: it is counted in a note. So are ready pods on the node whose current log names a cause that
persists (ai/log_scan.py: one pod per workload, at most 10), with the line. Nothing is judged from
names or labels beyond what the scheduler itself matches (node labels against the pod's selector).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.insights.base import Snapshot
from kubilitics.ai.kube_json import (
    condition,
    controller_of,
    event_last_seen,
    labels_of,
    meta,
    name_of,
    namespace_of,
    parse_quantity,
    parse_time,
    pod_finished,
    pod_is_ready,
)
from kubilitics.ai.log_scan import LogScanLimits, candidates, scan
from kubilitics.ai.taxonomy import SEVERITY_ORDER, precedence
from kubilitics.errors import KubiliticsError
from kubilitics.ports import KubernetesPort

SCOPE = "node"
CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
PRESSURES = {"MemoryPressure": "memory", "DiskPressure": "disk", "PIDPressure": "PIDs"}
# Taints the node lifecycle controller sets, and the category of the cause they stand for.
CONTROLLER_TAINTS = {
    "node.kubernetes.io/not-ready": "node_not_ready",
    "node.kubernetes.io/unreachable": "node_not_ready",
    "node.kubernetes.io/network-unavailable": "node_not_ready",
    "node.kubernetes.io/memory-pressure": "eviction_pressure",
    "node.kubernetes.io/disk-pressure": "eviction_pressure",
    "node.kubernetes.io/pid-pressure": "eviction_pressure",
}
# status.reason of a pod the kubelet refused to admit (its requests do not fit what is left).
ADMISSION_REFUSALS = {
    "OutOfcpu": "insufficient_cpu",
    "OutOfmemory": "insufficient_memory",
    "OutOfpods": "insufficient_cpu",
    "OutOfephemeral-storage": "eviction_pressure",
}
MAX_PODS = 1000  # pods on the node read (one page)
MAX_PENDING = 500  # unscheduled pods read across the cluster (one page)
MAX_EVENTS = 300
MAX_AFFECTED_FINDINGS = 50  # affected pods listed one finding each; more are counted


# ---- reading ---------------------------------------------------------------------------------------


def gather_node(
    kube: KubernetesPort,
    context: Any,
    name: str,
    window_minutes: int = 60,
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The evidence document of a node investigation (plain JSON)."""
    now = clock()
    notes: list[str] = []
    node_type, pod_type = kube.resource_type(context, "Node"), kube.resource_type(context, "Pod")
    node = kube.get(context, node_type, None, name)  # errors (403, 404) are the caller's answer

    def pods(selector: str, limit: int, what: str) -> list[dict[str, Any]]:
        page = kube.list_objects(context, pod_type, field_selector=selector, limit=limit)
        if (page.get("metadata") or {}).get("continue"):
            notes.append(f"more than {limit} {what}: only the first {limit} read")
        return list(page.get("items") or [])

    def events() -> list[dict[str, Any]]:
        try:
            etype = kube.resource_type(context, "Event")
            selector = f"involvedObject.kind=Node,involvedObject.name={name}"
            page = kube.list_objects(context, etype, field_selector=selector, limit=MAX_EVENTS)
            pod_events = kube.list_objects(
                context, etype, field_selector="reason=NodeNotReady", limit=MAX_EVENTS
            )
            return list(page.get("items") or []) + [
                e
                for e in pod_events.get("items") or []
                if (e.get("involvedObject") or {}).get("kind") == "Pod"
            ]
        except KubiliticsError as exc:
            notes.append(f"could not list events: {exc.message}")
            return []

    def pending() -> list[dict[str, Any]]:
        try:
            return pods("status.phase=Pending,spec.nodeName=", MAX_PENDING, "unscheduled pods")
        except KubiliticsError as exc:  # a caller who may read this node's pods but not all pods
            notes.append(f"could not list unscheduled pods: {exc.message}")
            return []

    with ThreadPoolExecutor(max_workers=3) as pool:
        on_node = pool.submit(pods, f"spec.nodeName={name}", MAX_PODS, f"pods on node {name}")
        waiting = pool.submit(pending)
        listed_events = pool.submit(events)
        bound, unscheduled, evs = on_node.result(), waiting.result(), listed_events.result()
    slim = slim_node(node, bound)
    snapshot = Snapshot(context=str(getattr(context, "name", context)), collected_at=now)
    snapshot.pods = bound
    logs = LogScanLimits()
    logged = scan(kube, context, candidates(bound, snapshot, set())[-logs.max_pods :], logs, notes)
    return {
        "scope": SCOPE,
        "target": ObjectRef("Node", name).to_dict(),
        "collected_at": now,
        "window_minutes": window_minutes,
        "context": getattr(context, "name", None),
        "node": slim,
        "pods": [slim_pod(p) for p in bound],
        "pending": [slim_pod(p) for p in unscheduled if pinned_to(p, slim)],
        "events": [slim_event(e) for e in evs],
        "logged": [{"subject": _top_owner(kube, context, s["subject"]), "why": s["why"]} for s in logged],
        "notes": notes,
    }


def _top_owner(kube: KubernetesPort, context: Any, subject: dict[str, Any]) -> dict[str, Any]:
    """A ReplicaSet's Deployment, a Job's CronJob (one read each; only the node's pods were listed)."""
    if subject.get("kind") not in ("ReplicaSet", "Job"):
        return subject
    try:
        owned = kube.get(
            context, kube.resource_type(context, subject["kind"]), subject["namespace"], subject["name"]
        )
    except KubiliticsError:
        return subject
    owner = controller_of(owned)
    if not owner:
        return subject
    return ObjectRef(str(owner.get("kind")), str(owner.get("name")), subject["namespace"]).to_dict()


def slim_node(node: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    md, spec, status = meta(node), node.get("spec") or {}, node.get("status") or {}
    return {
        "kind": "Node",
        "metadata": {
            "name": md.get("name"),
            "labels": md.get("labels") or {},
            "creationTimestamp": md.get("creationTimestamp"),
        },
        "spec": {"taints": spec.get("taints") or [], "unschedulable": bool(spec.get("unschedulable"))},
        "status": {
            "conditions": [c for c in status.get("conditions") or [] if c.get("type") in CONDITIONS],
            "allocatable": status.get("allocatable") or {},
        },
        "requested": requested(pods),
    }


def requested(pods: list[dict[str, Any]]) -> dict[str, float]:
    """cpu (cores), memory (bytes) and pods requested by the pods bound to a node that still hold it
    (the scheduler's sum: each container's requests, or an init container's if larger)."""
    total = {"cpu": 0.0, "memory": 0.0, "pods": 0.0}
    for pod in pods:
        if pod_finished(pod):
            continue
        spec = pod.get("spec") or {}
        total["pods"] += 1
        for resource in ("cpu", "memory"):
            main = sum(_request(c, resource) for c in spec.get("containers") or [])
            init = max((_request(c, resource) for c in spec.get("initContainers") or []), default=0.0)
            total[resource] += max(main, init)
    return total


def _request(container: dict[str, Any], resource: str) -> float:
    value = ((container.get("resources") or {}).get("requests") or {}).get(resource)
    return parse_quantity(value, cpu=resource == "cpu") or 0.0


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    md, spec, status = meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    return {
        "kind": "Pod",
        "metadata": {
            "name": md.get("name"),
            "namespace": md.get("namespace"),
            "ownerReferences": [
                {k: r.get(k) for k in ("kind", "name", "controller")} for r in md.get("ownerReferences") or []
            ],
            "creationTimestamp": md.get("creationTimestamp"),
        },
        "spec": {
            "nodeName": spec.get("nodeName"),
            "nodeSelector": spec.get("nodeSelector") or {},
            **({"nodeAffinity": affinity} if affinity else {}),
            "tolerations": spec.get("tolerations") or [],
        },
        "status": {
            "phase": status.get("phase"),
            "reason": status.get("reason"),
            "message": (status.get("message") or "")[:400],
            "conditions": [
                {k: c.get(k) for k in ("type", "status", "reason", "message", "lastTransitionTime")}
                for c in status.get("conditions") or []
                if c.get("type") in ("Ready", "PodScheduled")
            ],
            "finishedAt": _finished_at(status),
        },
    }


def _finished_at(status: dict[str, Any]) -> str | None:
    times = [
        ((c.get("state") or {}).get("terminated") or {}).get("finishedAt")
        for c in status.get("containerStatuses") or []
    ]
    return max((t for t in times if t), default=None)


def slim_event(event: dict[str, Any]) -> dict[str, Any]:
    io = event.get("involvedObject") or {}
    seen = event_last_seen(event)
    return {
        "reason": event.get("reason"),
        "type": event.get("type"),
        "message": str(event.get("message") or "")[:300],
        "involved": {"kind": io.get("kind"), "namespace": io.get("namespace"), "name": io.get("name")},
        "last_seen": seen,
        "count": event.get("count") or 1,
    }


# ---- the scheduler's matching, for pods that select a node -------------------------------------------


def pinned_to(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    """Whether an unscheduled pod would be placed on this node but for its taints or conditions: its
    nodeSelector and required node affinity select this node (a pod that selects nothing in
    particular is pending because of the cluster, not of one node)."""
    spec = pod.get("spec") or {}
    selector = spec.get("nodeSelector") or {}
    affinity = spec.get("nodeAffinity") or ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not selector and not affinity:
        return False
    labels = labels_of(node)
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    if affinity:
        terms = affinity.get("nodeSelectorTerms") or []
        if not any(_term_matches(term, labels, name_of(node)) for term in terms):
            return False
    return True


def _term_matches(term: dict[str, Any], labels: dict[str, str], name: str) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    for expr in exprs:
        if not _expression(expr, labels.get(expr.get("key", "")), expr.get("key", "") in labels):
            return False
    for expr in fields:
        if expr.get("key") != "metadata.name" or not _expression(expr, name, True):
            return False
    return True


def _expression(expr: dict[str, Any], value: str | None, present: bool) -> bool:
    op, values = expr.get("operator"), [str(v) for v in expr.get("values") or []]
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and values:
        try:
            return int(value or "") > int(values[0]) if op == "Gt" else int(value or "") < int(values[0])
        except ValueError:
            return False
    return False


def tolerates(pod: dict[str, Any], taint: dict[str, Any]) -> bool:
    for tol in (pod.get("spec") or {}).get("tolerations") or []:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("key") and tol.get("key") != taint.get("key"):
            continue
        if tol.get("operator") == "Exists":
            return True
        if tol.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


# ---- judging -----------------------------------------------------------------------------------------


def is_node_document(document: Any) -> bool:
    return isinstance(document, dict) and document.get("scope") == SCOPE


def node_problems(
    node: dict[str, Any],
    pods: list[dict[str, Any]],
    pending: list[dict[str, Any]],
    events: list[dict[str, Any]],
    *,
    now: float,
    window_minutes: int,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The node's problems, most fundamental first, each with the pods it affects; and notes."""
    name = name_of(node)
    ref = ObjectRef("Node", name)
    horizon = now - window_minutes * 60
    problems: list[dict[str, Any]] = []
    notes: list[str] = []
    live = [p for p in pods if not pod_finished(p)]
    node_events = [e for e in events if (e.get("involved") or {}).get("kind") == "Node"]
    not_ready_pods = {
        ((e.get("involved") or {}).get("namespace"), (e.get("involved") or {}).get("name"))
        for e in events
        if e.get("reason") == "NodeNotReady" and (e.get("involved") or {}).get("kind") == "Pod"
    }

    ready = condition(node, "Ready")
    if ready is not None and ready.get("status") != "True":
        since = parse_time(ready.get("lastTransitionTime"))
        affected = [
            p
            for p in live
            if not pod_is_ready(p)
            and ((namespace_of(p), name_of(p)) in not_ready_pods or _turned_not_ready_after(p, since))
        ]
        status, reason = ready.get("status"), ready.get("reason") or ""
        why = (
            "the kubelet stopped reporting (node unreachable)"
            if status == "Unknown"
            else f"the kubelet reports {reason or 'NotReady'}"
        )
        message = ready.get("message") or ""
        problems.append(
            _problem(
                ref,
                "node_not_ready",
                "critical",
                0.96,
                f"Node {name} is not ready (Ready={status}): {why}"
                + (f" since {ready.get('lastTransitionTime')}" if ready.get("lastTransitionTime") else "")
                + f"; {len(affected)} of its {len(live)} pod(s) are not ready since.",
                [
                    _cite(node, "status.conditions[Ready]", f"{status} ({reason}): {message}"),
                    *_taint_cites(node, "node_not_ready"),
                    *_event_cites(node_events, ("NodeNotReady",)),
                ],
                affected,
                "not ready since node {node} went NotReady",
                [
                    _rec(
                        "cordon_node",
                        f"Cordon node {name} so nothing new is scheduled there (kubectl cordon {name}).",
                        ref,
                        {"spec": {"unschedulable": True}},
                    ),
                    _rec(
                        "repair_node",
                        f"Restore the kubelet on {name} (the machine, its network, `journalctl -u kubelet`) "
                        "or replace the node; its pods are evicted once their NoExecute toleration "
                        "(300 s by default) runs out.",
                        ref,
                    ),
                ],
            )
        )
    network = condition(node, "NetworkUnavailable")
    if network is not None and network.get("status") == "True":
        problems.append(
            _problem(
                ref,
                "node_not_ready",
                "critical",
                0.9,
                f"Node {name} has no network (NetworkUnavailable=True: {network.get('reason') or ''}): "
                f"its {len(live)} pod(s) cannot be reached.",
                [
                    _cite(
                        node, "status.conditions[NetworkUnavailable]", f"True: {network.get('message') or ''}"
                    )
                ],
                live,
                "on node {node}, whose network is unavailable",
                [_rec("repair_node", f"Repair the network plugin (CNI) on node {name}.", ref)],
            )
        )

    hot = [(t, c) for t in PRESSURES if (c := condition(node, t)) and c.get("status") == "True"]
    evicted = [
        p for p in pods if (p.get("status") or {}).get("reason") == "Evicted" and (_seen(p) or now) >= horizon
    ]
    if hot or evicted:
        what = " and ".join(PRESSURES[t] for t, _ in hot)
        cites = [
            _cite(node, f"status.conditions[{t}]", f"True ({c.get('reason')}): {c.get('message')}")
            for t, c in hot
        ]
        cites += _taint_cites(node, "eviction_pressure")
        cites += _event_cites(
            node_events, ("EvictionThresholdMet", "NodeHasInsufficientMemory", "NodeHasDiskPressure")
        )
        cites += [
            _cite(p, "status.message", (p.get("status") or {}).get("message") or "Evicted")
            for p in evicted[:2]
        ]
        summary = (
            f"Node {name} is short of {what} ({', '.join(t for t, _ in hot)})"
            if hot
            else f"Node {name} ran short of resources"
        ) + f": {len(evicted)} pod(s) evicted from it in the last {window_minutes} minutes."
        problems.append(
            _problem(
                ref,
                "eviction_pressure",
                "high",
                0.9 if hot else 0.85,
                summary,
                cites,
                evicted,
                "evicted from node {node}",
                [
                    _rec(
                        "relieve_node_pressure",
                        f"Free {what or 'resources'} on node {name} or add capacity; give its pods requests "
                        "that match what they use so the scheduler does not overcommit it.",
                        ref,
                    )
                ],
            )
        )

    refused: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        category = ADMISSION_REFUSALS.get(str((pod.get("status") or {}).get("reason") or ""))
        if category and (_seen(pod) or now) >= horizon:
            refused.setdefault(category, []).append(pod)
    for category, refused_pods in refused.items():
        resource = "cpu" if category == "insufficient_cpu" else "memory"
        alloc = parse_quantity(
            ((node.get("status") or {}).get("allocatable") or {}).get(resource), cpu=resource == "cpu"
        )
        asked = (node.get("requested") or {}).get(resource, 0.0)
        problems.append(
            _problem(
                ref,
                category,
                "high",
                0.9,
                f"Node {name} refused {len(refused_pods)} pod(s): "
                f"{(refused_pods[0].get('status') or {}).get('message') or ''} "
                f"(requested {_fmt(asked, resource)} of {_fmt(alloc, resource)} allocatable).".replace(
                    "  ", " "
                ),
                [
                    _cite(p, "status.reason", str((p.get("status") or {}).get("reason")))
                    for p in refused_pods[:2]
                ],
                refused_pods,
                "refused by node {node}: its allocatable is used up",
                [
                    _rec(
                        "add_capacity",
                        f"Move pods off node {name} or add nodes: its allocatable is used up.",
                        ref,
                    )
                ],
            )
        )

    # Pods that select this node and wait because of its taints (or conditions).
    by_cause: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
    for pod in pending:
        scheduled = condition(pod, "PodScheduled")
        if not scheduled or scheduled.get("status") != "False" or scheduled.get("reason") != "Unschedulable":
            continue
        message = str(scheduled.get("message") or "")
        blocking = [
            t
            for t in (node.get("spec") or {}).get("taints") or []
            if t.get("effect") in ("NoSchedule", "NoExecute")
            and not tolerates(pod, t)
            and "untolerated taint" in message  # the scheduler found a taint in the way
        ]
        cause = ""
        if blocking:
            cause = CONTROLLER_TAINTS.get(str(blocking[0].get("key")), "untolerated_taint")
        elif hot and "pressure" in message:
            cause = "eviction_pressure"
        elif (node.get("spec") or {}).get("unschedulable") and "unschedulable" in message:
            cause = "node_selector_mismatch"
            notes.append(f"node {name} is cordoned (spec.unschedulable)")
        if cause:
            pods_, taints = by_cause.setdefault(cause, ([], []))
            pods_.append(pod)
            taints += [_taint_text(t) for t in blocking if _taint_text(t) not in taints]
    for cause, (waiting, taints) in by_cause.items():
        existing = next((p for p in problems if p["category"] == cause), None)
        if existing is not None:  # the node's own condition already explains them
            existing["affected"] += [_affected(p, "pending: it selects node {node}", name) for p in waiting]
            continue
        taint_text = ", ".join(taints) or "its conditions"
        example = condition(waiting[0], "PodScheduled") or {}
        problems.append(
            _problem(
                ref,
                cause,
                "high",
                0.9,
                f"{len(waiting)} pod(s) that select node {name} are pending: they do not tolerate its "
                f"taint {taint_text}.",
                [
                    *([_cite(node, "spec.taints", taint_text)] if taints else []),
                    _cite(waiting[0], "status.conditions[PodScheduled]", str(example.get("message") or "")),
                ],
                waiting,
                "pending: it selects node {node} and does not tolerate its taint " + taint_text,
                [
                    _rec(
                        "add_toleration",
                        f"Give the pods a toleration for {taint_text}, or remove the taint from node {name} "
                        f"(kubectl taint nodes {name} {_taint_key(taints)}-).",
                        ref,
                    )
                ],
            )
        )

    own = [
        p
        for p in live
        if not pod_is_ready(p)
        and not any(
            name_of(p) == a["name"] and namespace_of(p) == a["namespace"]
            for q in problems
            for a in q["affected"]
        )
    ]
    if own:
        notes.append(
            f"{len(own)} pod(s) on node {name} are not ready for reasons of their own "
            f"(investigate them): {', '.join(f'{namespace_of(p)}/{name_of(p)}' for p in own[:5])}"
        )
    problems.sort(key=lambda p: (SEVERITY_ORDER.get(p["severity"], 9), precedence(p["category"])))
    return problems, notes


def _turned_not_ready_after(pod: dict[str, Any], since: float | None) -> bool:
    ready = condition(pod, "Ready")
    if ready is None or ready.get("status") == "True":
        return False
    changed = parse_time(ready.get("lastTransitionTime"))
    return since is not None and changed is not None and changed >= since - 1


def _seen(pod: dict[str, Any]) -> float | None:
    status = pod.get("status") or {}
    return parse_time(status.get("finishedAt")) or parse_time(
        next(
            (c.get("lastTransitionTime") for c in status.get("conditions") or [] if c.get("type") == "Ready"),
            None,
        )
    )


def _problem(
    ref: ObjectRef,
    category: str,
    severity: str,
    confidence: float,
    summary: str,
    citations: list[dict[str, Any]],
    affected: list[dict[str, Any]],
    why: str,
    recommendations: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "subject": ref.to_dict(),
        "category": category,
        "severity": severity,
        "confidence": confidence,
        "summary": summary,
        "evidence": [c for c in citations if c],
        "affected": [_affected(p, why, ref.name) for p in affected],
        "recommendations": recommendations,
    }


def _affected(pod: dict[str, Any], why: str, node: str) -> dict[str, Any]:
    status = pod.get("status") or {}
    return {
        "kind": "Pod",
        "namespace": namespace_of(pod),
        "name": name_of(pod),
        "phase": status.get("phase"),
        "why": why.format(node=node),
        "message": status.get("message") or "",
    }


def _cite(obj: dict[str, Any], path: str, value: str) -> dict[str, Any]:
    return {
        "source": "object",
        "object": ObjectRef(str(obj.get("kind") or ""), name_of(obj), namespace_of(obj)).to_dict(),
        "field": path,
        "value": value[:400],
    }


def _event_cites(events: list[dict[str, Any]], reasons: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for event in events:
        if event.get("reason") in reasons:
            out.append(
                {
                    "source": "event",
                    "object": {k: v for k, v in (event.get("involved") or {}).items() if v},
                    "reason": event.get("reason"),
                    "value": event.get("message"),
                    "count": event.get("count"),
                }
            )
    return out[:2]


def _taint_cites(node: dict[str, Any], category: str) -> list[dict[str, Any]]:
    taints = [
        _taint_text(t)
        for t in (node.get("spec") or {}).get("taints") or []
        if CONTROLLER_TAINTS.get(str(t.get("key"))) == category
    ]
    return [_cite(node, "spec.taints", ", ".join(taints))] if taints else []


def _taint_key(taints: list[str]) -> str:
    return taints[0].split("=")[0].split(":")[0] if taints else ""


def _taint_text(taint: dict[str, Any]) -> str:
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key')}{value}:{taint.get('effect')}"


def _rec(action: str, details: str, ref: ObjectRef, patch: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "action": action,
        "details": details,
        "target": ref.to_dict(),
        **({"patch": patch} if patch else {}),
    }


def evidence_of(document: dict[str, Any], objects: list[dict[str, Any]]) -> Evidence:
    """An Evidence over a node or cluster document (for the LLM's digest and the action proposals)."""
    ev = Evidence(
        target=ObjectRef.from_dict(document["target"]),
        collected_at=float(document.get("collected_at") or 0.0),
        window_minutes=int(document.get("window_minutes") or 60),
        context=document.get("context"),
        notes=list(document.get("notes") or []),
    )
    for obj in objects:
        ev.add({k: v for k, v in obj.items() if k != "requested"})
    return ev


def _fmt(value: float | None, resource: str) -> str:
    if value is None:
        return "?"
    if resource == "cpu":
        return f"{value * 1000:.0f}m"
    return f"{value / 2**20:.0f}Mi"


def allocation(node: dict[str, Any]) -> dict[str, Any]:
    """Requested against allocatable, per resource (what `kubectl describe node` shows)."""
    alloc = (node.get("status") or {}).get("allocatable") or {}
    asked = node.get("requested") or {}
    out: dict[str, Any] = {}
    for resource in ("cpu", "memory", "pods"):
        cap = parse_quantity(alloc.get(resource), cpu=resource == "cpu")
        used = float(asked.get(resource) or 0.0)
        out[resource] = {
            "requested": _fmt(used, resource) if resource != "pods" else int(used),
            "allocatable": alloc.get(resource),
            "percent": round(100 * used / cap) if cap else None,
        }
    return out


def diagnose_node(document: dict[str, Any]) -> dict[str, Any]:
    """The node investigation's diagnosis (the shape of `Diagnosis.to_dict`, plus `triage`)."""
    node = document["node"]
    name = name_of(node)
    target = ObjectRef("Node", name)
    window = int(document.get("window_minutes") or 60)
    problems, notes = node_problems(
        node,
        document.get("pods") or [],
        document.get("pending") or [],
        document.get("events") or [],
        now=float(document.get("collected_at") or time.time()),
        window_minutes=window,
    )
    notes = list(document.get("notes") or []) + notes
    for logged in document.get("logged") or []:
        subject = ObjectRef.from_dict(logged["subject"])
        notes.append(
            f"{subject.kind} {subject.namespace}/{subject.name} on node {name} is {logged['why']} "
            "(its own problem, not the node's: investigate it)"
        )
    pods = [p for p in document.get("pods") or [] if not pod_finished(p)]
    conditions = {
        str(c.get("type")): str(c.get("status")) for c in (node.get("status") or {}).get("conditions") or []
    }
    affected = {(a["namespace"], a["name"]) for p in problems for a in p["affected"]}
    triage = {
        "node": name,
        "conditions": conditions,
        "taints": [_taint_text(t) for t in (node.get("spec") or {}).get("taints") or []],
        "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
        "allocation": allocation(node),
        "pods": len(pods),
        "affected": len(affected),
        "affected_pods": sorted(f"{ns}/{n}" for ns, n in affected)[:MAX_AFFECTED_FINDINGS],
        # Workloads on the node whose ready pods log a cause that persists: theirs, not the node's.
        "logged": list(document.get("logged") or []),
    }
    return rolled_up(target, problems, triage, notes, healthy_summary=_healthy_summary(node, triage))


def _healthy_summary(node: dict[str, Any], triage: dict[str, Any]) -> str:
    alloc = triage["allocation"]
    return (
        f"Node {name_of(node)} is healthy: Ready, no memory, disk or PID pressure, network available; "
        f"{triage['pods']} pod(s) on it, requests at {alloc['cpu']['percent']}% cpu and "
        f"{alloc['memory']['percent']}% memory of allocatable; no pod fails because of it."
    )


def rolled_up(
    target: ObjectRef,
    problems: list[dict[str, Any]],
    triage: dict[str, Any],
    notes: list[str],
    *,
    healthy_summary: str,
    prefix: str = "",
) -> dict[str, Any]:
    """A diagnosis from ranked problems: the top one is the root cause; each problem is a finding, then
    each pod it affects (at most MAX_AFFECTED_FINDINGS)."""
    if not problems:
        return {
            "resource": target.to_dict(),
            "root_cause": {
                "category": "healthy",
                "summary": healthy_summary,
                "confidence": 0.9 if not notes else 0.8,
            },
            "severity": "low",
            "findings_summary": healthy_summary,
            "evidence": [],
            "recommendations": [],
            "findings": [],
            "problems": [],
            "in_progress": [],
            "settled": True,
            "notes": notes,
            "triage": triage,
        }
    top = problems[0]
    findings: list[dict[str, Any]] = []
    for p in problems:
        findings.append(
            {k: p[k] for k in ("category", "summary", "confidence", "severity", "subject")}
            | {
                "analyzer": p.get("analyzer") or "node_triage",
                "citations": p["evidence"],
                "affects": [f"{a['namespace']}/{a['name']}" for a in p.get("affected") or []],
            }
        )
    for p in problems:
        for a in p.get("affected") or []:
            if len(findings) >= len(problems) + MAX_AFFECTED_FINDINGS:
                break
            findings.append(
                {
                    "category": p["category"],
                    "summary": f"Pod {a['namespace']}/{a['name']}: {a['why']}"
                    + (f" ({a['message']})" if a.get("message") else ""),
                    "confidence": p["confidence"],
                    "severity": p["severity"],
                    "subject": {"kind": "Pod", "namespace": a["namespace"], "name": a["name"]},
                    "analyzer": "node_triage",
                }
            )
    recommendations: list[dict[str, Any]] = []
    for p in problems:
        for rec in p["recommendations"]:
            if len(recommendations) < 5 and rec not in recommendations:
                recommendations.append(rec)
    recommendations = [{**rec, "priority": i + 1} for i, rec in enumerate(recommendations)]
    subject = ObjectRef.from_dict(top["subject"])
    lines = [f"[{i + 1}] {p['summary']}" for i, p in enumerate(problems[:3])]
    more = f" ... and {len(problems) - 3} more." if len(problems) > 3 else ""
    summary = prefix + " ".join(lines) + more
    return {
        "resource": target.to_dict(),
        "root_cause": {
            "category": top["category"],
            "summary": top["summary"],
            "confidence": top["confidence"],
            "subject": subject.to_dict(),
        },
        "severity": top["severity"],
        "findings_summary": summary,
        "evidence": top["evidence"],
        "recommendations": recommendations,
        "findings": findings,
        "problems": [
            f"{p['subject'].get('kind')} {p['subject'].get('name')}: {p['category']}" for p in problems
        ],
        "in_progress": [],
        "settled": True,
        "notes": notes,
        "triage": triage,
    }
