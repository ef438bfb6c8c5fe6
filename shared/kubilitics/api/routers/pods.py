"""GET /api/v1/pods/{namespace}/{name}/logs and POST .../exec (reference section 5)."""

from __future__ import annotations

import re
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kubilitics.api import documented as doc
from kubilitics.api.blocking import run_blocking
from kubilitics.api.deps import KubeContext, Services, require
from kubilitics.api.responses import JSONResponse
from kubilitics.api.sse import EventStream, wants_event_stream
from kubilitics.auth.tokens import Principal
from kubilitics.services.pods import MAX_EXEC_TIMEOUT_SECONDS, MAX_TAIL_LINES, ExecRequest, LogQuery

router = APIRouter(tags=["pods"])

Namespace = Annotated[
    str, Path(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="Pod namespace")
]
PodName = Annotated[
    str,
    Path(max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", description="Pod name"),
]
Container = Annotated[
    str | None,
    Query(max_length=253, description="Container name (required for multi-container pods)"),
]

# RFC 3339 up to nanoseconds, checked by LogQuery.parse; empty means not given.
Time = doc.optional(doc.date_time(doc.RFC3339_LOGS, max_length=64), doc.EMPTY)

# Plain (non-follow) log reads count against "logs" per minute; a streamed follow instead holds one
# of the "logs" concurrency slots (the reference: "log follows bypass normal limits").
_count_logs_request = require("read", "logs")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Lambda needs this much of its remaining time to answer after the command's deadline.
_LAMBDA_MARGIN_SECONDS = 1.5


@router.get(
    "/api/v1/pods/{namespace}/{name}/logs",
    summary="Container logs: tail, time window, search; follow as Server-Sent Events",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}, "text/event-stream": {}}}},
)
async def pod_logs(
    request: Request,
    namespace: Namespace,
    name: PodName,
    principal: Annotated[Principal, Depends(require("read"))],
    context: KubeContext,
    services: Services,
    container: Container = None,
    tail_lines: Annotated[int, Query(ge=0, le=MAX_TAIL_LINES, description="Last N lines")] = 100,
    timestamps: Annotated[bool, Query(description="Prefix each line with its RFC 3339 time")] = True,
    since_time: Annotated[
        str | None, Query(max_length=64, description="RFC 3339; lines from then", json_schema_extra=Time)
    ] = None,
    until_time: Annotated[
        str | None, Query(max_length=64, description="RFC 3339; lines until then", json_schema_extra=Time)
    ] = None,
    search: Annotated[str | None, Query(max_length=1024, description="Case-insensitive substring")] = None,
    follow: Annotated[bool, Query(description="Stream new lines (needs Accept: text/event-stream)")] = False,
    previous: Annotated[bool, Query(description="The previous (restarted) container's logs")] = False,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    query = LogQuery.parse(
        container=container, tail_lines=tail_lines, timestamps=timestamps, since_time=since_time,
        until_time=until_time, search=search, previous=previous,
    )  # fmt: skip
    # Mangum buffers a whole response, so in Lambda a follow returns what is there (spec-decisions 9).
    if follow and wants_event_stream(accept) and "aws.event" not in request.scope:
        return await _follow(request, principal, services, context, namespace, name, query)
    await _count_logs_request(request, principal, services)
    text = await run_blocking(services.pods.logs, context, namespace, name, query)
    return PlainTextResponse(text)


async def _follow(
    request: Request,
    principal: Principal,
    services: Services,
    context: Any,
    namespace: str,
    name: str,
    query: LogQuery,
) -> Response:
    await run_blocking(services.rate_limiter.acquire_slot, principal, "logs")
    release = partial(services.rate_limiter.release_slot, principal.sub, "logs")
    try:
        lines = await run_blocking(services.pods.follow_logs, context, namespace, name, query)
    except BaseException:
        await run_blocking(release)
        raise
    ends_at = query.until_ns / 1e9 if query.until_ns is not None else None
    return EventStream(lines, release, trace_id=request.state.request_id, ends_at=ends_at)


class ExecBody(BaseModel):
    """POST .../exec body. Unknown fields are refused: a mistyped `working_dir` must not run elsewhere."""

    model_config = ConfigDict(extra="forbid")

    # json_schema_extra: what the validators below check, for /openapi.json
    command: list[str] = Field(
        min_length=1,
        max_length=1024,
        description="argv; no shell unless you run one (64 KiB at most in all)",
        json_schema_extra={"prefixItems": [{"type": "string", "minLength": 1}]},
    )
    working_dir: str | None = Field(
        default=None,
        max_length=4096,
        description="Absolute directory",
        json_schema_extra={
            "anyOf": [{"type": "string", "maxLength": 4096, "pattern": r"^/[^\x00]*$"}, {"type": "null"}]
        },
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        max_length=256,
        description="Added variables",
        json_schema_extra={
            "propertyNames": {"pattern": _ENV_NAME.pattern},
            "additionalProperties": {"type": "string", "pattern": r"^[^\x00]*$"},
        },
    )

    @field_validator("command")
    @classmethod
    def _program_named(cls, command: list[str]) -> list[str]:
        if not command[0]:
            raise ValueError("command[0] (the program) must not be empty")
        if sum(len(part) for part in command) > 65_536:
            raise ValueError("command is longer than 64 KiB")
        return command

    @field_validator("working_dir")
    @classmethod
    def _absolute(cls, working_dir: str | None) -> str | None:
        if working_dir is not None and (not working_dir.startswith("/") or "\x00" in working_dir):
            raise ValueError("working_dir must be an absolute path")
        return working_dir

    @field_validator("environment")
    @classmethod
    def _names(cls, environment: dict[str, str]) -> dict[str, str]:
        bad = sorted(key for key in environment if not _ENV_NAME.match(key))
        if bad:
            raise ValueError(f"not valid variable names: {', '.join(bad)}")
        if any("\x00" in value for value in environment.values()):
            raise ValueError("environment values must not contain NUL")
        return environment


@router.post("/api/v1/pods/{namespace}/{name}/exec", summary="Run a command in a container")
async def pod_exec(
    request: Request,
    namespace: Namespace,
    name: PodName,
    body: ExecBody,
    _: Annotated[Principal, Depends(require("exec", "exec"))],
    context: KubeContext,
    services: Services,
    container: Container = None,
    timeout_seconds: Annotated[
        int, Query(ge=1, le=MAX_EXEC_TIMEOUT_SECONDS, description="Command timeout in seconds")
    ] = 30,
) -> JSONResponse:
    exec_request = ExecRequest(
        command=body.command,
        container=container,
        timeout_seconds=_within_lambda(request, timeout_seconds),
        working_dir=body.working_dir,
        environment=body.environment,
    )
    result = await run_blocking(services.pods.exec, context, namespace, name, exec_request)
    return JSONResponse(result)


def _within_lambda(request: Request, timeout_seconds: float) -> float:
    """In Lambda, end the command while there is still time to answer (else API Gateway answers 503)."""
    lambda_context = request.scope.get("aws.context")
    remaining_ms = getattr(lambda_context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        return timeout_seconds
    return max(1.0, min(timeout_seconds, remaining_ms() / 1000 - _LAMBDA_MARGIN_SECONDS))
