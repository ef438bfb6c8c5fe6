"""Per-request context as one pure ASGI middleware (it must not buffer streaming responses).

- X-Request-ID: echoed when the client sends a sane one, generated otherwise; it is the `trace_id`.
- X-API-Version: negotiated (reference section 18); an unsupported major version is a 400.
- Body size: bodies over the limit are refused with a 400 before the route runs.
- Rate limits: the X-RateLimit-* headers go on every rate-limited response. For reads, the counter
  update runs while the route reads from Kubernetes; its verdict is awaited here, before the first
  byte goes out, and a refused request is answered 429 instead. Only the first refused request of a
  window gets that far: the next ones are refused before the route runs (api/deps.py), as are reads
  that fan out.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubilitics import API_VERSION
from kubilitics.api.errors import error_response
from kubilitics.errors import KubiliticsError
from kubilitics.services.ratelimit import Decision

log = logging.getLogger(__name__)

SUPPORTED_MAJOR = 1
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def negotiate_version(requested: str | None) -> None:
    if requested is None:
        return
    match = _VERSION.match(requested.strip())
    if not match or int(match.group(1)) != SUPPORTED_MAJOR:
        raise KubiliticsError(
            f"API version {requested!r} is not supported",
            code="invalid_parameter",
            details={"parameter": "X-API-Version", "supported_versions": [API_VERSION]},
        )


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        supplied = headers.get("x-request-id")
        request_id = supplied if supplied and _REQUEST_ID.match(supplied) else f"req-{uuid.uuid4().hex}"
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        try:
            negotiate_version(headers.get("x-api-version"))
            self._check_declared_length(headers.get("content-length"))
        except KubiliticsError as exc:
            await error_response(exc, request_id)(scope, receive, self._decorate(send, state))
            return
        decorated = self._decorate(send, state)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await decorated(message)

        try:
            await self.app(scope, self._limit_body(receive), tracking_send)
        except Exception:
            # Never leak internals: the trace id lets an operator find the logged stack trace.
            log.exception("unhandled error (trace_id=%s)", request_id)
            if started:
                raise
            unexpected = KubiliticsError("Unexpected server error", code="internal_server_error")
            await error_response(unexpected, request_id)(scope, receive, decorated)

    def _check_declared_length(self, declared: str | None) -> None:
        if declared is None:
            return
        if not declared.isdigit():
            raise KubiliticsError("Content-Length is not a number", code="invalid_parameter")
        if int(declared) > self.max_body_bytes:
            raise self._too_large()

    def _too_large(self) -> KubiliticsError:
        return KubiliticsError(
            f"Request body exceeds {self.max_body_bytes} bytes",
            code="validation_failed",
            details={"max_body_bytes": self.max_body_bytes},
        )

    def _limit_body(self, receive: Receive) -> Receive:
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise self._too_large()
            return message

        return limited

    def _decorate(self, send: Send, state: dict[str, Any]) -> Send:
        replaced = False

        async def decorated(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the route's own response was refused by the rate limiter
            if message["type"] == "http.response.start":
                decision = await _settled_decision(state)
                if decision is not None and not decision.allowed:
                    replaced = True
                    await _send_rate_limited(send, state, decision)
                    return
                extra = [
                    (b"x-request-id", state["request_id"].encode()),
                    (b"x-api-version", API_VERSION.encode()),
                ]
                if decision is not None:
                    extra += [(k.lower().encode(), v.encode()) for k, v in decision.headers().items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return decorated


async def _settled_decision(state: dict[str, Any]) -> Decision | None:
    pending = state.pop("rate_limit_pending", None)
    if pending is not None:
        try:
            state["rate_limit"] = await pending
        except KubiliticsError as exc:
            # The limiter's store failing must not take reads down with it: fail open, loudly.
            log.warning("rate limiter unavailable, request allowed: %r", exc)
    decision: Decision | None = state.get("rate_limit")
    return decision


async def _send_rate_limited(send: Send, state: dict[str, Any], decision: Decision) -> None:
    exc = rate_limit_error(decision)
    response = error_response(exc, state["request_id"])
    response.headers["x-request-id"] = state["request_id"]
    response.headers["x-api-version"] = API_VERSION

    async def no_body() -> Message:
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    await response({"type": "http"}, no_body, send)


def rate_limit_error(decision: Decision) -> KubiliticsError:
    return KubiliticsError(
        f"Rate limit of {decision.limit} requests per minute exceeded; retry after {decision.reset_after} s",
        code="rate_limit_exceeded",
        details={"limit": decision.limit, "reset_after_seconds": decision.reset_after},
        headers=decision.headers(),
    )
