"""What analyzers report: findings with a category, a confidence, citations and recommendations.

A `Citation` names exactly where a fact comes from: a field of an object (`status.containerStatuses
[app].lastState.terminated.reason = OOMKilled`), an event (reason, message, involved object, count),
a log line (pod, container, current or previous run), or the absence of a referenced object. A
`Recommendation` says what to change, concretely; where the change is a patch of one object it also
carries that patch so that the action layer can propose it without re-deriving it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kubilitics.ai.evidence import LogTail, ObjectRef
from kubilitics.ai.kube_json import event_count, event_last_seen, format_time, meta
from kubilitics.ai.taxonomy import Severity

CitationSource = Literal["object", "event", "log", "absent"]


@dataclass(frozen=True)
class Citation:
    source: CitationSource
    object: ObjectRef  # the object; for events the involved object; for logs the pod
    field: str | None = None  # JSON path of an object field
    value: str | None = None  # the field's value, the event message, the log line, why it is absent
    reason: str | None = None  # event reason
    event: str | None = None  # the Event object's name
    event_type: str | None = None
    count: int | None = None
    last_seen: str | None = None
    container: str | None = None
    previous: bool | None = None  # log of the previous (crashed) container run

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "object": self.object.to_dict()}
        for key in ("field", "value", "reason", "event", "event_type", "count", "last_seen", "container"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.previous is not None:
            out["previous"] = self.previous
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Citation:
        return cls(**{**data, "object": ObjectRef.from_dict(data["object"])})

    def describe(self) -> str:
        """One line a person can check against kubectl."""
        if self.source == "event":
            times = f" (x{self.count})" if self.count and self.count > 1 else ""
            return f"event {self.reason} on {self.object}{times}: {self.value}"
        if self.source == "log":
            which = "previous log" if self.previous else "log"
            return f"{which} of {self.object} [{self.container}]: {self.value}"
        if self.source == "absent":
            return f"{self.object}: {self.value or 'does not exist'}"
        return f"{self.object} {self.field} = {self.value}" if self.field else f"{self.object}: {self.value}"


def cite_field(obj: dict[str, Any] | ObjectRef, path: str, value: Any) -> Citation:
    ref = obj if isinstance(obj, ObjectRef) else ObjectRef.of(obj)
    return Citation("object", ref, field=path, value=_text(value))


def cite_event(event: dict[str, Any]) -> Citation:
    seen = event_last_seen(event)
    io = event.get("involvedObject") or {}
    return Citation(
        "event",
        ObjectRef.involved_in(event),
        value=str(event.get("message") or "").strip(),
        reason=str(event.get("reason") or ""),
        event=str(meta(event).get("name") or "") or None,
        event_type=str(event.get("type") or "") or None,
        count=event_count(event),
        last_seen=format_time(seen) if seen is not None else None,
        container=_container_of(io.get("fieldPath")),
    )


def cite_log(tail: LogTail, line: str) -> Citation:
    return Citation("log", tail.pod_ref, value=line.strip(), container=tail.container, previous=tail.previous)


def cite_absent(ref: ObjectRef, why: str = "does not exist") -> Citation:
    return Citation("absent", ref, value=why)


def _container_of(field_path: Any) -> str | None:
    if not field_path or "{" not in str(field_path):
        return None
    return str(field_path).split("{", 1)[1].rstrip("}")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


@dataclass(frozen=True)
class Recommendation:
    """One concrete change. `patch` is a strategic-merge patch of `target` when one change fixes it."""

    action: str  # snake_case verb phrase, e.g. increase_memory_limit, create_configmap
    details: str  # the change in words, with the real names and values
    target: ObjectRef | None = None
    patch: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "details": self.details}
        if self.target is not None:
            out["target"] = self.target.to_dict()
        if self.patch is not None:
            out["patch"] = self.patch
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recommendation:
        target = data.get("target")
        return cls(
            action=data["action"],
            details=data["details"],
            target=ObjectRef.from_dict(target) if target else None,
            patch=data.get("patch"),
        )


@dataclass
class Finding:
    category: str
    summary: str  # plain language: what is wrong and why, with names and values
    confidence: float  # 0..1: how sure the evidence makes this finding
    severity: Severity
    subject: ObjectRef  # the object the finding is about
    citations: list[Citation] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    analyzer: str = ""  # filled in by the registry

    def __post_init__(self) -> None:
        self.confidence = round(min(1.0, max(0.0, float(self.confidence))), 2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "summary": self.summary,
            "confidence": self.confidence,
            "severity": self.severity,
            "subject": self.subject.to_dict(),
            "analyzer": self.analyzer,
            "citations": [c.to_dict() for c in self.citations],
            "recommendations": [r.to_dict() for r in self.recommendations],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            category=data["category"],
            summary=data["summary"],
            confidence=data["confidence"],
            severity=data["severity"],
            subject=ObjectRef.from_dict(data["subject"]),
            citations=[Citation.from_dict(c) for c in data.get("citations") or []],
            recommendations=[Recommendation.from_dict(r) for r in data.get("recommendations") or []],
            analyzer=data.get("analyzer", ""),
        )
