"""The provider used when no API key is configured: explains rule findings in plain language.

It never calls out and costs nothing, so it does not touch the budget meter. It reads the context
the investigation code passes (spec-decisions 10):

    {"root_cause": {"category", "summary", "confidence"},
     "evidence": [{"source"/"object"/"kind"+"name", "message"/"summary"/"detail"}, ...],
     "recommendations": [{"action", "details"} | str, ...]}

and tolerates anything missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubilitics.ai.providers.base import AIRequest, AIResult, Tool, ToolCallback
from kubilitics.ai.redaction import Redactor
from kubilitics.ports import BudgetMeter

PROVIDER_NAME = "offline (rules)"
MAX_EVIDENCE_LINES = 8


class OfflineProvider:
    name = PROVIDER_NAME
    model: str | None = None

    def run(
        self,
        request: AIRequest,
        *,
        meter: BudgetMeter | None = None,
        tools: Sequence[Tool] = (),
        call_tool: ToolCallback | None = None,
        redactor: Redactor | None = None,
    ) -> AIResult:
        return AIResult(text=explain(request.context or {}), provider=self.name, model=None)


def explain(context: Mapping[str, Any]) -> str:
    root = context.get("root_cause") or {}
    category = str(root.get("category") or "unknown")
    summary = str(root.get("summary") or "").strip()
    lines: list[str] = []
    if category == "healthy":
        lines.append(summary or "No problem found: the resource and what it depends on look healthy.")
    elif category == "unknown" or not summary:
        lines.append(
            summary
            or "The rules could not pin down a cause from what Kubernetes reports; "
            "the evidence below is what was looked at."
        )
    else:
        lines.append(f"Most likely cause: {summary}")
    confidence = root.get("confidence")
    if isinstance(confidence, int | float) and category not in ("unknown",):
        share = confidence * 100 if confidence <= 1 else confidence
        lines.append(f"Category: {category.replace('_', ' ')} (confidence {share:.0f}%).")
    evidence = [_evidence_line(item) for item in context.get("evidence") or []]
    evidence = [line for line in evidence if line]
    if evidence:
        lines.append("Evidence:")
        lines.extend(f"- {line}" for line in evidence[:MAX_EVIDENCE_LINES])
        if len(evidence) > MAX_EVIDENCE_LINES:
            lines.append(f"- ... and {len(evidence) - MAX_EVIDENCE_LINES} more")
    steps = [_recommendation_line(item) for item in context.get("recommendations") or []]
    steps = [step for step in steps if step]
    if steps:
        lines.append("What to do:")
        lines.extend(f"{number}. {step}" for number, step in enumerate(steps, start=1))
    lines.append("(Explained from rule-based findings; no AI model is configured.)")
    return "\n".join(lines)


def _evidence_line(item: Any) -> str:
    if isinstance(item, str):
        return item
    if not isinstance(item, Mapping):
        return ""
    message = item.get("message") or item.get("summary") or item.get("detail") or item.get("reason") or ""
    source = item.get("source") or item.get("object")
    if not source and item.get("kind"):
        source = "/".join(
            str(part) for part in (item.get("kind"), item.get("namespace"), item.get("name")) if part
        )
    if isinstance(source, Mapping):
        source = "/".join(str(source[k]) for k in ("kind", "namespace", "name") if source.get(k))
    return f"{source}: {message}" if source and message else str(message or source or "")


def _recommendation_line(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        return str(item.get("details") or item.get("description") or item.get("action") or "")
    return ""
