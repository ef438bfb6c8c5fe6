"""The vocabulary of the provider port (`ports.AIProvider`): tools, requests, usage and answers.

No SDK is imported here. A provider's `run(request, meter=..., tools=..., call_tool=...)`:
- sends `request.task` plus `request.context` (rule findings, evidence: JSON) after redaction;
- lets the model call the read-only `tools`, executing each call through `call_tool(name, input)`
  (whatever it returns is serialised to JSON and redacted before it goes back to the model; an
  exception becomes an error result the model sees);
- stops after `request.max_turns` model calls (the last one is told to answer without tools);
- reserves and settles every model call through `meter` (the budget ledger).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# (tool name, input) -> a JSON-serialisable result. Read-only by contract: the investigation code
# supplies it and must not expose anything that changes the cluster.
ToolCallback = Callable[[str, dict[str, Any]], Any]

DEFAULT_SYSTEM_PROMPT = (
    "You are Kubilitics, a Kubernetes troubleshooting assistant. You diagnose; you never change the "
    "cluster. Use the read-only tools when the evidence is not enough, and cite the object, event or "
    "log line each conclusion rests on. Rule-based findings come first: confirm or correct them. "
    "Values shown as [[KIND_N]] (for example [[IP_1]], [[PASSWORD_2]]) were redacted; refer to them "
    "by that placeholder, never guess them. Answer with the root cause, the evidence, and the fix."
)


@dataclass(frozen=True)
class Tool:
    """A tool the model may call; `input_schema` is a JSON Schema object."""

    name: str
    description: str
    input_schema: Mapping[str, Any]

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": dict(self.input_schema)}


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass(frozen=True)
class ToolCall:
    name: str
    input: Mapping[str, Any]
    is_error: bool
    result_chars: int


@dataclass(frozen=True)
class AIRequest:
    task: str
    context: Mapping[str, Any] | None = None
    system: str = DEFAULT_SYSTEM_PROMPT
    max_turns: int = 6
    # Tool results longer than this are cut (with a note) before they are sent.
    max_tool_result_chars: int = 20_000

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError("max_turns must be at least 1")


@dataclass(frozen=True)
class AIResult:
    text: str
    provider: str
    model: str | None
    usage: Usage = Usage()
    calls: int = 0  # model requests made (each one reserved and settled)
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: str = "end_turn"
    redacted_values: int = 0
    cost_micro_usd: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_NS = {"type": "string", "description": "Namespace (omit for cluster-scoped kinds)"}
_KIND = {"type": "string", "description": "Kind, e.g. Pod, Deployment, Service"}
_NAME = {"type": "string"}


def kubernetes_toolset() -> list[Tool]:
    """The read-only Kubernetes tools the investigation code implements behind `call_tool`."""
    return [
        Tool(
            "get_object",
            "Read one Kubernetes object (status, spec, metadata). Secret values are never returned.",
            _schema({"kind": _KIND, "namespace": _NS, "name": _NAME}, ["kind", "name"]),
        ),
        Tool(
            "list_events",
            "List recent events, optionally only those about one object.",
            _schema({"namespace": _NS, "kind": _KIND, "name": _NAME}, []),
        ),
        Tool(
            "read_logs",
            "Read the last lines of a container's log (previous=true: the last terminated run).",
            _schema(
                {
                    "namespace": _NS,
                    "pod": _NAME,
                    "container": _NAME,
                    "previous": {"type": "boolean"},
                    "tail_lines": {"type": "integer", "minimum": 1, "maximum": 500},
                },
                ["namespace", "pod"],
            ),
        ),
        Tool(
            "read_metrics",
            "Current CPU and memory usage of a pod or node, with its requests and limits.",
            _schema(
                {"kind": {"type": "string", "enum": ["Pod", "Node"]}, "namespace": _NS, "name": _NAME},
                ["kind", "name"],
            ),
        ),
        Tool(
            "owner_chain",
            "The owners of an object up to its top controller (Pod -> ReplicaSet -> Deployment).",
            _schema({"kind": _KIND, "namespace": _NS, "name": _NAME}, ["kind", "name"]),
        ),
        Tool(
            "endpoints",
            "A Service's ready and not-ready endpoints and the pods its selector matches.",
            _schema({"namespace": _NS, "service": _NAME}, ["namespace", "service"]),
        ),
    ]
