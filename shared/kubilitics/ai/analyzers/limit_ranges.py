"""LimitRanges that refuse pods: the LimitRanger admission plugin rejects a pod whose requests or
limits fall outside the namespace's LimitRange, and the controller reports FailedCreate ("is
forbidden: maximum cpu usage per Container is 500m, but limit is 1"). The workload stays short of
replicas, with no pod to look at.

The taxonomy has no category of its own for this: it is reported as `quota_exceeded` (a namespace
policy forbids creating the pods; the same FailedCreate evidence, the same kind of fix), with a
summary and a recommendation that name the LimitRange and the bound.
"""

from __future__ import annotations

import re
from typing import Any

from kubilitics.ai.analyzers._common import describe, is_recent
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.analyzers.quota import CREATORS, _outermost, _short
from kubilitics.ai.evidence import Evidence
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_event, cite_field
from kubilitics.ai.kube_json import namespace_of

# "maximum cpu usage per Container is 500m, but limit is 1" / "minimum memory usage per Pod is 64Mi,
# but request is 32Mi" / "cpu max limit to request ratio per Container is 2, but provided ratio is 10"
BOUND = re.compile(
    r"(maximum|minimum) ([\w./-]+) usage per (Container|Pod) is ([^,\]]+), but (limit|request) is ([^,\]]+)"
)
RATIO = re.compile(
    r"([\w./-]+) max limit to request ratio per (Container|Pod) is ([^,\]]+), but provided ratio is ([^,\]]+)"
)


def analyze(ev: Evidence) -> list[Finding]:
    findings: dict[str, Finding] = {}
    for obj in [o for k in CREATORS for o in ev.of_kind(k)]:
        events = [e for e in ev.events_for(obj, reason="FailedCreate") if is_recent(ev, e, 900)]
        refused = [
            e for e in events if BOUND.search(str(e.get("message"))) or RATIO.search(str(e.get("message")))
        ]
        if not refused or not _short(ev, obj):
            continue
        finding = _finding(ev, obj, refused[0])
        findings.setdefault(str(finding.subject), finding)
    return list(findings.values())


def _finding(ev: Evidence, obj: dict[str, Any], event: dict[str, Any]) -> Finding:
    owner = _outermost(ev, obj)
    message = str(event.get("message") or "")
    cites: list[Citation] = [cite_event(event)]
    bound = BOUND.search(message)
    if bound:
        side, resource, per, allowed, field, given = bound.groups()
        rule = f"{side} {resource} per {per} is {allowed.strip()}"
        fix = f"{'at most' if side == 'maximum' else 'at least'} {allowed.strip()}"
        what = f"its {resource} {field} is {given.strip()}"
        kind = "max" if side == "maximum" else "min"
    else:
        ratio = RATIO.search(message)
        assert ratio is not None
        resource, per, allowed, given = ratio.groups()
        rule = f"{resource} limit/request ratio per {per} is at most {allowed.strip()}"
        fix = f"a limit at most {allowed.strip()} times the request"
        what = f"its ratio is {given.strip()}"
        kind = "maxLimitRequestRatio"
    limit_range = _limit_range(ev, namespace_of(obj), per, kind, resource)
    name = f"LimitRange {limit_range['metadata']['name']}" if limit_range else "a LimitRange"
    if limit_range:
        cites.append(cite_field(limit_range, f"spec.limits[type={per}].{kind}.{resource}", allowed.strip()))
    return Finding(
        category="quota_exceeded",
        summary=(
            f"{describe(owner)} cannot create its pods: {name} in namespace {namespace_of(obj)} says {rule}, "
            f"and {what}, so the API server refuses every pod."
        ),
        confidence=0.9,
        severity="high",
        subject=owner,
        citations=cites,
        recommendations=[
            Recommendation(
                "fit_limit_range",
                f"Give the containers of {describe(owner)} {fix} for {resource}, or change {name} if the "
                "workload really needs more.",
                owner,
            )
        ],
    )


def _limit_range(
    ev: Evidence, namespace: str | None, per: str, kind: str, resource: str
) -> dict[str, Any] | None:
    for limit_range in ev.of_kind("LimitRange"):
        if namespace_of(limit_range) != namespace:
            continue
        for item in (limit_range.get("spec") or {}).get("limits") or []:
            if item.get("type") == per and resource in (item.get(kind) or {}):
                return limit_range
    return None


ANALYZER = Analyzer("limit_ranges", ("quota_exceeded",), analyze)
