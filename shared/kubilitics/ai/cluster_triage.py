"""Cluster triage: "what is broken in my cluster?" (a `Cluster` investigation, or one with no resource).

Reads, all as the caller (their RBAC: a caller who may not list nodes gets the API server's 403):

- every node (one list) and the API server's readiness checks (`GET /readyz?verbose`);
- cluster-wide lists of the kinds a namespace triage surveys (ai/triage.py SURVEY_KINDS) and the
  Warning events, one page each of at most `max_listed` objects (more are noted, not read).

Then, in memory:

- each node is judged as a node investigation judges it (ai/node_triage.py `node_problems`) from the
  pods bound to it and the unscheduled pods that select it;
- each namespace is surveyed as a namespace investigation surveys it (`survey_listed`), and the
  namespaces with suspects are ranked by their suspects (failing first, then how many). The first
  `max_namespaces` of them get their suspects gathered in full and diagnosed (`max_suspects_per_namespace`
  each, at most `max_suspects` in all, `workers` at a time): the namespace triage's roll-up. The
  others are listed ranked after them with their suspects, marked not examined;
- the workloads that look fine get their ready pods' logs read (ai/log_scan.py: one pod per workload,
  the newest `logs.max_pods` workloads across the cluster): a cause that persists in a log makes the
  workload a suspect of its namespace.

Work grows with the suspects, not with the cluster: a healthy cluster of 5,000 pods costs the lists.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.gather import GatherLimits
from kubilitics.ai.kube_json import condition, meta, namespace_of, pod_finished, pod_node
from kubilitics.ai.log_scan import LogScanLimits
from kubilitics.ai.node_triage import (
    ADMISSION_REFUSALS,
    CONDITIONS,
    PRESSURES,
    node_problems,
    pinned_to,
    rolled_up,
    slim_node,
    slim_pod,
)
from kubilitics.ai.taxonomy import HEALTHY, SEVERITY_ORDER, precedence
from kubilitics.ai.triage import (
    SURVEY_KINDS,
    TriageLimits,
    diagnose_namespace,
    gather_member,
    namespace_snapshot,
    read_listed,
    ready_workloads,
    scan_ready_logs,
    survey_listed,
)
from kubilitics.errors import KubiliticsError
from kubilitics.ports import KubernetesPort

SCOPE = "cluster"
API_SERVER = ObjectRef("APIServer", "readyz")


@dataclass(frozen=True)
class ClusterLimits:
    """The bounds of one cluster investigation."""

    max_listed: int = 20000  # objects read per kind across the cluster (one page)
    max_namespaces: int = 6  # namespaces whose suspects are gathered and diagnosed in full
    max_suspects_per_namespace: int = 3
    max_suspects: int = 12  # in all
    max_ranked_namespaces: int = 50  # namespaces listed in the roll-up
    max_node_pods: int = 2000  # pods kept for the node judgement (on troubled nodes, evicted, pending)
    workers: int = 4
    member: GatherLimits = field(
        default_factory=lambda: GatherLimits(
            max_pods=4, max_log_pods=1, log_lines=40, max_events=100, workers=4
        )
    )
    logs: LogScanLimits = field(default_factory=lambda: LogScanLimits(max_pods=20))


def is_cluster_document(document: Any) -> bool:
    return isinstance(document, dict) and document.get("scope") == SCOPE


def gather_cluster(
    kube: KubernetesPort,
    context: Any,
    window_minutes: int = 60,
    *,
    limits: ClusterLimits | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    limits = limits or ClusterLimits()
    now = clock()
    notes: list[str] = []
    node_type = kube.resource_type(context, "Node")
    nodes = list(kube.list_objects(context, node_type, limit=limits.max_listed).get("items") or [])

    def read(kind: str, field_selector: str | None = None) -> list[dict[str, Any]]:
        return read_listed(kube, context, kind, None, limits.max_listed, notes, field_selector)

    calls: list[tuple[str, str | None]] = [(kind, None) for kind in SURVEY_KINDS]
    calls += [("Namespace", None), ("Event", "type=Warning")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        readyz = pool.submit(_readyz, kube, context)
        listed = list(pool.map(lambda call: read(*call), calls))
    objs = {kind: items for (kind, _), items in zip(calls, listed, strict=True)}
    warnings = objs.pop("Event")
    namespaces = [str(meta(n).get("name")) for n in objs.pop("Namespace")]

    # Nodes: every node, slim, with what its pods request; the pods that matter to a node's judgement.
    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pod in objs["Pod"]:
        if pod_node(pod):
            by_node[str(pod_node(pod))].append(pod)
    slim_nodes = [slim_node(n, by_node.get(str(meta(n).get("name")), [])) for n in nodes]
    troubled = {str(meta(n)["name"]) for n in slim_nodes if _node_troubled(n)}
    node_pods = [
        slim_pod(p)
        for p in objs["Pod"]
        if (pod_node(p) in troubled and not pod_finished(p))
        or (p.get("status") or {}).get("reason") in ("Evicted", *ADMISSION_REFUSALS)
    ]
    pending = [
        slim_pod(p)
        for p in objs["Pod"]
        if not pod_node(p)
        and (p.get("status") or {}).get("phase") == "Pending"
        and any(pinned_to(p, n) for n in slim_nodes if (n.get("spec") or {}).get("taints"))
    ]
    if len(node_pods) > limits.max_node_pods:
        notes.append(f"{len(node_pods)} pods on troubled nodes: kept {limits.max_node_pods}")
        node_pods = node_pods[: limits.max_node_pods]

    # Namespaces: the namespace triage's survey over each namespace's share of the lists.
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {
        ns: {k: [] for k in SURVEY_KINDS} for ns in namespaces
    }
    for kind, items in objs.items():
        for item in items:
            ns = namespace_of(item)
            if ns is not None:
                grouped.setdefault(ns, {k: [] for k in SURVEY_KINDS})[kind].append(item)
    warnings_by_ns: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in warnings:
        warnings_by_ns[str(namespace_of(event) or "")].append(event)
    triage_limits = TriageLimits(max_suspects=limits.max_suspects_per_namespace)
    surveys = []
    ready = []
    for ns, ns_objs in grouped.items():
        ns_notes: list[str] = []
        ns_warnings = warnings_by_ns.get(ns, [])
        survey = survey_listed(
            ns_objs,
            ns_warnings,
            ns,
            window_minutes,
            limits=triage_limits,
            now=now,
            notes=ns_notes,
            context=context,
        )
        surveys.append(
            {
                "namespace": ns,
                "inventory": survey["inventory"],
                "suspects": survey["suspects"],
                "notes": ns_notes,
                "failing": _failing_pods(ns_objs["Pod"]),
            }
        )
        ready += ready_workloads(ns_objs, survey, namespace_snapshot(ns_objs, ns, context, now))
    ready.sort(key=lambda item: str(meta(item[0]).get("creationTimestamp") or ""))
    by_namespace = {s["namespace"]: s for s in surveys}
    for suspect in scan_ready_logs(kube, context, ready, limits.logs, notes):
        by_namespace[str(suspect["subject"].get("namespace"))]["suspects"].append(suspect)
    surveys.sort(key=lambda s: (-s["failing"], -len(s["suspects"]), s["namespace"]))

    # The first namespaces with suspects get them gathered in full (bounded).
    chosen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for survey in surveys:
        if not survey["suspects"] or len({id(s) for s, _ in chosen}) >= limits.max_namespaces:
            continue
        for suspect in survey["suspects"][: limits.max_suspects_per_namespace]:
            if len(chosen) < limits.max_suspects:
                chosen.append((survey, suspect))

    def gather(item: tuple[dict[str, Any], dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        survey, suspect = item
        return survey["namespace"], gather_member(
            kube, context, suspect, window_minutes, limits.member, clock
        )

    with ThreadPoolExecutor(max_workers=limits.workers) as pool:
        gathered = list(pool.map(gather, chosen))
    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ns, member in gathered:
        members[ns].append(member)
    namespace_docs = []
    for survey in surveys:
        if not survey["suspects"]:
            continue
        namespace_docs.append(
            {
                "namespace": survey["namespace"],
                "inventory": survey["inventory"],
                "suspects": [{"subject": s["subject"], "why": s["why"]} for s in survey["suspects"]],
                "members": members.get(survey["namespace"], []),
                "examined": survey["namespace"] in members,
                "notes": survey["notes"],
            }
        )
    return {
        "scope": SCOPE,
        "target": ObjectRef("Cluster", str(getattr(context, "name", None) or "cluster")).to_dict(),
        "collected_at": now,
        "window_minutes": window_minutes,
        "context": getattr(context, "name", None),
        "nodes": slim_nodes,
        "node_pods": node_pods,
        "pending": pending,
        "readyz": readyz.result(),
        "namespaces": namespace_docs,
        "counts": {
            "nodes": len(nodes),
            "namespaces": len(grouped),
            "pods": len(objs["Pod"]),
            "workloads": sum(len(s["inventory"]) for s in surveys),
        },
        "bounds": {
            "max_listed_per_kind": limits.max_listed,
            "namespaces_examined": limits.max_namespaces,
            "suspects_per_namespace": limits.max_suspects_per_namespace,
            "suspects": limits.max_suspects,
        },
        "notes": notes,
    }


def _readyz(kube: KubernetesPort, context: Any) -> dict[str, Any]:
    """The API server's readiness checks (`/readyz?verbose`: one `[+]name ok` / `[-]name failed` line
    each; answered 500 when one fails, with the same text)."""
    client = getattr(kube, "client", None)
    if client is None:
        return {"read": False, "error": "this cluster adapter cannot read /readyz"}
    try:
        response = client(context).request(
            "GET", "/readyz", timeout=10.0, params={"verbose": "true"}, accept="text/plain"
        )
        text = response.data.decode("utf-8", "replace")
    except KubiliticsError as exc:
        text = str((exc.details or {}).get("body") or exc.message)
        if "[+]" not in text and "[-]" not in text:
            return {"read": False, "error": exc.message}
    checks = [line.strip() for line in text.splitlines() if line.strip().startswith(("[+]", "[-]"))]
    return {
        "read": True,
        "ok": [c[3:].split(" ")[0] for c in checks if c.startswith("[+]")],
        "failed": [c[3:] for c in checks if c.startswith("[-]")],
    }


def _node_troubled(node: dict[str, Any]) -> bool:
    for ctype in CONDITIONS:
        cond = condition(node, ctype)
        if cond is None:
            continue
        if (ctype == "Ready") != (cond.get("status") == "True"):
            return True
    return False


def _failing_pods(pods: list[dict[str, Any]]) -> int:
    count = 0
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") == "Failed" or any(
            (c.get("state") or {}).get("waiting", {}).get("reason")
            not in (None, "ContainerCreating", "PodInitializing")
            for c in status.get("containerStatuses") or []
        ):
            count += 1
    return count


# ---- diagnosis -----------------------------------------------------------------------------------


def diagnose_cluster(document: dict[str, Any]) -> dict[str, Any]:
    now = float(document.get("collected_at") or time.time())
    window = int(document.get("window_minutes") or 60)
    notes = list(document.get("notes") or [])
    target = ObjectRef.from_dict(document["target"])
    problems: list[dict[str, Any]] = []

    readyz = document.get("readyz") or {}
    if readyz.get("failed"):
        problems.append(
            {
                "subject": API_SERVER.to_dict(),
                "category": "apiserver_not_ready",
                "severity": "critical",
                "confidence": 0.9,
                "summary": f"The API server is not ready: {', '.join(readyz['failed'][:5])}.",
                "evidence": [
                    {
                        "source": "object",
                        "object": API_SERVER.to_dict(),
                        "field": "/readyz?verbose",
                        "value": f"[-]{c}",
                    }
                    for c in readyz["failed"][:5]
                ],
                "affected": [],
                "recommendations": [],
                "rank": 0,
            }
        )
    elif not readyz.get("read"):
        notes.append(f"the API server's readiness checks could not be read: {readyz.get('error')}")

    pods_by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pod in document.get("node_pods") or []:
        pods_by_node[str(pod_node(pod))].append(pod)
    not_ready: list[str] = []
    pressure: list[str] = []
    node_status: dict[str, Any] = {"total": len(document.get("nodes") or []), "not_ready": not_ready}
    node_status["pressure"] = pressure
    for node in document.get("nodes") or []:
        name = str(meta(node).get("name"))
        ready = condition(node, "Ready")
        if ready is not None and ready.get("status") != "True":
            not_ready.append(name)
        if any((condition(node, t) or {}).get("status") == "True" for t in PRESSURES):
            pressure.append(name)
        pending = [p for p in document.get("pending") or [] if pinned_to(p, node)]
        found, node_notes = node_problems(
            node, pods_by_node.get(name, []), pending, [], now=now, window_minutes=window
        )
        problems += [{**p, "rank": 1} for p in found]
        notes += [n for n in node_notes if "reasons of their own" not in n]  # namespaces cover those

    ranked_namespaces = []
    for ns_doc in document.get("namespaces") or []:
        ns = ns_doc["namespace"]
        entry: dict[str, Any] = {
            "namespace": ns,
            "workloads": len(ns_doc["inventory"]),
            "suspects": len(ns_doc["suspects"]),
            "examined": ns_doc["examined"],
        }
        if not ns_doc["examined"]:
            entry.update(
                affected=None,
                top="not examined (bound reached)",
                suspect_workloads=[
                    f"{s['subject']['kind']} {s['subject']['name']}: {s['why']}"
                    for s in ns_doc["suspects"][:3]
                ],
            )
            ranked_namespaces.append(entry)
            continue
        diagnosis = diagnose_namespace(
            {
                "scope": "namespace",
                "target": ObjectRef("Namespace", ns).to_dict(),
                "collected_at": now,
                "window_minutes": window,
                "inventory": ns_doc["inventory"],
                "members": ns_doc["members"],
                "notes": ns_doc["notes"],
            }
        )
        if diagnosis["root_cause"]["category"] == HEALTHY:
            continue
        findings = diagnosis["findings"]
        unexamined = len(ns_doc["suspects"]) - len(ns_doc["members"])
        entry.update(
            affected=diagnosis["triage"]["affected"],
            severity=diagnosis["severity"],
            top=diagnosis["root_cause"]["category"],
            summary=diagnosis["root_cause"]["summary"],
            problems=[f"{f['subject']['kind']} {f['subject']['name']}: {f['category']}" for f in findings],
            **({"not_examined": unexamined} if unexamined > 0 else {}),
        )
        ranked_namespaces.append(entry)
        for f in findings:
            problems.append(
                {
                    "subject": f["subject"],
                    "category": f["category"],
                    "severity": f["severity"],
                    "confidence": f["confidence"],
                    "summary": f"Namespace {ns}: {f['subject']['kind']} {f['subject']['name']}: "
                    + f["summary"],
                    "evidence": f["citations"],
                    "affected": [],
                    "recommendations": f["recommendations"],
                    "analyzer": f["analyzer"],
                    "rank": 2,
                    "impact": len(f.get("affects") or []) + 1,
                }
            )
    problems.sort(
        key=lambda p: (
            SEVERITY_ORDER.get(p["severity"], 9),
            p["rank"],
            precedence(p["category"]),
            -p.get("impact", 0),
        )
    )
    examined = [n for n in ranked_namespaces if n["examined"]]
    examined.sort(key=lambda n: (SEVERITY_ORDER.get(n["severity"], 9), -(n["affected"] or 0), n["namespace"]))
    rest = [n for n in ranked_namespaces if not n["examined"]]
    ranked = (examined + rest)[:50]
    counts = document.get("counts") or {}
    triage: dict[str, Any] = {
        "nodes": node_status,
        "apiserver": {k: readyz.get(k) for k in ("read", "failed")} | {"checks": len(readyz.get("ok") or [])},
        "namespaces": ranked,
        "namespaces_total": counts.get("namespaces"),
        "namespaces_affected": len(examined),
        "pods": counts.get("pods"),
        "workloads": counts.get("workloads"),
        "bounds": document.get("bounds"),
    }
    healthy = (
        f"Cluster {target.name} is healthy: {node_status['total']} node(s) ready without pressure, "
        f"the API server ready ({triage['apiserver']['checks']} checks), "
        f"{counts.get('namespaces')} namespace(s) with {counts.get('pods')} pod(s) and nothing failing."
    )
    prefix = (
        f"{len(node_status['not_ready'])} of {node_status['total']} node(s) not ready; "
        f"{len(examined)} namespace(s) with problems"
        + (f" ({', '.join(n['namespace'] for n in examined[:5])})" if examined else "")
        + (f", {len(rest)} more with suspects not examined" if rest else "")
        + ". "
    )
    return rolled_up(target, problems, triage, notes, healthy_summary=healthy, prefix=prefix)


def cluster_evidence(document: dict[str, Any]) -> Evidence:
    """One Evidence over the nodes and every examined suspect (the LLM's digest, action proposals)."""
    ev = Evidence(
        target=ObjectRef.from_dict(document["target"]),
        collected_at=float(document.get("collected_at") or 0.0),
        window_minutes=int(document.get("window_minutes") or 60),
        context=document.get("context"),
        notes=list(document.get("notes") or []),
    )
    for node in document.get("nodes") or []:
        if _node_troubled(node):
            ev.add({k: v for k, v in node.items() if k != "requested"})
    for ns_doc in document.get("namespaces") or []:
        for member in ns_doc.get("members") or []:
            evidence = Evidence.from_dict(member["evidence"])
            ev.objects.update(evidence.objects)
            ev.add_events(evidence.events)
            ev.logs.extend(evidence.logs)
    return ev
