"""GET /health and GET /api/v1/version (reference section 2)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from kubilitics.api.blocking import run_blocking
from kubilitics.api.deps import KubeContext, Services, require
from kubilitics.api.responses import JSONResponse
from kubilitics.services.system import RETRY_AFTER_SECONDS

router = APIRouter(tags=["system"])


@router.get("/health", summary="Service and dependency health (no authentication)")
async def health(services: Services) -> JSONResponse:
    healthy, body = await run_blocking(services.system.health)
    headers = {} if healthy else {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse(body, status_code=200 if healthy else 503, headers=headers)


@router.get("/api/v1/version", summary="Versions of the backend and its components")
async def version(
    _: Annotated[Any, Depends(require("read", "standard"))],
    context: KubeContext,
    services: Services,
) -> dict[str, Any]:
    return await run_blocking(services.system.version, context.name)
