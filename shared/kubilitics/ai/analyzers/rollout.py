"""Deployment rollouts that stopped making progress (Progressing=False, ProgressDeadlineExceeded).

This is the generic symptom: when the new pods fail for a reason another analyzer names (an image, a
crash, a quota), that finding ranks first. What this analyzer adds is the rollout view: which
ReplicaSet is stuck, how many of its pods are ready, and a way back (the previous revision).
"""

from __future__ import annotations

from typing import Any

from kubilitics.ai.analyzers._common import container_patch
from kubilitics.ai.analyzers.base import Analyzer
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Finding, Recommendation, cite_event, cite_field
from kubilitics.ai.kube_json import condition, containers, controller_of, meta, name_of, pod_is_ready


def analyze(ev: Evidence) -> list[Finding]:
    findings = []
    for dep in ev.of_kind("Deployment"):
        progressing = condition(dep, "Progressing")
        if (
            progressing
            and progressing.get("status") == "False"
            and progressing.get("reason") == "ProgressDeadlineExceeded"
        ):
            findings.append(_stuck(ev, dep, progressing))
        elif (dep.get("spec") or {}).get("paused") and _behind(dep):
            ref = ObjectRef.of(dep)
            findings.append(
                Finding(
                    category="rollout_stuck",
                    summary=f"Deployment {ref.name} is paused with its rollout unfinished ({_counts(dep)}).",
                    confidence=0.5,
                    severity="medium",
                    subject=ref,
                    citations=[cite_field(dep, "spec.paused", True)],
                    recommendations=[
                        Recommendation(
                            "resume_rollout",
                            f"Resume the rollout: kubectl rollout resume deployment/{ref.name}.",
                            ref,
                            {"spec": {"paused": False}},
                        )
                    ],
                )
            )
    return findings


def _behind(dep: dict[str, Any]) -> bool:
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    return int(status.get("updatedReplicas") or 0) < want or int(status.get("availableReplicas") or 0) < want


def _counts(dep: dict[str, Any]) -> str:
    status = dep.get("status") or {}
    want = (dep.get("spec") or {}).get("replicas", 1)
    return (
        f"{status.get('updatedReplicas', 0)}/{want} updated, {status.get('readyReplicas', 0)}/{want} ready, "
        f"{status.get('availableReplicas', 0)}/{want} available"
    )


def _stuck(ev: Evidence, dep: dict[str, Any], progressing: dict[str, Any]) -> Finding:
    ref = ObjectRef.of(dep)
    spec = dep.get("spec") or {}
    deadline = int(spec.get("progressDeadlineSeconds", 600))
    cites = [
        cite_field(
            dep,
            "status.conditions[Progressing]",
            f"False (ProgressDeadlineExceeded): {progressing.get('message')}",
        ),
        cite_field(dep, "status", _counts(dep)),
    ]
    cites += [cite_event(e) for e in ev.events_for(dep)[:1] if e.get("type") == "Warning"]
    new_rs = _newest_rs(ev, dep)
    pods = [
        p
        for p in ev.pods
        if new_rs is not None and (controller_of(p) or {}).get("uid") == meta(new_rs).get("uid")
    ]
    not_ready = [p for p in pods if not pod_is_ready(p)]
    states = sorted({_state(p) for p in not_ready})
    if new_rs is not None:
        rs_status = new_rs.get("status") or {}
        cites.append(
            cite_field(
                new_rs,
                "status.readyReplicas",
                f"{rs_status.get('readyReplicas', 0)}/{(new_rs.get('spec') or {}).get('replicas', 0)}",
            )
        )
    pods_text = f"; its new pods are {', '.join(states)}" if states else ""
    summary = (
        f"The rollout of Deployment {ref.name} stopped: ReplicaSet "
        f"{name_of(new_rs) if new_rs else '?'} did not become available within progressDeadlineSeconds "
        f"({deadline} s){pods_text}."
    )
    recs: list[Recommendation] = []
    slow = _slow_readiness(dep, deadline)
    if slow:
        c, delay = slow
        cites.append(
            cite_field(
                ev.pods[0] if ev.pods else dep, f"{c.spec_path}.readinessProbe.initialDelaySeconds", delay
            )
        )
        summary += (
            f" Container {c.name} starts its readiness checks only after {delay} s (initialDelaySeconds), "
            f"longer than the {deadline} s the rollout may take."
        )
        recs.append(
            Recommendation(
                "tune_probe",
                f"Lower readinessProbe.initialDelaySeconds of container {c.name} in Deployment {ref.name} "
                f"from {delay} to "
                "what the application needs to start (e.g. 10), or raise progressDeadlineSeconds above "
                f"{delay}.",
                ref,
                container_patch("Deployment", c, {"readinessProbe": {"initialDelaySeconds": 10}}),
            )
        )
    revision = _previous_revision(ev, dep)
    if revision:
        recs.append(
            Recommendation(
                "rollback_deployment",
                f"Roll Deployment {ref.name} back to revision {revision}: kubectl rollout undo "
                f"deployment/{ref.name}.",
                ref,
            )
        )
    recs.append(
        Recommendation(
            "inspect_new_pods",
            f"Find out why the pods of ReplicaSet {name_of(new_rs) if new_rs else '?'} do not become ready "
            "(kubectl describe pod -l "
            f"pod-template-hash={_hash(new_rs)}).",
            ref,
        )
    )
    return Finding(
        category="rollout_stuck",
        summary=summary,
        confidence=0.9,
        severity="high",
        subject=ref,
        citations=cites,
        recommendations=recs,
    )


def _hash(rs: dict[str, Any] | None) -> str:
    return str((meta(rs).get("labels") or {}).get("pod-template-hash", "?")) if rs else "?"


def _newest_rs(ev: Evidence, dep: dict[str, Any]) -> dict[str, Any] | None:
    uid = meta(dep).get("uid")
    owned = [rs for rs in ev.of_kind("ReplicaSet") if (controller_of(rs) or {}).get("uid") == uid]
    owned.sort(
        key=lambda rs: int((meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision") or 0)
    )
    return owned[-1] if owned else None


def _previous_revision(ev: Evidence, dep: dict[str, Any]) -> int | None:
    uid = meta(dep).get("uid")
    revisions = sorted(
        int((meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision") or 0)
        for rs in ev.of_kind("ReplicaSet")
        if (controller_of(rs) or {}).get("uid") == uid
    )
    return revisions[-2] if len(revisions) >= 2 and revisions[-2] > 0 else None


def _state(pod: dict[str, Any]) -> str:
    for c in containers(pod):
        if c.waiting.get("reason"):
            return str(c.waiting["reason"])
        if c.running and not c.ready:
            return "Running but not Ready"
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _slow_readiness(dep: dict[str, Any], deadline: int) -> tuple[Any, int] | None:
    pod = {"spec": ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}}
    for c in containers(pod, init=False):
        delay = int((c.spec.get("readinessProbe") or {}).get("initialDelaySeconds") or 0)
        if delay >= deadline:
            return c, delay
    return None


ANALYZER = Analyzer("rollout", ("rollout_stuck",), analyze)
