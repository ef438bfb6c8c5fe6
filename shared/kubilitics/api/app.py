"""The FastAPI application factory shared by every Lambda function and the local server."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from kubilitics import API_VERSION
from kubilitics.api.errors import install_error_handlers
from kubilitics.api.middleware import RequestContextMiddleware
from kubilitics.api.responses import JSONResponse
from kubilitics.config import get_settings


def create_app(*routers: APIRouter, title: str = "Kubilitics API") -> FastAPI:
    app = FastAPI(
        title=title,
        version=API_VERSION,
        description="Kubernetes management API with an AI troubleshooting layer.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        default_response_class=JSONResponse,
    )
    for router in routers:
        app.include_router(router)
    install_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    # Unauthenticated, as /openapi.json; only the WebSocket routes of this app are described.
    app.add_api_route("/asyncapi.json", lambda: _asyncapi(app), methods=["GET"], include_in_schema=False)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=get_settings().max_body_bytes)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The document, built on its first request: nothing of it is imported at cold start."""
    if app.openapi_schema is None:
        from kubilitics.api.openapi import describe

        app.openapi_schema = describe(app)
    return app.openapi_schema


def _asyncapi(app: FastAPI) -> dict[str, Any]:
    """The AsyncAPI document of the WebSocket messages, built on its first request, as /openapi.json."""
    document: dict[str, Any] | None = getattr(app.state, "asyncapi_schema", None)
    if document is None:
        from kubilitics.api.asyncapi import describe

        document = app.state.asyncapi_schema = describe(app)
    return document
