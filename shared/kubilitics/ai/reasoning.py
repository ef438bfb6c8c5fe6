"""The LLM step of an investigation: what is sent, how the answer is read, and how far it may move
the rule-based result. No I/O (services/investigations.py runs the provider).

What is sent is compact: the rule result (root cause, cited evidence, findings, recommendations)
plus a digest of the evidence (the target's status, each pod's container states, warning events,
the error lines of the logs), not the raw objects. The model can read more through the read-only
tools. Its answer ends with a verdict line (JSON: category, confidence, summary).

How far the answer may go (`merge`): rules decide when their evidence is strong. The model explains,
and it may name a cause only where the rules found none (`unknown`), and then with a capped
confidence. A disagreement with a confident rule result is kept as a note, never as the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubilitics.ai.evidence import Evidence
from kubilitics.ai.findings import Citation
from kubilitics.ai.kube_json import containers, event_count, event_last_seen, format_time, meta, name_of
from kubilitics.ai.providers.base import AIRequest
from kubilitics.ai.taxonomy import CATEGORIES, HEALTHY, UNKNOWN

CONFIDENT = 0.5  # as in diagnosis: below this the rules have no cause to defend
LLM_CONFIDENCE_CAP = 0.6  # a cause only the model names is a hypothesis, not a finding
MAX_EVENTS = 20
MAX_LOG_TAILS = 6
MAX_LOG_LINES = 5
MAX_FINDINGS = 6
MAX_PROBLEMS = 5

TURNS = {"quick": 2, "standard": 4, "deep": 6}

_VERDICT = re.compile(r"\{[^{}]*\"category\"[^{}]*\}", re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    category: str
    confidence: float
    summary: str


def build_request(
    investigation: Mapping[str, Any], diagnosis: Mapping[str, Any], evidence: Evidence | None, scope: str
) -> AIRequest:
    resource = investigation.get("resource") or {}
    namespace = resource.get("namespace")
    where = f"{resource.get('kind')} {namespace + '/' if namespace else ''}"
    symptoms = "; ".join(investigation.get("symptoms") or []) or "none given"
    task = (
        f"Investigate {where}{resource.get('name')}. Symptoms reported: {symptoms}.\n"
        "Rule-based analyzers already examined what Kubernetes reports (below). Explain the root cause "
        "in plain language for an on-call engineer, citing the object, event or log line it rests on. "
        "Confirm the rule result, or, only if it is `unknown` or clearly contradicted by evidence you "
        "read with the tools, say what the cause is. Keep it under 200 words.\n"
        "End with one line of JSON and nothing after it: "
        '{"category": "<one of the categories>", "confidence": <0..1>, "summary": "<one sentence>"}\n'
        f"Categories: {', '.join(CATEGORIES)}."
    )
    context = {
        "rule_result": {
            "root_cause": diagnosis.get("root_cause"),
            "severity": diagnosis.get("severity"),
            # One line per citation (what kubectl would show), not the citation objects: a third of the size.
            "evidence": [Citation.from_dict(c).describe() for c in diagnosis.get("evidence") or []],
            "other_findings": [
                {k: f.get(k) for k in ("category", "summary", "confidence")}
                for f in (diagnosis.get("findings") or [])[1:MAX_FINDINGS]
            ],
            "recommendations": [
                {k: r.get(k) for k in ("action", "details")} for r in diagnosis.get("recommendations") or []
            ],
            "unexplained_problems": (diagnosis.get("problems") or [])[:MAX_PROBLEMS],
        },
        "evidence_digest": compact_evidence(evidence) if evidence is not None else None,
    }
    return AIRequest(task=task, context=context, max_turns=TURNS.get(scope, TURNS["standard"]))


def compact_evidence(ev: Evidence) -> dict[str, Any]:
    """What an engineer would glance at first: statuses, warnings and error lines, no specs."""
    target = ev.target_object or {}
    pods = []
    for pod in ev.pods[:8]:
        status = pod.get("status") or {}
        pods.append(
            {
                "name": name_of(pod),
                "phase": status.get("phase"),
                "node": (pod.get("spec") or {}).get("nodeName"),
                "reason": status.get("reason"),
                "containers": [
                    {
                        "name": c.name,
                        "init": c.init or None,
                        "image": c.spec.get("image"),
                        "ready": c.ready,
                        "restarts": c.restarts,
                        "waiting": c.waiting.get("reason"),
                        "waiting_message": (c.waiting.get("message") or "")[:200] or None,
                        "last_terminated": {
                            k: c.last_terminated.get(k)
                            for k in ("reason", "exitCode")
                            if k in c.last_terminated
                        }
                        or None,
                        "limits": (c.spec.get("resources") or {}).get("limits"),
                    }
                    for c in containers(pod)
                ],
            }
        )
    warnings: dict[tuple[str, str], dict[str, Any]] = {}
    for event in ev.events:
        if event.get("type") != "Warning":
            continue
        key = (str(event.get("reason")), str(event.get("message")))
        if key in warnings:
            warnings[key]["count"] += event_count(event)
            continue
        io = event.get("involvedObject") or {}
        seen = event_last_seen(event)
        warnings[key] = {
            "reason": event.get("reason"),
            "message": str(event.get("message") or "")[:300],
            "object": f"{io.get('kind')}/{io.get('name')}",
            "count": event_count(event),
            "last_seen": format_time(seen) if seen else None,
        }
    logs = [
        {
            "pod": tail.pod,
            "container": tail.container,
            "previous": tail.previous,
            "last_lines": [line[:300] for line in tail.lines[-MAX_LOG_LINES:]],
        }
        for tail in ev.logs
        if tail.lines
    ][:MAX_LOG_TAILS]
    digest = {
        "target": {
            "ref": ev.target.key,
            "exists": bool(target),
            "status": _status_digest(target),
        },
        "owners": [o.key for o in ev.owners],
        "missing_references": [a.key for a in ev.absent],
        "pods": pods,
        "warning_events": list(warnings.values())[:MAX_EVENTS],
        "logs": logs,
        "notes": ev.notes[:5],
    }
    result: dict[str, Any] = _without_empty(digest)
    return result


def _without_empty(value: Any) -> Any:
    """Drop null, empty and false-by-default fields: every character is sent with every model turn."""
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, [], {}, "")}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def _status_digest(obj: dict[str, Any]) -> dict[str, Any] | None:
    if not obj:
        return None
    status = dict(obj.get("status") or {})
    if obj.get("kind") == "Pod":
        status.pop("containerStatuses", None)  # the pods list carries them
        status.pop("initContainerStatuses", None)
    spec = obj.get("spec") or {}
    digest = {
        "replicas": spec.get("replicas"),
        "generation": meta(obj).get("generation"),
        "status": status,
    }
    return {k: v for k, v in digest.items() if v is not None}


def parse_verdict(text: str) -> Verdict | None:
    """The last JSON verdict in the answer, if it names a known category."""
    for raw in reversed(_VERDICT.findall(text or "")):
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        category = str(data.get("category") or "")
        if category not in CATEGORIES:
            continue
        try:
            confidence = float(data.get("confidence", 0.5))
        except (TypeError, ValueError):
            confidence = 0.5
        confidence = min(1.0, max(0.0, confidence / 100 if confidence > 1 else confidence))
        return Verdict(category, round(confidence, 2), str(data.get("summary") or "").strip())
    return None


def explanation_text(text: str) -> str:
    """The answer without its verdict line."""
    found = _VERDICT.findall(text or "")
    if found:
        text = text[: text.rfind(found[-1])]
    return text.strip()


def merge(root_cause: Mapping[str, Any], verdict: Verdict | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the root cause to report, what the model's verdict did): rules win where they are confident."""
    rule = dict(root_cause)
    category = str(rule.get("category") or UNKNOWN)
    confidence = float(rule.get("confidence") or 0.0)
    if verdict is None:
        return rule, {"outcome": "no_verdict"}
    said = {"category": verdict.category, "confidence": verdict.confidence, "summary": verdict.summary}
    if verdict.category == category:
        refined = {**rule, "summary": verdict.summary or rule.get("summary")}
        return refined, {"outcome": "agreed", "verdict": said}
    rules_have_a_cause = category not in (UNKNOWN,) and confidence >= CONFIDENT
    if rules_have_a_cause:
        return rule, {"outcome": "overruled_by_rules", "verdict": said}
    if verdict.category in (HEALTHY, UNKNOWN):
        # `unknown` means the rules saw problems; the model cannot declare them away.
        return rule, {"outcome": "not_adopted", "verdict": said}
    adopted = {
        "category": verdict.category,
        "summary": verdict.summary or rule.get("summary"),
        "confidence": round(min(verdict.confidence, LLM_CONFIDENCE_CAP), 2),
        "source": "llm",
    }
    return adopted, {"outcome": "adopted", "verdict": said}
