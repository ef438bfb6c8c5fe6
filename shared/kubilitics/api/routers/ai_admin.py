"""GET /api/v1/ai/status, GET/PUT /api/v1/ai/config, GET /api/v1/ai/usage, GET /api/v1/ai/analytics/summary
(reference 9, 13 and 15)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query

from kubilitics.api.blocking import run_blocking
from kubilitics.api.deps import Services, require
from kubilitics.auth.tokens import Principal

router = APIRouter(tags=["ai"])


@router.get("/api/v1/ai/status", summary="AI service status: provider, connectivity, token budget")
async def ai_status(
    # the Messages API probe and the month's usage records
    principal: Annotated[Principal, Depends(require("read", "standard", fans_out=True))],
    services: Services,
) -> dict[str, Any]:
    # A token bound to a cluster sees that cluster's usage and queue only (so do usage and analytics).
    return await run_blocking(services.ai_admin.status, principal.cluster_id)


@router.get("/api/v1/ai/config", summary="The AI configuration (admin)")
async def get_ai_config(
    _: Annotated[Principal, Depends(require("admin", "standard"))], services: Services
) -> dict[str, Any]:
    def view() -> dict[str, Any]:
        return services.ai_config.view(services.anthropic_api_key())

    return await run_blocking(view)


@router.put("/api/v1/ai/config", summary="Change the AI configuration: a partial update (admin)")
async def put_ai_config(
    principal: Annotated[Principal, Depends(require("admin", "config_write"))],
    services: Services,
    body: Annotated[
        Any, Body(description="Any subset of the GET body; `llm_configuration.api_key` sets the key")
    ],
) -> dict[str, Any]:
    return await run_blocking(services.ai_config.update, body, services.anthropic_api_key, principal.sub)


@router.get("/api/v1/ai/usage", summary="LLM usage and the monthly budget")
async def ai_usage(
    principal: Annotated[Principal, Depends(require("read", "standard", fans_out=True))],  # usage records
    services: Services,
    time_period: Annotated[Literal["1h", "24h", "7d", "30d"], Query()] = "24h",
    group_by: Annotated[Literal["operation", "user", "namespace"] | None, Query()] = None,
) -> dict[str, Any]:
    # Per-user figures are usage details: admins only (reference section 15).
    return await run_blocking(
        services.ai_admin.usage, time_period, group_by, principal.has_scope("admin"), principal.cluster_id
    )


@router.get("/api/v1/ai/analytics/summary", summary="AI effectiveness and usage over a period")
async def ai_analytics_summary(
    # investigations, actions, insights, usage and engagement records
    principal: Annotated[Principal, Depends(require("read", "standard", fans_out=True))],
    services: Services,
    time_period: Annotated[Literal["24h", "7d", "30d", "90d"], Query()] = "7d",
) -> dict[str, Any]:
    return await run_blocking(services.analytics.summary, time_period, principal.cluster_id)
