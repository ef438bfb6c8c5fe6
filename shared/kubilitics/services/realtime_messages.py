"""The WebSocket message formats (reference section 8): what clients send, what the server answers.

One parser for every transport (API Gateway and the local server). Anything that does not parse is a
`KubiliticsError` with the standard code, which the caller turns into an `ERROR` message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubilitics.clock import rfc3339_ms
from kubilitics.errors import KubiliticsError, error_body

_ID = r"^[A-Za-z0-9._:\-]{1,128}$"
MAX_INPUT_CHARS = 65_536

# The actions a client may send (`action`), and the shell message types (`type`) that come without one.
ACTIONS = ("subscribe", "unsubscribe", "logs", "init", "shell")
SHELL_TYPES = ("init", "input", "resize", "exit")


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class Subscribe(_Message):
    action: Literal["subscribe"]
    resource_kind: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, max_length=253)
    label_selector: str | None = Field(default=None, max_length=4096)
    subscription_id: str | None = Field(default=None, pattern=_ID)


class Unsubscribe(_Message):
    action: Literal["unsubscribe"]
    subscription_id: str = Field(pattern=_ID)


class Logs(_Message):
    """Live logs of one container, with the filters of GET /api/v1/pods/{namespace}/{name}/logs."""

    action: Literal["logs"]
    namespace: str = Field(min_length=1, max_length=253)
    pod_name: str = Field(min_length=1, max_length=253)
    container: str | None = Field(default=None, max_length=253)
    tail_lines: int = Field(default=100, ge=0, le=10_000)
    timestamps: bool = True
    since_time: str | None = Field(default=None, max_length=64)
    until_time: str | None = Field(default=None, max_length=64)
    search: str | None = Field(default=None, max_length=1024)
    follow: bool = True
    subscription_id: str | None = Field(default=None, pattern=_ID)


class ShellInit(_Message):
    namespace: str = Field(min_length=1, max_length=253)
    pod_name: str = Field(min_length=1, max_length=253)
    container: str | None = Field(default=None, max_length=253)
    shell: str = Field(default="/bin/sh", min_length=1, max_length=256)
    rows: int = Field(default=24, ge=1, le=1000)
    cols: int = Field(default=80, ge=1, le=1000)


class ShellInput(_Message):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)
    data: str = Field(max_length=MAX_INPUT_CHARS)


class ShellResize(_Message):
    rows: int = Field(ge=1, le=1000)
    cols: int = Field(ge=1, le=1000)


@dataclass(frozen=True)
class ShellCommand:
    """Client input for a running shell: `input` (data), `resize` (rows, cols), `exit` (end it)."""

    type: str
    data: str = ""
    rows: int = 0
    cols: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data, "rows": self.rows, "cols": self.cols}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ShellCommand:
        return cls(
            str(raw.get("type", "")),
            str(raw.get("data", "")),
            int(raw.get("rows", 0)),
            int(raw.get("cols", 0)),
        )


Parsed = Subscribe | Unsubscribe | Logs | ShellInit | ShellCommand


def parse(raw: str | bytes | None) -> Parsed:
    """The client message; 400 validation_failed / missing_required_field when it is not one."""
    try:
        document = json.loads(raw or "")
    except (ValueError, UnicodeDecodeError) as exc:
        raise KubiliticsError(
            "Message is not valid JSON", code="validation_failed", details={"reason": str(exc)[:200]}
        ) from exc
    if not isinstance(document, dict):
        raise KubiliticsError("Message must be a JSON object", code="validation_failed")
    action, kind = document.get("action"), document.get("type")
    if action == "subscribe":
        return _validate(Subscribe, document)
    if action == "unsubscribe":
        return _validate(Unsubscribe, document)
    if action == "logs":
        return _validate(Logs, document)
    # Shell messages: the reference's {"action": "init"} and {"type": "input"}, or, on API Gateway's
    # `shell` route, {"action": "shell", "type": ...}.
    if action == "init" or (action == "shell" and kind in (None, "init")):
        return _validate(ShellInit, document)
    if action in (None, "shell") and kind == "input":
        return ShellCommand("input", data=_validate(ShellInput, document).data)
    if action in (None, "shell") and kind == "resize":
        resize = _validate(ShellResize, document)
        return ShellCommand("resize", rows=resize.rows, cols=resize.cols)
    if action in (None, "shell") and kind == "exit":
        return ShellCommand("exit")
    if action is None and kind is None:
        raise KubiliticsError(
            "Message needs an action (or a shell message type)",
            code="missing_required_field",
            details={"field": "action", "allowed_actions": list(ACTIONS), "shell_types": list(SHELL_TYPES)},
        )
    field, value = ("action", action) if action is not None else ("type", kind)
    raise KubiliticsError(
        f"Unknown {field} {value!r}",
        code="validation_failed",
        details={
            "field": field,
            "value": value,
            "allowed_actions": list(ACTIONS),
            "shell_types": list(SHELL_TYPES),
        },
    )


def _validate(model: type[Any], document: dict[str, Any]) -> Any:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors()
        violations = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "reason": e.get("type", ""),
                "message": e.get("msg", ""),
            }
            for e in errors
        ]
        first = violations[0] if violations else {"field": "", "reason": ""}
        if first["reason"] == "missing":
            raise KubiliticsError(
                f"Required field missing: {first['field']}",
                code="missing_required_field",
                details={"field": first["field"], "violations": violations},
            ) from exc
        raise KubiliticsError(
            f"Invalid field {first['field']}: {violations[0]['message'] if violations else ''}",
            code="validation_failed",
            details={"violations": violations},
        ) from exc


def subscription_id_of(raw: str | bytes | None) -> str | None:
    """The subscription id of a message that failed to parse, to put on its ERROR (best effort)."""
    try:
        document = json.loads(raw or "")
    except (ValueError, UnicodeDecodeError):
        return None
    value = document.get("subscription_id") if isinstance(document, dict) else None
    return value if isinstance(value, str) and len(value) <= 128 else None


# ---- what the server sends ---------------------------------------------------------------------


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)


def error_message(exc: KubiliticsError, trace_id: str | None, subscription_id: str | None = None) -> str:
    """`ERROR` with the standard error body (reference section 16) under `error`."""
    body = error_body(exc.code, exc.message, exc.details, trace_id)
    body.update(exc.extra)
    return encode(
        {
            "type": "ERROR",
            "subscription_id": subscription_id,
            "status": exc.status,
            "error": body,
            "timestamp": rfc3339_ms(),
        }
    )


def ack(kind: str, subscription_id: str, **fields: Any) -> str:
    return encode({"type": kind, "subscription_id": subscription_id, **fields, "timestamp": rfc3339_ms()})


def update_prefix(event_type: str, subscription_id: str) -> str:
    """The start of an update message; the relay builds `resource` once and shares it between subscribers."""
    return '{"type":' + json.dumps(event_type) + ',"subscription_id":' + json.dumps(subscription_id)


def update_suffix(resource_json: str, observed_at: float) -> str:
    return ',"resource":' + resource_json + ',"timestamp":"' + rfc3339_ms(observed_at) + '"}'


def shell_output(channel: str, data: str) -> str:
    return encode({"type": "output", "channel": channel, "data": data})


def shell_exit(exit_code: int | None, reason: str | None = None) -> str:
    message: dict[str, Any] = {"type": "exit", "exit_code": exit_code}
    if reason:
        message["reason"] = reason
    return encode(message)


def log_line(subscription_id: str, line: str) -> str:
    return encode(
        {"type": "log", "subscription_id": subscription_id, "line": line, "timestamp": rfc3339_ms()}
    )


def log_end(subscription_id: str, reason: str) -> str:
    return encode(
        {"type": "log_end", "subscription_id": subscription_id, "reason": reason, "timestamp": rfc3339_ms()}
    )
