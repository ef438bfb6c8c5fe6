"""Parameter rules the services enforce themselves, declared for the OpenAPI document.

FastAPI enforces what a parameter declares (lengths, ranges, enums, path patterns). A few rules are
checked by the services instead, with messages that name the parameter and the rule (a namespace
that is not a DNS-1123 label, a time that is not RFC 3339, an event type in any case). These helpers
put those rules into the parameter's schema through `json_schema_extra`: /openapi.json shows them,
FastAPI does not check them again, and the answers stay the services' (400 `invalid_parameter`).
tests/unit/test_openapi_document.py checks that the patterns here are the services' own.

Plain constants only: routers import this at cold start.
"""

from __future__ import annotations

from typing import Any

# services/selectors.py and services/cluster.py
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# services/events.py (any fraction) and services/pods.py (up to nanoseconds); the date itself must
# exist too (datetime.fromisoformat), as `format: date-time` says.
RFC3339_EVENTS = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
RFC3339_LOGS = r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"


def _either_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" for c in word)


# services/events.py: Normal, Warning or Error in any case (surrounding spaces ignored).
EVENT_TYPE = rf"^\s*({'|'.join(_either_case(w) for w in ('Normal', 'Warning', 'Error'))})\s*$"


def optional(*alternatives: dict[str, Any]) -> dict[str, Any]:
    """json_schema_extra for an optional query parameter: what the service accepts (any of)."""
    return {"anyOf": [*alternatives, {"type": "null"}]}


EMPTY = {"type": "string", "maxLength": 0}  # a parameter given empty is treated as not given


def date_time(pattern: str, max_length: int | None = None) -> dict[str, Any]:
    schema = {"type": "string", "format": "date-time", "pattern": pattern}
    return schema if max_length is None else {**schema, "maxLength": max_length}


def namespace_name() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS1123_LABEL}


def object_name() -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": 253, "pattern": DNS1123_SUBDOMAIN}
