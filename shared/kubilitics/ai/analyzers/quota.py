"""ResourceQuotas that forbid creating pods: the controller's FailedCreate says "exceeded quota" (or
"must specify" a request or limit the quota counts), and the workload stays short of replicas."""

from __future__ import annotations

import re
from typing import Any

from kubilitics.ai.analyzers._common import describe, is_recent
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Finding, Recommendation, cite_event, cite_field
from kubilitics.ai.kube_json import condition, controller_of, namespace_of, parse_quantity

EXCEEDED = re.compile(
    r"exceeded quota: ([\w.-]+), requested: ([^,]+(?:,[^,]+?)*?), used: (.+?), limited: (.+?)$"
)
MUST_SPECIFY = re.compile(r"failed quota: ([\w.-]+): must specify ([\w.,\s-]+)")
CREATORS = ("ReplicaSet", "Job", "StatefulSet", "DaemonSet", "Deployment", "CronJob")


def analyze(ev: Evidence) -> list[Finding]:
    findings: dict[tuple[str, str], Finding] = {}
    for obj in [o for k in CREATORS for o in ev.of_kind(k)]:
        events = [e for e in ev.events_for(obj, reason="FailedCreate") if is_recent(ev, e, 900)]
        replica_failure = condition(obj, "ReplicaFailure")
        messages = [str(e.get("message") or "") for e in events]
        if replica_failure and replica_failure.get("status") == "True":
            messages.append(str(replica_failure.get("message") or ""))
        quota_msgs = [m for m in messages if "exceeded quota" in m or "failed quota" in m]
        if not quota_msgs or not _short(ev, obj):
            continue
        finding = _finding(ev, obj, quota_msgs[0], events)
        key = (str(finding.subject), finding.recommendations[0].details)
        findings.setdefault(key, finding)
    return list(findings.values())


def _short(ev: Evidence, obj: dict[str, Any]) -> bool:
    """Is the workload still missing pods (the quota error is current, not history)?"""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    kind = obj.get("kind")
    if kind in ("ReplicaSet", "StatefulSet"):
        return int(status.get("replicas") or 0) < int(spec.get("replicas", 1))
    if kind == "Deployment":
        cond = condition(obj, "ReplicaFailure")
        return bool(cond and cond.get("status") == "True") or int(status.get("replicas") or 0) < int(
            spec.get("replicas", 1)
        )
    if kind == "Job":
        done = condition(obj, "Complete") or {}
        return done.get("status") != "True" and int(status.get("active") or 0) < int(
            spec.get("parallelism", 1)
        )
    if kind == "DaemonSet":
        return int(status.get("currentNumberScheduled") or 0) < int(status.get("desiredNumberScheduled") or 0)
    return True


def _finding(ev: Evidence, obj: dict[str, Any], message: str, events: list[dict[str, Any]]) -> Finding:
    owner = _outermost(ev, obj)
    ns = namespace_of(obj)
    cites = [
        cite_event(e) for e in events if str(e.get("message")) == message or message in str(e.get("message"))
    ][:1]
    if not cites and events:
        cites = [cite_event(events[0])]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if obj.get("kind") in ("ReplicaSet", "StatefulSet"):
        cites.append(
            cite_field(obj, "status.replicas", f"{status.get('replicas', 0)}/{spec.get('replicas', 1)}")
        )
    m = EXCEEDED.search(message)
    if m:
        quota_name = m.group(1)
        requested, used, limited = (_pairs(m.group(i)) for i in (2, 3, 4))
        quota = ev.get("ResourceQuota", quota_name, ns)
        if quota:
            cites.append(cite_field(quota, "spec.hard", ", ".join(f"{k}={v}" for k, v in limited.items())))
        over = [k for k in requested if k in limited]
        resource = over[0] if over else next(iter(limited), "?")
        missing = max(1, _missing(obj))
        proposed = _raise(used.get(resource), requested.get(resource), missing)
        summary = (
            f"{describe(owner)} cannot create its pods: ResourceQuota {quota_name} allows {resource}="
            f"{limited.get(resource)} and {used.get(resource)} is used, each new pod needs "
            f"{requested.get(resource)}; {missing} pod(s) are missing."
        )
        recs = [
            Recommendation(
                "raise_resource_quota",
                f"Raise {resource} in ResourceQuota {quota_name} from {limited.get(resource)} to "
                f"{proposed or 'enough for all replicas'}"
                f", or lower the replicas/requests of {describe(owner)} (or of other workloads in namespace "
                f"{ns}).",
                ObjectRef("ResourceQuota", quota_name, ns),
                {"spec": {"hard": {resource: proposed}}} if proposed else None,
            )
        ]
        confidence = 0.95
    else:
        must = MUST_SPECIFY.search(message)
        quota_name = must.group(1) if must else "?"
        needed = must.group(2).strip() if must else "requests and limits"
        summary = (
            f"{describe(owner)} cannot create its pods: ResourceQuota {quota_name} requires every pod to set "
            f"{needed}, and its pod template does not."
        )
        recs = [
            Recommendation(
                "set_resource_requests",
                f"Set {needed} on every container of {describe(owner)} (or add a LimitRange with defaults "
                f"to namespace {ns}).",
                owner,
            )
        ]
        confidence = 0.9
    return Finding(
        category="quota_exceeded",
        summary=summary,
        confidence=confidence,
        severity="high",
        subject=owner,
        citations=cites,
        recommendations=recs,
    )


def _outermost(ev: Evidence, obj: dict[str, Any]) -> ObjectRef:
    ref = controller_of(obj)
    if ref and ref.get("kind") in ("Deployment", "CronJob"):
        owner = ev.get(str(ref.get("kind")), str(ref.get("name")), namespace_of(obj))
        if owner:
            return ObjectRef.of(owner)
    return ObjectRef.of(obj)


def _missing(obj: dict[str, Any]) -> int:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if obj.get("kind") == "Job":
        return int(spec.get("parallelism", 1)) - int(status.get("active") or 0)
    return int(spec.get("replicas", 1)) - int(status.get("replicas") or 0)


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        if "=" in part:
            k, v = part.strip().split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _raise(used: str | None, requested: str | None, missing: int) -> str | None:
    """used + missing x requested, written like the quota's own numbers."""
    if used is None or requested is None:
        return None
    cpu = used.endswith("m") or requested.endswith("m")
    u, r = parse_quantity(used, cpu=cpu), parse_quantity(requested, cpu=cpu)
    if u is None or r is None:
        return None
    total = u + r * missing
    if cpu and (used.endswith("m") or requested.endswith("m")):
        return f"{round(total * 1000)}m"
    if total == int(total) and not any(used.endswith(s) for s in ("Ki", "Mi", "Gi", "Ti")):
        return str(int(total))
    for unit, size in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if total >= size:
            return f"{-(-total // size):.0f}{unit}"
    return str(int(total))


ANALYZER = Analyzer("quota", ("quota_exceeded",), analyze)
