"""Namespace triage: "what is broken in this namespace?", answered by the per-workload analyzers.

Two phases, as the insight scanner does it (services/insights.py):

1. `survey_namespace` reads the namespace cheaply (one list per kind, plus its Warning events) and
   picks the suspects: what is visibly in trouble (the health insights' `failing_targets`: containers
   waiting with an error, pods Pending or not Ready past the start-up grace, failed Jobs, stalled
   rollouts), workloads short of ready replicas, objects with recent Warning events, Services with no
   ready endpoints, claims that are not Bound and autoscalers that cannot scale. Only the suspects get
   the full evidence walk (`gather_evidence`), at most `max_suspects` of them, `workers` at a time.
2. `diagnose_namespace` runs `diagnose` on each suspect's evidence and rolls the results up: every
   problem with its subject, ranked by severity, then by how much is down (a user-facing Service with
   no endpoints above a workload short of replicas above a failed one-off Job), then by how
   fundamental the cause is. The namespace is healthy only when no suspect turns out broken.

Look-alikes stay healthy: a finished Job and a workload scaled to zero are not suspects (nothing is
failing), a Service that selects only a workload scaled to zero is intentionally empty, and a suspect
whose diagnosis is healthy (an old warning, an optional reference) is counted as examined, not
affected. LimitRanges and ResourceQuotas that refuse pods surface through the workloads they refuse
(FailedCreate events: analyzers `quota` and `limit_ranges`).

Every read goes through the port with the caller's context (their identity and RBAC).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from kubilitics.ai.diagnosis import MAX_RECOMMENDATIONS, diagnose
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.gather import GatherLimits, gather_evidence
from kubilitics.ai.insights import health
from kubilitics.ai.insights.base import ScanPolicy, Snapshot
from kubilitics.ai.kube_json import (
    condition,
    controller_of,
    event_last_seen,
    labels_of,
    map_selector_matches,
    name_of,
    pod_is_ready,
    pod_template,
)
from kubilitics.ai.log_scan import LogScanLimits, candidates, scan, with_scanned_logs
from kubilitics.ai.taxonomy import HEALTHY, SEVERITY_ORDER, UNKNOWN, precedence
from kubilitics.errors import KubiliticsError
from kubilitics.ports import KubernetesPort

SCOPE = "namespace"  # the evidence document of a namespace investigation says so in its "scope"
SURVEY_KINDS = (
    "Pod",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "Service",
    "Endpoints",
    "PersistentVolumeClaim",
    "HorizontalPodAutoscaler",
    "ResourceQuota",
)
# How much is down, for ranking problems of the same severity (higher first).
USER_FACING = 3.0  # a Service with no ready endpoints: its clients get errors
SERVING = 2.0  # a long-running workload (+ the fraction of its replicas that are not ready)
SUPPORTING = 1.5  # a claim or an autoscaler: it hurts through the workload that needs it
ONE_OFF = 1.0  # a Job or a CronJob's run: nothing serves from it
MAX_SUMMARY_PROBLEMS = 3


@dataclass(frozen=True)
class TriageLimits:
    """The bounds of one namespace investigation (work grows with suspects, not with the namespace)."""

    max_listed: int = 2000  # objects read per kind (one page); more are noted, not read
    max_suspects: int = 12  # workloads gathered and diagnosed in full
    workers: int = 4  # suspects gathered at once (each gather runs its own reads, 4 at a time)
    member: GatherLimits = field(
        default_factory=lambda: GatherLimits(
            max_pods=6, max_log_pods=2, log_lines=60, max_events=200, workers=4
        )
    )
    logs: LogScanLimits = field(default_factory=LogScanLimits)  # ready pods' logs (ai/log_scan.py)


@dataclass(frozen=True)
class Suspect:
    ref: ObjectRef
    why: str


# ---- phase 1: survey and gather ------------------------------------------------------------------


def gather_namespace(
    kube: KubernetesPort,
    context: Any,
    namespace: str,
    window_minutes: int = 60,
    *,
    limits: TriageLimits | None = None,
    member_limits: GatherLimits | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The evidence document of a namespace investigation: the inventory, the suspects and their
    evidence (plain JSON, stored between the state machine's steps)."""
    limits = limits or TriageLimits()
    if member_limits is not None:
        limits = replace(limits, member=replace(member_limits, workers=limits.member.workers))
    now = clock()
    survey = survey_namespace(kube, context, namespace, window_minutes, limits=limits, now=now)
    suspects = survey["suspects"][: limits.max_suspects]
    if len(survey["suspects"]) > len(suspects):
        rest = [s["subject"] for s in survey["suspects"][len(suspects) :]]
        survey["notes"].append(
            f"{len(rest)} more suspect(s) not examined (at most {limits.max_suspects} per investigation): "
            + ", ".join(_label(ObjectRef.from_dict(r)) for r in rest[:10])
        )

    def gather(suspect: dict[str, Any]) -> dict[str, Any]:
        return gather_member(kube, context, suspect, window_minutes, limits.member, clock)

    with ThreadPoolExecutor(max_workers=limits.workers) as pool:
        members = list(pool.map(gather, suspects))
    return {
        "scope": SCOPE,
        "target": ObjectRef("Namespace", namespace).to_dict(),
        "collected_at": now,
        "window_minutes": window_minutes,
        "context": getattr(context, "name", None),
        "inventory": survey["inventory"],
        "members": members,
        "notes": survey["notes"],
    }


def survey_namespace(
    kube: KubernetesPort,
    context: Any,
    namespace: str,
    window_minutes: int,
    *,
    limits: TriageLimits,
    now: float,
) -> dict[str, Any]:
    """What the namespace holds (the workloads counted) and what looks broken, from lists only."""
    notes: list[str] = []

    def read(kind: str, field_selector: str | None = None) -> list[dict[str, Any]]:
        return read_listed(kube, context, kind, namespace, limits.max_listed, notes, field_selector)

    calls = [(kind, None) for kind in SURVEY_KINDS] + [("Event", "type=Warning")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        listed = list(pool.map(lambda call: read(*call), calls))
    objs = {kind: items for (kind, _), items in zip(calls, listed, strict=True) if kind != "Event"}
    warnings = listed[-1]
    survey = survey_listed(
        objs, warnings, namespace, window_minutes, limits=limits, now=now, notes=notes, context=context
    )
    ready = ready_workloads(objs, survey, namespace_snapshot(objs, namespace, context, now))
    survey["suspects"] += scan_ready_logs(kube, context, ready, limits.logs, notes)
    return survey


def ready_workloads(
    objs: dict[str, list[dict[str, Any]]], survey: dict[str, Any], snapshot: Snapshot
) -> list[tuple[dict[str, Any], ObjectRef]]:
    """A ready pod of each counted workload that is not a suspect (oldest first)."""
    inventory = {ObjectRef.from_dict(r).key for r in survey["inventory"]}
    suspects = {ObjectRef.from_dict(s["subject"]).key for s in survey["suspects"]}
    return [
        (pod, owner) for pod, owner in candidates(objs["Pod"], snapshot, suspects) if owner.key in inventory
    ]


def scan_ready_logs(
    kube: KubernetesPort,
    context: Any,
    ready: list[tuple[dict[str, Any], ObjectRef]],
    limits: LogScanLimits,
    notes: list[str],
) -> list[dict[str, Any]]:
    """Suspects among the workloads that look fine: their ready pods log a cause that persists (the
    newest workloads' pods are read when there are more than `limits.max_pods`)."""
    if len(ready) > limits.max_pods:
        notes.append(f"logs of {limits.max_pods} of {len(ready)} ready workloads read")
    return scan(kube, context, ready[-limits.max_pods :] if limits.max_pods > 0 else [], limits, notes)


def gather_member(
    kube: KubernetesPort,
    context: Any,
    suspect: dict[str, Any],
    window_minutes: int,
    limits: GatherLimits,
    clock: Callable[[], float],
) -> dict[str, Any]:
    """One suspect's full evidence (with the log tails the scan read, when it was found that way)."""
    ref = ObjectRef.from_dict(suspect["subject"])
    evidence = gather_evidence(
        kube, context, ref.kind, ref.namespace, ref.name, window_minutes, limits=limits, clock=clock
    )
    member = {k: v for k, v in suspect.items() if k not in ("logs", "pod")}
    return {**member, "evidence": with_scanned_logs(evidence, suspect).to_dict()}


def namespace_snapshot(
    objs: dict[str, list[dict[str, Any]]], namespace: str, context: Any, now: float
) -> Snapshot:
    snapshot = Snapshot(context=str(getattr(context, "name", context)), collected_at=now)
    snapshot.namespaces_in_scope = frozenset({namespace})
    snapshot.pods, snapshot.replica_sets = objs["Pod"], objs["ReplicaSet"]
    snapshot.jobs, snapshot.deployments = objs["Job"], objs["Deployment"]
    return snapshot


def survey_listed(
    objs: dict[str, list[dict[str, Any]]],
    warnings: list[dict[str, Any]],
    namespace: str,
    window_minutes: int,
    *,
    limits: TriageLimits,
    now: float,
    notes: list[str],
    context: Any = None,
) -> dict[str, Any]:
    """The survey over objects already listed (one namespace's share of cluster-wide lists, for the
    cluster investigation: ai/cluster_triage.py)."""
    snapshot = namespace_snapshot(objs, namespace, context, now)
    inventory = _inventory(objs)
    known = {ref.key for ref in inventory}
    suspects: dict[str, Suspect] = {}

    def suspect(ref: ObjectRef, why: str) -> None:
        if ref.key in known and ref.key not in suspects:
            suspects[ref.key] = Suspect(ref, why)

    # What the insight scanner calls failing (the namespace was asked for explicitly: none excluded).
    policy = ScanPolicy(excluded_namespaces=frozenset(), max_health_targets=limits.max_suspects * 4)
    for target, why in health.failing_targets(snapshot, policy):
        suspect(ObjectRef(target.kind, target.name, target.namespace), why)
    for obj, why in _short_of_replicas(objs, snapshot, policy):
        suspect(ObjectRef.of(obj), why)
    by_key = {ObjectRef.of(o).key: o for kind in objs for o in objs[kind]}
    horizon = now - window_minutes * 60
    for event in sorted(warnings, key=lambda e: event_last_seen(e) or 0.0, reverse=True):
        seen = event_last_seen(event)
        if seen is not None and seen < horizon:
            continue
        ref = _owner_of_involved(event, by_key, snapshot)
        if ref is not None:
            suspect(ref, f"Warning {event.get('reason')}: {str(event.get('message') or '')[:120]}")
    for svc, why in _services_without_endpoints(objs):
        suspect(ObjectRef.of(svc), why)
    for claim in objs["PersistentVolumeClaim"]:
        phase = (claim.get("status") or {}).get("phase") or "Pending"
        if phase != "Bound":
            suspect(ObjectRef.of(claim), f"claim {phase}")
    for hpa in objs["HorizontalPodAutoscaler"]:
        for ctype in ("AbleToScale", "ScalingActive"):
            cond = condition(hpa, ctype)
            if cond and cond.get("status") == "False":
                suspect(ObjectRef.of(hpa), f"{ctype}=False: {cond.get('reason')}")
                break
    for quota in objs["ResourceQuota"]:
        full = _exhausted(quota)
        if full:
            notes.append(
                f"ResourceQuota {name_of(quota)} is used up ({', '.join(full)}): new pods will be refused"
            )
    return {
        "inventory": [ref.to_dict() for ref in inventory],
        "suspects": [{"subject": s.ref.to_dict(), "why": s.why} for s in suspects.values()],
        "notes": notes,
    }


def _inventory(objs: dict[str, list[dict[str, Any]]]) -> list[ObjectRef]:
    """The workloads a person would count: controllers a user owns, bare pods, Services that select
    pods, claims and autoscalers (a CronJob's Jobs and a Deployment's ReplicaSets are not counted)."""
    refs = [
        ObjectRef.of(o) for kind in ("Deployment", "StatefulSet", "DaemonSet", "CronJob") for o in objs[kind]
    ]
    refs += [ObjectRef.of(j) for j in objs["Job"] if not controller_of(j)]
    refs += [ObjectRef.of(p) for p in objs["Pod"] if not controller_of(p)]
    refs += [ObjectRef.of(rs) for rs in objs["ReplicaSet"] if not controller_of(rs)]
    refs += [ObjectRef.of(s) for s in objs["Service"] if _selects_pods(s)]
    refs += [
        ObjectRef.of(o) for kind in ("PersistentVolumeClaim", "HorizontalPodAutoscaler") for o in objs[kind]
    ]
    return refs


def _short_of_replicas(
    objs: dict[str, list[dict[str, Any]]], snapshot: Snapshot, policy: ScanPolicy
) -> list[tuple[dict[str, Any], str]]:
    """Long-running workloads with fewer ready replicas than wanted, past the start-up grace (a quota
    or a LimitRange that refuses every pod leaves no pod behind to look at)."""
    out = []
    for obj in [*objs["Deployment"], *objs["StatefulSet"], *objs["DaemonSet"]]:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if obj.get("kind") == "DaemonSet":
            wanted, ready = (
                int(status.get("desiredNumberScheduled") or 0),
                int(status.get("numberReady") or 0),
            )
        else:
            wanted, ready = int(spec.get("replicas", 1)), int(status.get("readyReplicas") or 0)
        if wanted > ready and snapshot.age(obj) >= policy.startup_grace_seconds:
            out.append((obj, f"{ready}/{wanted} replicas ready"))
    return out


def _owner_of_involved(
    event: dict[str, Any], by_key: dict[str, dict[str, Any]], snapshot: Snapshot
) -> ObjectRef | None:
    """The workload an event is about: a pod's or ReplicaSet's top controller, a Job's CronJob."""
    io = event.get("involvedObject") or {}
    ref = ObjectRef(str(io.get("kind") or ""), str(io.get("name") or ""), io.get("namespace") or None)
    obj = by_key.get(ref.key)
    if obj is None:
        return None  # gone since (a replaced pod): what replaced it is judged on its own
    if ref.kind in ("Pod", "ReplicaSet", "Job"):
        top = snapshot.owner_of(obj)
        return ObjectRef(top.kind, top.name, top.namespace or None)
    return ref


def _selects_pods(svc: dict[str, Any]) -> bool:
    spec = svc.get("spec") or {}
    return bool(spec.get("selector")) and spec.get("type") != "ExternalName"


def _services_without_endpoints(objs: dict[str, list[dict[str, Any]]]) -> list[tuple[dict[str, Any], str]]:
    endpoints = {name_of(e): e for e in objs["Endpoints"]}
    scaled_to_zero = [
        labels_of(pod_template(w))
        for w in [*objs["Deployment"], *objs["StatefulSet"]]
        if int((w.get("spec") or {}).get("replicas", 1)) == 0
    ]
    out = []
    for svc in objs["Service"]:
        if not _selects_pods(svc):
            continue
        subsets = (endpoints.get(name_of(svc)) or {}).get("subsets") or []
        if any(sub.get("addresses") for sub in subsets):
            continue
        selector = (svc.get("spec") or {}).get("selector") or {}
        if any(map_selector_matches(selector, labels) for labels in scaled_to_zero):
            continue  # it serves a workload someone scaled to zero: empty on purpose
        out.append((svc, "no ready endpoints"))
    return out


def _exhausted(quota: dict[str, Any]) -> list[str]:
    from kubilitics.ai.kube_json import parse_quantity

    status = quota.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    full = []
    for resource, limit in hard.items():
        cap, now = parse_quantity(limit), parse_quantity(used.get(resource))
        if cap is not None and now is not None and cap > 0 and now >= cap:
            full.append(f"{resource} {used.get(resource)}/{limit}")
    return full


# ---- phase 2: diagnose and roll up ---------------------------------------------------------------


def is_namespace_document(document: Any) -> bool:
    return isinstance(document, dict) and document.get("scope") == SCOPE


def diagnose_namespace(document: dict[str, Any]) -> dict[str, Any]:
    """The rolled-up diagnosis (the shape of `Diagnosis.to_dict`, plus `triage`)."""
    target = ObjectRef.from_dict(document["target"])
    inventory = [ObjectRef.from_dict(r) for r in document.get("inventory") or []]
    notes = list(document.get("notes") or [])
    problems: list[dict[str, Any]] = []
    in_progress: list[str] = []
    settled = True
    for member in document.get("members") or []:
        evidence = Evidence.from_dict(member["evidence"])
        result = diagnose(evidence)
        settled = settled and result.settled
        notes += [f"{evidence.target}: {n}" for n in result.notes]
        root = result.root_cause
        if root.category == HEALTHY:
            continue
        if root.category == UNKNOWN and not result.problems:
            in_progress += [f"{_label(evidence.target)}: {text}" for text in result.in_progress]
            continue
        top = next((f for f in result.findings if f.category == root.category), None)
        problems.append(
            {
                "subject": evidence.target,
                "category": root.category,
                "summary": root.summary,
                "confidence": root.confidence,
                "severity": result.severity,
                "analyzer": top.analyzer if top else "",
                "impact": _impact(evidence),
                "evidence": [c.to_dict() for c in result.evidence],
                "recommendations": result.recommendations,
                "affects": [],
                "_objects": set(evidence.objects),
            }
        )
    problems = _fold_services(problems)
    problems.sort(
        key=lambda p: (
            SEVERITY_ORDER.get(p["severity"], 9),
            -p["impact"],
            precedence(p["category"]),
            p["subject"].key,
        )
    )
    affected = len({p["subject"].key for p in problems} | {a for p in problems for a in p["affects"]})
    counted = _counted(inventory)
    triage = {
        "workloads": len(inventory),
        "by_kind": counted,
        "examined": len(document.get("members") or []),
        "affected": affected,
        "affected_workloads": [_label(p["subject"]) for p in problems],
    }
    if not problems:
        return _healthy(target, document, triage, in_progress, settled, notes)
    return _broken(target, problems, triage, in_progress, settled, notes)


def _impact(evidence: Evidence) -> float:
    """How much of what the subject provides is down (see USER_FACING ... ONE_OFF)."""
    obj = evidence.target_object or {}
    kind, spec, status = evidence.target.kind, obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Service":
        return USER_FACING
    if kind in ("Job", "CronJob"):
        return ONE_OFF
    if kind in ("PersistentVolumeClaim", "HorizontalPodAutoscaler"):
        return SUPPORTING
    if kind == "Pod":
        return SERVING + (0.0 if pod_is_ready(obj) else 1.0)
    if kind == "DaemonSet":
        wanted, ready = int(status.get("desiredNumberScheduled") or 0), int(status.get("numberReady") or 0)
    else:
        wanted, ready = int(spec.get("replicas", 1)), int(status.get("readyReplicas") or 0)
    return SERVING + (max(0, wanted - ready) / wanted if wanted else 0.0)


def _fold_services(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A Service that is empty because its workload is broken is one problem, not two: the
    workload's, ranked as user-facing and naming the Service it takes down."""
    kept = []
    for problem in problems:
        if problem["subject"].kind == "Service":
            backend = next(
                (
                    other
                    for other in problems
                    if other is not problem
                    and other["subject"].kind != "Service"
                    and other["category"] == problem["category"]
                    and other["subject"].key in problem["_objects"]
                ),
                None,
            )
            if backend is not None:
                backend["affects"].append(problem["subject"].key)
                backend["impact"] = max(backend["impact"], USER_FACING)
                continue
        kept.append(problem)
    for problem in kept:
        problem.pop("_objects", None)
    return kept


def _counted(inventory: list[ObjectRef]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ref in inventory:
        counts[ref.kind] = counts.get(ref.kind, 0) + 1
    return counts


def _healthy(
    target: ObjectRef,
    document: dict[str, Any],
    triage: dict[str, Any],
    in_progress: list[str],
    settled: bool,
    notes: list[str],
) -> dict[str, Any]:
    what = ", ".join(f"{n} {kind}" for kind, n in sorted(triage["by_kind"].items())) or "nothing"
    window = int(document.get("window_minutes") or 60)
    closer = f"; {triage['examined']} looked at closely, none broken" if triage["examined"] else ""
    if in_progress:
        summary = (
            f"Namespace {target.name}: nothing has failed, but {len(in_progress)} thing(s) are still "
            f"starting: {'; '.join(in_progress[:3])}."
        )
        category, confidence, recs = (
            UNKNOWN,
            0.4,
            [
                {
                    "priority": 1,
                    "action": "wait_and_recheck",
                    "details": f"Check namespace {target.name} again in a minute.",
                }
            ],
        )
    else:
        summary = (
            f"Namespace {target.name} is healthy: 0 of {triage['workloads']} workloads affected "
            f"({what}){closer}; "
            f"no failing containers or unexplained warnings in the last {window} minutes."
        )
        category, confidence, recs = HEALTHY, (0.9 if not notes else 0.7), []
    return {
        "resource": target.to_dict(),
        "root_cause": {"category": category, "summary": summary, "confidence": confidence},
        "severity": "low",
        "findings_summary": summary,
        "evidence": [],
        "recommendations": recs,
        "findings": [],
        "problems": [],
        "in_progress": in_progress,
        "settled": settled,
        "notes": notes,
        "triage": triage,
    }


def _broken(
    target: ObjectRef,
    problems: list[dict[str, Any]],
    triage: dict[str, Any],
    in_progress: list[str],
    settled: bool,
    notes: list[str],
) -> dict[str, Any]:
    top = problems[0]
    lines = [f"{_label(p['subject'])}: {p['summary']}" for p in problems[:MAX_SUMMARY_PROBLEMS]]
    more = len(problems) - MAX_SUMMARY_PROBLEMS
    summary = (
        f"{triage['affected']} of {triage['workloads']} workloads in namespace {target.name} affected "
        f"({len(problems)} problem(s)). " + " ".join(f"[{i + 1}] {line}" for i, line in enumerate(lines))
    ) + (f" ... and {more} more." if more > 0 else "")
    recommendations: list[dict[str, Any]] = []
    for problem in problems:
        for rec in problem["recommendations"]:
            if len(recommendations) < MAX_RECOMMENDATIONS and rec not in recommendations:
                recommendations.append(rec)
    recommendations = [{**rec, "priority": i + 1} for i, rec in enumerate(recommendations)]
    findings = [
        {
            "category": p["category"],
            "summary": p["summary"],
            "confidence": p["confidence"],
            "severity": p["severity"],
            "subject": p["subject"].to_dict(),
            "analyzer": p["analyzer"],
            "affects": p["affects"],
            "citations": p["evidence"],
            "recommendations": p["recommendations"],
        }
        for p in problems
    ]
    return {
        "resource": target.to_dict(),
        "root_cause": {
            "category": top["category"],
            "summary": f"{_label(top['subject'])}: {top['summary']}",
            "confidence": top["confidence"],
            "subject": top["subject"].to_dict(),
        },
        "severity": top["severity"],
        "findings_summary": summary,
        "evidence": top["evidence"],
        "recommendations": recommendations,
        "findings": findings,
        "problems": [f"{_label(p['subject'])}: {p['category']}" for p in problems],
        "in_progress": in_progress,
        "settled": settled,
        "notes": notes,
        "triage": triage,
    }


def merged_evidence(document: dict[str, Any]) -> Evidence:
    """One Evidence over every suspect's (for the LLM's digest and the action proposals)."""
    merged = Evidence(
        target=ObjectRef.from_dict(document["target"]),
        collected_at=float(document.get("collected_at") or 0.0),
        window_minutes=int(document.get("window_minutes") or 60),
        context=document.get("context"),
        notes=list(document.get("notes") or []),
    )
    for member in document.get("members") or []:
        evidence = Evidence.from_dict(member["evidence"])
        merged.objects.update(evidence.objects)
        merged.add_events(evidence.events)
        merged.logs.extend(evidence.logs)
        merged.notes.extend(evidence.notes)
        merged.nearby_pods.extend(evidence.nearby_pods)
        for ref in evidence.absent:
            merged.add_absent(ref)
    return merged


def _label(ref: ObjectRef) -> str:
    return f"{ref.kind} {ref.name}"


def read_listed(
    kube: KubernetesPort,
    context: Any,
    kind: str,
    namespace: str | None,
    limit: int,
    notes: list[str],
    field_selector: str | None = None,
) -> list[dict[str, Any]]:
    """One list of `kind` in `namespace` (None: every namespace), at most `limit` items, each with its
    kind. A list that fails is a note, except Pods: where they cannot be read nothing is healthy."""
    try:
        rtype = kube.resource_type(context, kind)
        page = kube.list_objects(
            context, rtype, namespace=namespace, field_selector=field_selector, limit=limit
        )
    except KubiliticsError as exc:
        if kind == "Pod":
            raise
        notes.append(f"could not list {kind}{f' in {namespace}' if namespace else ''}: {exc.message}")
        return []
    if (page.get("metadata") or {}).get("continue"):
        notes.append(f"more than {limit} {kind} objects: only the first {limit} read")
    items = list(page.get("items") or [])
    for item in items:
        item.setdefault("kind", rtype.kind)
    return items
