"""Helpers shared by the test folders (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import time
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


def dev_token(sub: str, scope: str = "read", **claims: Any) -> str:
    """A token signed with the local server's development key (what `kubilitics token create` makes);
    in the cluster-admins group (bound to cluster-admin on the test cluster) unless `groups` is given."""
    import jwt
    from kubilitics.auth.impersonation import DEVELOPMENT_ADMIN_GROUP
    from kubilitics.config import DEVELOPMENT_JWT_SECRET

    now = int(time.time())
    body = {"sub": sub, "iat": now, "exp": now + 3600, "scope": scope, "token_type": "user"}
    body["groups"] = [DEVELOPMENT_ADMIN_GROUP]
    body["jti"] = uuid.uuid4().hex
    return jwt.encode({**body, **claims}, DEVELOPMENT_JWT_SECRET, algorithm="HS256")


def offline_process_env(kubeconfig: Path, pythonpath: str) -> dict[str, str]:
    """The environment of a fresh Python process that loads the product with test settings, a
    kubeconfig path that need not exist, and dummy AWS credentials (nothing it reaches is real)."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": pythonpath,
        "KUBILITICS_ENV": "test",
        "KUBILITICS_KUBECONFIG": str(kubeconfig),
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def expect_error(handler, event, status: int, code: str) -> dict[str, Any]:
    """Call a handler that must fail with `status`/`code`: the standard error body, its trace id the
    X-Request-ID of the response. Returns the body."""
    got, headers, body = invoke(handler, event)
    assert (got, body["error"]) == (status, code), body
    assert set(body) >= {"error", "message", "details", "timestamp", "trace_id"}
    assert body["trace_id"] == headers["x-request-id"]
    return body


def revoke(token: str) -> None:
    """Revoke a token through the container's revocation list (as `kubilitics token revoke` does)."""
    from kubilitics.container import get_container

    services = get_container()
    principal = services.token_codec.decode(token, now=time.time())
    services.revocations.revoke(principal.jti, principal.expires_at, revoked_by="test")
