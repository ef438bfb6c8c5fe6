"""HorizontalPodAutoscalers that cannot scale on utilization because the containers they measure
have no request for the resource (utilization is usage / request: without a request it is undefined)."""

from __future__ import annotations

import re
from typing import Any

from kubilitics.ai.analyzers._common import describe, is_recent, template_patch
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_event, cite_field
from kubilitics.ai.kube_json import condition, container_requests, namespace_of, pod_template

MISSING_REQUEST = re.compile(r"missing request for (\w[\w.-]*)(?: in container (\S+))?")
DEFAULT_REQUEST = {"cpu": "100m", "memory": "128Mi"}


def analyze(ev: Evidence) -> list[Finding]:
    findings = []
    for hpa in ev.of_kind("HorizontalPodAutoscaler"):
        finding = _hpa(ev, hpa)
        if finding:
            findings.append(finding)
    return findings


def _hpa(ev: Evidence, hpa: dict[str, Any]) -> Finding | None:
    ref = ObjectRef.of(hpa)
    spec = hpa.get("spec") or {}
    target_ref = spec.get("scaleTargetRef") or {}
    workload = ev.get(str(target_ref.get("kind")), str(target_ref.get("name")), namespace_of(hpa))
    cites: list[Citation] = []
    reported: set[str] = set()
    active = condition(hpa, "ScalingActive")
    if active and active.get("status") == "False" and MISSING_REQUEST.search(str(active.get("message"))):
        cites.append(
            cite_field(
                hpa,
                "status.conditions[ScalingActive]",
                f"False ({active.get('reason')}): {active.get('message')}",
            )
        )
        reported.update(m.group(1) for m in MISSING_REQUEST.finditer(str(active.get("message"))))
    for event in ev.events_for(hpa):
        if is_recent(ev, event, 1800) and MISSING_REQUEST.search(str(event.get("message"))):
            cites.append(cite_event(event))
            reported.update(m.group(1) for m in MISSING_REQUEST.finditer(str(event.get("message"))))
            break
    # The spec alone shows it: a Utilization target on a resource some container does not request.
    lacking: dict[str, list[str]] = {}
    if workload is not None:
        pod_spec = pod_template(workload).get("spec") or {}
        for metric in spec.get("metrics") or []:
            resource = metric.get("resource") or metric.get("containerResource") or {}
            target = resource.get("target") or {}
            if (
                metric.get("type") not in ("Resource", "ContainerResource")
                or target.get("type") != "Utilization"
            ):
                continue
            name = str(resource.get("name"))
            for c in pod_spec.get("containers") or []:
                if metric.get("type") == "ContainerResource" and c.get("name") != resource.get("container"):
                    continue
                if container_requests(c, name) is None:
                    lacking.setdefault(name, []).append(str(c.get("name")))
    for name, names in lacking.items():
        cites.append(
            cite_field(
                workload or {}, f"spec.template.spec.containers[{names[0]}].resources.requests.{name}", None
            )
        )
    resources = sorted(reported | set(lacking))
    if not resources:
        return None
    wref = (
        ObjectRef.of(workload)
        if workload
        else ObjectRef(str(target_ref.get("kind")), str(target_ref.get("name")), namespace_of(hpa))
    )
    names = sorted({n for ns in lacking.values() for n in ns})
    patch = None
    if workload is not None and lacking:
        patch = template_patch(
            wref.kind,
            {
                "containers": [
                    {
                        "name": n,
                        "resources": {
                            "requests": {
                                r: DEFAULT_REQUEST.get(r, "100m") for r, cs in lacking.items() if n in cs
                            }
                        },
                    }
                    for n in names
                ]
            },
        )
    what = " and ".join(resources)
    examples = ", ".join(f"{r}: {DEFAULT_REQUEST.get(r, '100m')}" for r in resources)
    return Finding(
        category="hpa_missing_requests",
        summary=(
            f"HorizontalPodAutoscaler {ref.name} cannot compute {what} utilization for {describe(wref)}: "
            f"container(s) {', '.join(names) or 'of its pods'} have no {what} request, so it never scales."
        ),
        confidence=0.95 if reported else 0.85,
        severity="medium",
        subject=ref,
        citations=cites,
        recommendations=[
            Recommendation(
                "set_resource_requests",
                f"Set resources.requests.{what} on container(s) {', '.join(names) or '(all)'} of "
                f"{describe(wref)} "
                f"(e.g. {examples}, sized to real usage).",
                wref,
                patch,
            )
        ],
    )


ANALYZER = Analyzer("hpa", ("hpa_missing_requests",), analyze)
