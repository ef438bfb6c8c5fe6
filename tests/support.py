"""Helpers shared by the test folders (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[1] / "events"


@dataclass
class LambdaContext:
    """The context object the Lambda runtime passes to a handler."""

    function_name: str = "kubilitics-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:kubilitics-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def load_event(relative: str, token: str | None = None, **overrides: Any) -> dict[str, Any]:
    """An `events/` payload; the bearer token is substituted (or removed when None)."""
    event: dict[str, Any] = json.loads((EVENTS / relative).read_text())
    headers = event.setdefault("headers", {})
    if token is None:
        headers.pop("authorization", None)
    else:
        headers["authorization"] = f"Bearer {token}"
    for key, value in overrides.items():
        if key == "headers":
            headers.update(value)
        else:
            event[key] = value
    return event


def cluster_name(cluster) -> str:
    """The kubeconfig's cluster entry for the testbed context (what health and version report)."""
    query = f'{{.contexts[?(@.name=="{cluster.context}")].context.cluster}}'
    return cluster.kubectl("config", "view", "-o", f"jsonpath={query}").stdout.strip()


def with_query(event: dict[str, Any], **params: Any) -> dict[str, Any]:
    """The event with its query string replaced (HTTP API v2 reads rawQueryString)."""
    from urllib.parse import urlencode

    values = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
    event["rawQueryString"] = urlencode(values)
    event["queryStringParameters"] = values or None
    if not values:
        event.pop("queryStringParameters")
    return event


def invoke(handler, event):
    """Call a Lambda handler; (status, lower-cased headers, JSON body)."""
    response = handler(event, LambdaContext())
    return (
        response["statusCode"],
        {k.lower(): v for k, v in response["headers"].items()},
        json.loads(response["body"]),
    )
