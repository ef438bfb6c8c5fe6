"""From evidence to a diagnosis: run the analyzers, rank causes over symptoms, and say honestly when
nothing is wrong (`healthy`) or when the evidence supports no cause (`unknown`).

Ranking: confident findings (confidence >= 0.5) first; among them the category that is more
fundamental in the taxonomy (`taxonomy.PRECEDENCE`: a node down before the pods it strands, a missing
ConfigMap before the CrashLoop, a quota before the stuck rollout), then the higher confidence.

The result carries what spec-decisions 10 adds to an investigation (`root_cause`, `evidence` items
that cite the object, event or log line they come from) and what the reference's investigation items
show (`severity`, `findings_summary`, `recommendations` with priority/action/details).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubilitics.ai.analyzers import ANALYZERS, Analyzer, run_analyzers
from kubilitics.ai.evidence import Evidence, ObjectRef
from kubilitics.ai.findings import Citation, Finding
from kubilitics.ai.signals import HealthSignals, health_signals
from kubilitics.ai.taxonomy import HEALTHY, SEVERITY_ORDER, UNKNOWN, Severity, precedence

CONFIDENT = 0.5
MAX_RECOMMENDATIONS = 6
MAX_EVIDENCE = 12


@dataclass(frozen=True)
class RootCause:
    category: str
    summary: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "summary": self.summary, "confidence": self.confidence}


@dataclass
class Diagnosis:
    target: ObjectRef
    root_cause: RootCause
    severity: Severity
    findings: list[Finding]  # ranked, most fundamental cause first
    evidence: list[Citation]  # what the root cause rests on
    findings_summary: str
    recommendations: list[dict[str, Any]]  # {priority, action, details[, target, patch]}
    problems: list[str] = field(default_factory=list)  # everything noticed as wrong, explained or not
    in_progress: list[str] = field(default_factory=list)
    # False while the picture may still change by itself (pods starting, a Job retrying): a caller
    # that polls (the eval runner) waits; an investigation reports it as is.
    settled: bool = True
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource": self.target.to_dict(),
            "root_cause": self.root_cause.to_dict(),
            "severity": self.severity,
            "findings_summary": self.findings_summary,
            "evidence": [c.to_dict() for c in self.evidence],
            "recommendations": self.recommendations,
            "findings": [f.to_dict() for f in self.findings],
            "problems": self.problems,
            "in_progress": self.in_progress,
            "settled": self.settled,
            "notes": self.notes,
        }


def diagnose(evidence: Evidence, analyzers: Sequence[Analyzer] = ANALYZERS) -> Diagnosis:
    findings = rank(merge(run_analyzers(evidence, analyzers)))
    signals = health_signals(evidence)
    confident = [f for f in findings if f.confidence >= CONFIDENT]
    settled = not signals.retrying and not (signals.in_progress and not confident)
    problems = [s.text for s in signals.problems]
    progress = [s.text for s in signals.in_progress]
    if confident:
        root = confident[0]
        others = [f for f in confident[1:] if f.category != root.category][:2]
        summary = root.summary + "".join(f" Also: {f.summary}" for f in others)
        return Diagnosis(
            target=evidence.target,
            root_cause=RootCause(root.category, root.summary, root.confidence),
            severity=root.severity,
            findings=findings,
            evidence=_evidence(root, confident[1:]),
            findings_summary=summary,
            recommendations=recommendations(confident),
            problems=problems,
            in_progress=progress,
            settled=settled,
            notes=list(evidence.notes),
        )
    what = f"{evidence.target.kind} {evidence.target.name}"
    if signals.problems:
        hints = "; ".join(f"{f.category}? {f.summary}" for f in findings[:2])
        summary = (
            f"{what} has problems that the evidence does not explain: "
            f"{'; '.join(problems[:3])}{'. Weak hints: ' + hints if hints else ''}."
        )
        cites = [s.citation for s in signals.problems if s.citation][:MAX_EVIDENCE]
        return Diagnosis(
            target=evidence.target,
            root_cause=RootCause(UNKNOWN, summary, 0.3),
            severity="medium",
            findings=findings,
            evidence=cites,
            findings_summary=summary,
            recommendations=[
                {
                    "priority": 1,
                    "action": "investigate_manually",
                    "details": f"Look at {', '.join(problems[:3])} (kubectl describe / logs): no rule "
                    "explains it.",
                }
            ],
            problems=problems,
            in_progress=progress,
            settled=settled,
            notes=list(evidence.notes),
        )
    if signals.in_progress:
        summary = f"{what} is still starting: {'; '.join(progress[:3])}. Nothing has failed so far."
        return Diagnosis(
            target=evidence.target,
            root_cause=RootCause(UNKNOWN, summary, 0.4),
            severity="low",
            findings=findings,
            evidence=[],
            findings_summary=summary,
            recommendations=[
                {"priority": 1, "action": "wait_and_recheck", "details": f"Check {what} again in a minute."}
            ],
            problems=problems,
            in_progress=progress,
            settled=settled,
            notes=list(evidence.notes),
        )
    return _healthy(evidence, signals, findings, settled)


def _healthy(evidence: Evidence, signals: HealthSignals, findings: list[Finding], settled: bool) -> Diagnosis:
    what = f"{evidence.target.kind} {evidence.target.name}"
    pods = f" {signals.ready_pods}/{signals.live_pods} pod(s) ready;" if signals.live_pods else ""
    summary = (
        f"{what} is healthy:{pods} no failing containers, no warning events in the last "
        f"{evidence.window_minutes} minutes."
    )
    # Partial evidence (reads that failed) makes "nothing is wrong" a weaker statement.
    confidence = 0.9 if not evidence.notes else 0.7
    return Diagnosis(
        target=evidence.target,
        root_cause=RootCause(HEALTHY, summary, confidence),
        severity="low",
        findings=findings,
        evidence=[],
        findings_summary=summary,
        recommendations=[],
        problems=[],
        in_progress=[],
        settled=settled,
        notes=list(evidence.notes),
    )


def merge(findings: list[Finding]) -> list[Finding]:
    """One finding per (category, subject): the most confident one, with the others' citations."""
    merged: dict[tuple[str, str], Finding] = {}
    for f in findings:
        key = (f.category, str(f.subject))
        if key not in merged:
            merged[key] = f
            continue
        keep, other = (merged[key], f) if merged[key].confidence >= f.confidence else (f, merged[key])
        for c in other.citations:
            if c not in keep.citations:
                keep.citations.append(c)
        merged[key] = keep
    return list(merged.values())


def rank(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.confidence < CONFIDENT, precedence(f.category), -f.confidence))


def recommendations(findings: list[Finding]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for f in findings:
        for rec in f.recommendations:
            key = (rec.action, rec.details)
            if key in seen:
                continue
            seen.add(key)
            out.append({"priority": len(out) + 1, **rec.to_dict()})
            if len(out) >= MAX_RECOMMENDATIONS:
                return out
    return out


def _evidence(root: Finding, others: list[Finding]) -> list[Citation]:
    cites = list(root.citations)
    for f in others:
        for c in f.citations[:2]:
            if c not in cites:
                cites.append(c)
    return cites[:MAX_EVIDENCE]


def worst(severities: Sequence[str]) -> str:
    return min(severities, key=lambda s: SEVERITY_ORDER.get(s, 9), default="low")
