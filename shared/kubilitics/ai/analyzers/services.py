"""Services that do not reach their pods: a selector that matches no pod (no endpoints at all), or a
targetPort the selected pods do not serve (endpoints exist, connections are refused)."""

from __future__ import annotations

from typing import Any

from kubilitics.ai.analyzers._common import describe, workload_ref
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_field
from kubilitics.ai.kube_json import (
    controller_of,
    labels_of,
    map_selector_matches,
    name_of,
    namespace_of,
    pod_finished,
)


def analyze(ev: Evidence) -> list[Finding]:
    findings: list[Finding] = []
    for svc in ev.of_kind("Service"):
        spec = svc.get("spec") or {}
        selector = spec.get("selector") or {}
        if not selector or spec.get("type") == "ExternalName":
            continue  # endpoints managed by hand, or a DNS alias: nothing to match
        selected = [
            p for p in ev.pods if map_selector_matches(selector, labels_of(p)) and not pod_finished(p)
        ]
        finding = _port_mismatch(ev, svc, selected) if selected else _selector_mismatch(ev, svc, selector)
        if finding:
            findings.append(finding)
    return findings


def _endpoint_count(ev: Evidence, svc: dict[str, Any]) -> int | None:
    """Addresses (ready or not) behind the Service; None when the evidence has neither form."""
    ns, name = namespace_of(svc), name_of(svc)
    slices = [
        s
        for s in ev.of_kind("EndpointSlice")
        if labels_of(s).get("kubernetes.io/service-name") == name and namespace_of(s) == ns
    ]
    if slices:
        return sum(len(s.get("endpoints") or []) for s in slices)
    endpoints = ev.get("Endpoints", name, ns)
    if endpoints is not None:
        return sum(
            len(sub.get("addresses") or []) + len(sub.get("notReadyAddresses") or [])
            for sub in endpoints.get("subsets") or []
        )
    return None


def _selector_mismatch(ev: Evidence, svc: dict[str, Any], selector: dict[str, str]) -> Finding | None:
    count = _endpoint_count(ev, svc)
    if count:
        return None
    ref = ObjectRef.of(svc)
    text = ", ".join(f"{k}={v}" for k, v in selector.items())
    cites: list[Citation] = [cite_field(svc, "spec.selector", text)]
    if count == 0:
        cites.append(
            cite_field(ObjectRef("EndpointSlice", name_of(svc), namespace_of(svc)), "endpoints", "none")
        )
    candidates = [p for p in ev.nearby_pods if not pod_finished(p)] + [
        p for p in ev.pods if not pod_finished(p)
    ]
    best, score = None, -1
    for pod in candidates:
        labels = labels_of(pod)
        s = sum(1 for k, v in selector.items() if labels.get(k) == v) * 2 + sum(
            1 for k in selector if k in labels
        )
        if s > score:
            best, score = pod, s
    recs: list[Recommendation] = []
    if best is not None and score > 0:
        labels = labels_of(best)
        proposed = {k: labels[k] for k in selector if k in labels}
        owner = controller_of(best) or {}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "pod-template-hash")
        cites.append(
            cite_field(ObjectRef("Pod", name_of(best), namespace_of(best)), "metadata.labels", shown)
        )
        summary = (
            f"Service {ref.name} selects pods with {text}, but no pod has those labels, so it has no "
            f"endpoints; the closest pods ({owner.get('kind', 'Pod')} {owner.get('name', name_of(best))}) "
            f"are labelled {shown}."
        )
        if proposed and proposed != selector and len(proposed) == len(selector):
            recs.append(
                Recommendation(
                    "fix_service_selector",
                    f"Change the selector of Service {ref.name} from {text} to "
                    f"{', '.join(f'{k}={v}' for k, v in proposed.items())} to match the pods of "
                    f"{owner.get('kind', 'Pod')} {owner.get('name', name_of(best))}.",
                    ref,
                    {"spec": {"selector": proposed}},
                )
            )
        confidence = 0.95
    else:
        pods_there = len(candidates)
        summary = (
            f"Service {ref.name} selects pods with {text}, but no pod in namespace {ref.namespace} has those "
            f"labels ({pods_there} pod(s) there), so it has no endpoints."
        )
        confidence = 0.85 if pods_there else 0.7
    if not recs:
        recs.append(
            Recommendation(
                "fix_service_selector",
                f"Make the selector of Service {ref.name} ({text}) match the labels of the pods it should "
                "serve, or "
                "deploy the workload it expects.",
                ref,
            )
        )
    return Finding(
        category="service_selector_mismatch",
        summary=summary,
        confidence=confidence,
        severity="high",
        subject=ref,
        citations=cites,
        recommendations=recs,
    )


def _port_mismatch(ev: Evidence, svc: dict[str, Any], pods: list[dict[str, Any]]) -> Finding | None:
    ref = ObjectRef.of(svc)
    declared: dict[Any, int] = {}
    names: dict[str, int] = {}
    for pod in pods:
        for c in (pod.get("spec") or {}).get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("containerPort"):
                    declared[p["containerPort"]] = p["containerPort"]
                    if p.get("name"):
                        names[p["name"]] = p["containerPort"]
    if not declared:
        return None  # the pods declare no ports: nothing to compare a targetPort with
    wrong = []
    for port in (svc.get("spec") or {}).get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        if isinstance(target, str) and not target.isdigit():
            if target not in names:
                wrong.append((port, target))
        elif int(target) not in declared:
            wrong.append((port, target))
    if not wrong:
        return None
    workload = workload_ref(ev, pods[0])
    served = ", ".join(str(p) for p in sorted(declared))
    port, target = wrong[0]
    right = next(iter(declared)) if len(declared) == 1 else None
    cites = [
        cite_field(svc, f"spec.ports[{port.get('port')}].targetPort", target),
        cite_field(pods[0], "spec.containers[*].ports[*].containerPort", served),
    ]
    recs = [
        Recommendation(
            "fix_service_target_port",
            f"Set targetPort of port {port.get('port')} of Service {ref.name} to "
            f"{right if right else 'one of ' + served} (the port the pods of {describe(workload)} serve); it "
            f"sends traffic to {target}.",
            ref,
            {"spec": {"ports": [{"port": port.get("port"), "targetPort": right}]}} if right else None,
        )
    ]
    return Finding(
        category="service_port_mismatch",
        summary=(
            f"Service {ref.name} forwards port {port.get('port')} to targetPort {target}, but its pods "
            f"({describe(workload)}) serve {served}: connections through the Service are refused."
        ),
        confidence=0.88,
        severity="high",
        subject=ref,
        citations=cites,
        recommendations=recs,
    )


ANALYZER = Analyzer("services", ("service_selector_mismatch", "service_port_mismatch"), analyze)
