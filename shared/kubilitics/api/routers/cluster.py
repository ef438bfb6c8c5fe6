"""GET /api/v1/namespaces and GET /api/v1/contexts (reference section 4)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from kubilitics.api.blocking import run_blocking
from kubilitics.api.deps import KubeContext, Services, require
from kubilitics.api.responses import JSONResponse
from kubilitics.auth.tokens import Principal

router = APIRouter(tags=["cluster"])


@router.get("/api/v1/namespaces", summary="Namespaces with pod counts and quota usage")
async def list_namespaces(
    _: Annotated[Principal, Depends(require("read", "read", fans_out=True))],  # a pod count per namespace
    context: KubeContext,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=1000, description="Max results")] = 100,
    offset: Annotated[int, Query(ge=0, description="Pagination offset")] = 0,
    include_system: Annotated[bool, Query(description="Include kube-* and kwok namespaces")] = False,
) -> JSONResponse:
    body = await run_blocking(
        services.cluster.namespaces, context, limit=limit, offset=offset, include_system=include_system
    )
    return JSONResponse(body)


@router.get("/api/v1/contexts", summary="Kubeconfig contexts with reachability and version")
async def list_contexts(
    principal: Annotated[Principal, Depends(require(None, "standard", fans_out=True))],  # a probe per context
    services: Services,
) -> JSONResponse:
    return JSONResponse(await run_blocking(services.cluster.contexts, principal.cluster_id))
