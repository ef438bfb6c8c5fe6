"""GET /api/v1/ai/insights and POST /api/v1/ai/insights/{id}/dismiss (reference section 11)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query

from kubilitics.api.blocking import run_blocking
from kubilitics.api.deps import KubeContext, Services, require
from kubilitics.auth.tokens import Principal

router = APIRouter(tags=["ai"])


@router.get("/api/v1/ai/insights", summary="Proactive insights: health, security, performance, cost")
async def list_insights(
    _: Annotated[Principal, Depends(require("read", "standard"))],
    services: Services,
    context: KubeContext,
    category: Annotated[
        Literal["health", "security", "performance", "cost_optimization", "all"], Query()
    ] = "all",
    severity: Annotated[Literal["critical", "warning", "info"] | None, Query()] = None,
    dismissed: Annotated[bool, Query(description="Include dismissed insights")] = False,
    status: Annotated[
        Literal["active", "resolved", "all"], Query(description="Resolved: no longer detected")
    ] = "active",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return await run_blocking(
        services.insights.list,
        context.name,
        category=category,
        severity=severity,
        dismissed=dismissed,
        status=status,
        limit=limit,
        caller=context,
    )


@router.post("/api/v1/ai/insights/{id}/dismiss", summary="Dismiss an insight")
async def dismiss_insight(
    principal: Annotated[Principal, Depends(require("write", "write"))],
    services: Services,
    insight_id: Annotated[str, Path(alias="id", min_length=1, max_length=128)],
    body: Annotated[Any, Body(description='{"reason": "acknowledged_wont_fix", "notes": "..."}')] = None,
) -> dict[str, Any]:
    # A token bound to a cluster dismisses only that cluster's insights, and only those its RBAC lets
    # it read (others: 404, as unknown).
    return await run_blocking(
        services.insights.dismiss,
        insight_id,
        body,
        principal.sub,
        principal.cluster_id,
        lambda context_name: services.caller_context(principal, context_name),
    )
