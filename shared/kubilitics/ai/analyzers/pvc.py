"""PersistentVolumeClaims that do not bind (Pending): a StorageClass that does not exist, no class
and no default class, no matching volume, a provisioner that does not answer; or a claim a pod
refers to that does not exist at all."""

from __future__ import annotations

from typing import Any

from kubilitics.ai.analyzers._common import describe, is_recent, outage_severity, workload_ref
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding, Recommendation, cite_absent, cite_event, cite_field
from kubilitics.ai.kube_json import meta, name_of, namespace_of, pod_finished, pod_node

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def analyze(ev: Evidence) -> list[Finding]:
    findings: list[Finding] = []
    claims = {ObjectRef.of(c): c for c in ev.of_kind("PersistentVolumeClaim")}
    users: dict[ObjectRef, list[dict[str, Any]]] = {}
    for pod in ev.pods:
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                users.setdefault(ObjectRef("PersistentVolumeClaim", claim, namespace_of(pod)), []).append(pod)
    for ref, claim in claims.items():
        phase = (claim.get("status") or {}).get("phase", "Pending")
        if phase == "Bound":
            continue
        finding = _unbound(ev, claim, phase, users.get(ref, []))
        if finding:
            findings.append(finding)
    for ref, pods in users.items():
        waiting = [p for p in pods if not pod_node(p) and not pod_finished(p)]
        if ref not in claims and ev.is_absent(ref.kind, ref.name, ref.namespace) and waiting:
            wref = workload_ref(ev, waiting[0])
            findings.append(
                Finding(
                    category="unbound_pvc",
                    summary=(
                        f"{describe(wref)} mounts PersistentVolumeClaim {ref.name}, which does not exist, "
                        "so its pods "
                        "cannot be scheduled."
                    ),
                    confidence=0.93,
                    severity=outage_severity(ev),
                    subject=wref,
                    citations=[cite_absent(ref), *_scheduling_events(ev, waiting[0])],
                    recommendations=[
                        Recommendation(
                            "create_pvc",
                            f"Create PersistentVolumeClaim {ref.name} in namespace {ref.namespace}, or fix "
                            "the "
                            f"claimName in {describe(wref)}.",
                            ref,
                        )
                    ],
                )
            )
    return findings


def _unbound(ev: Evidence, claim: dict[str, Any], phase: str, pods: list[dict[str, Any]]) -> Finding | None:
    ref = ObjectRef.of(claim)
    spec = claim.get("spec") or {}
    sc_name = spec.get("storageClassName")
    events = [e for e in ev.events_for(claim) if is_recent(ev, e, 1800)]
    cites: list[Citation] = [cite_field(claim, "status.phase", phase)]
    classes = ev.of_kind("StorageClass")
    defaults = [c for c in classes if (meta(c).get("annotations") or {}).get(DEFAULT_CLASS) == "true"]
    waiting = [p for p in pods if not pod_node(p) and not pod_finished(p)]
    user = f" (used by {describe(workload_ref(ev, waiting[0] if waiting else pods[0]))})" if pods else ""
    existing = ", ".join(name_of(c) for c in classes) or "none"
    confidence = 0.9
    for e in events:
        if e.get("reason") in ("ProvisioningFailed", "FailedBinding", "ExternalProvisioning"):
            cites.append(cite_event(e))
            break
    if sc_name and ev.is_absent("StorageClass", sc_name):
        cites += [
            cite_field(claim, "spec.storageClassName", sc_name),
            cite_absent(ObjectRef("StorageClass", sc_name)),
        ]
        summary = (
            f"PersistentVolumeClaim {ref.name}{user} stays {phase}: it asks for StorageClass {sc_name}, "
            "which "
            f"does not exist (StorageClasses here: {existing})."
        )
        advice = (
            f"Re-create PersistentVolumeClaim {ref.name} with storageClassName set to an existing class "
            f"({existing}) — the field is immutable — or create StorageClass {sc_name}."
        )
        confidence = 0.96
        action = "fix_storage_class"
    elif not sc_name and not defaults:
        cites.append(cite_field(claim, "spec.storageClassName", None))
        summary = (
            f"PersistentVolumeClaim {ref.name}{user} stays {phase}: it names no StorageClass and the cluster "
            f"has no default StorageClass (StorageClasses here: {existing}), and no PersistentVolume "
            "matches it."
        )
        advice = (
            f"Mark a StorageClass as default (annotation {DEFAULT_CLASS}=true), re-create the claim with a "
            f"storageClassName that exists ({existing}), or create a PersistentVolume that matches "
            f"{ref.name} ({_size(spec)}, {', '.join(spec.get('accessModes') or [])})."
        )
        confidence = 0.93 if len(cites) > 1 else 0.85
        action = "provide_storage"
    else:
        said = next((c.value for c in cites if c.source == "event"), None)
        if phase == "Pending" and not said:
            if (meta(claim).get("annotations") or {}).get(
                "volume.kubernetes.io/selected-node"
            ) is None and any(e.get("reason") == "WaitForFirstConsumer" for e in events):
                return None  # waits for its pod to be scheduled: not the cause of anything
            confidence = 0.55
        summary = (
            f"PersistentVolumeClaim {ref.name}{user} stays {phase}"
            f"{': ' + said if said else ': no volume has been provisioned or bound for it'}."
        )
        advice = (
            f"Check the provisioner of StorageClass {sc_name or '(default)'} and that a PersistentVolume can "
            f"satisfy {ref.name} ({_size(spec)})."
        )
        action = "check_provisioner"
    for pod in waiting[:1]:
        cites += _scheduling_events(ev, pod)
    return Finding(
        category="unbound_pvc",
        summary=summary,
        confidence=confidence,
        severity=outage_severity(ev) if pods else "high",
        subject=ref,
        citations=cites,
        recommendations=[Recommendation(action, advice, ref)],
    )


def _scheduling_events(ev: Evidence, pod: dict[str, Any]) -> list[Citation]:
    events = ev.events_for(pod, reason="FailedScheduling")
    return [
        cite_event(e)
        for e in events[:1]
        if "PersistentVolumeClaim" in str(e.get("message"))
        or "persistentvolumeclaim" in str(e.get("message"))
    ]


def _size(spec: dict[str, Any]) -> str:
    return str(((spec.get("resources") or {}).get("requests") or {}).get("storage") or "?")


ANALYZER = Analyzer("pvc", ("unbound_pvc",), analyze)
