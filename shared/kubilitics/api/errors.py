"""The one exception-handler map: every error leaves as the standard body of reference section 16."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from kubilitics.api.responses import JSONResponse
from kubilitics.errors import ERROR_STATUS, KubiliticsError, error_body

log = logging.getLogger(__name__)


def error_response(exc: KubiliticsError, trace_id: str | None) -> JSONResponse:
    body = error_body(exc.code, exc.message, exc.details, trace_id)
    body.update(exc.extra)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def trace_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc[1:]) or str(loc[0])


def validation_error(exc: RequestValidationError) -> KubiliticsError:
    """Pick the reference's code for a request that failed FastAPI/pydantic validation."""
    errors = exc.errors()
    violations = [
        {
            "field": _location(tuple(e.get("loc", ()))),
            "reason": e.get("type", "invalid"),
            "message": e.get("msg", ""),
        }
        for e in errors
    ]
    first = errors[0] if errors else {}
    where = (first.get("loc") or ("body",))[0]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return KubiliticsError(
            "Request body is not valid JSON", code="validation_failed", details={"violations": violations}
        )
    if kind == "missing" and where == "body":
        field = violations[0]["field"]
        return KubiliticsError(
            f"Required field missing: {field}",
            code="missing_required_field",
            details={"field": field, "violations": violations},
        )
    if where in ("query", "path", "header"):
        field = violations[0]["field"]
        return KubiliticsError(
            f"Invalid {where} parameter {field}: {violations[0]['message']}",
            code="invalid_parameter",
            details={"parameter": field, "violations": violations},
        )
    return KubiliticsError(
        "Request validation failed",
        code="validation_failed",
        details={"violations": violations},
        extra={"violations": violations},
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method served at this path. Starlette's own `Allow` names only the methods of the first
    route matching the path, and FastAPI makes a route per method."""
    routes: list[BaseRoute] = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KubiliticsError)
    async def _domain(request: Request, exc: KubiliticsError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed: %r", exc)
        return error_response(exc, trace_id_of(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc), trace_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err = KubiliticsError(f"No route for {request.url.path}", code="not_found")
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            err = KubiliticsError(
                f"Method {request.method} not allowed here",
                code="method_not_allowed",
                details={"allowed_methods": allowed},
                headers={"Allow": ", ".join(allowed)},  # RFC 9110 15.5.6
            )
        else:
            code = next((c for c, s in ERROR_STATUS.items() if s == exc.status_code), "internal_server_error")
            err = KubiliticsError(str(exc.detail), code=code)
        return error_response(err, trace_id_of(request))

    # Anything else is answered by RequestContextMiddleware (a 500 with the standard body).
