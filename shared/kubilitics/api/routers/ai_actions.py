"""GET /api/v1/ai/actions/pending, POST /api/v1/ai/actions/{id}/approve and .../reject (section 12)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from kubilitics.api.blocking import run_blocking
from kubilitics.api.deps import KubeContext, Services, require
from kubilitics.auth.tokens import Principal
from kubilitics.services.access import resource_subject

router = APIRouter(tags=["ai"])

ActionId = Annotated[str, Path(alias="id", min_length=1, max_length=64)]


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approval_notes: str | None = Field(default=None, max_length=2000)
    require_verification: bool = True


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000)


@router.get("/api/v1/ai/actions/pending", summary="Proposed actions awaiting approval")
async def pending_actions(
    _: Annotated[Principal, Depends(require("read", "standard"))],
    services: Services,
    context: KubeContext,
    severity: Annotated[Literal["critical", "high", "medium", "low"] | None, Query()] = None,
    investigation_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    return await run_blocking(
        lambda: services.actions.list_pending(
            context.name,
            severity=severity,
            investigation_id=investigation_id,
            limit=limit,
            visible=lambda actions: services.access_reviews.visible(context, actions, resource_subject),
        )
    )


@router.post(
    "/api/v1/ai/actions/{id}/approve",
    summary="Approve an action: dry run, apply, verify, roll back if verification fails",
)
async def approve_action(
    principal: Annotated[Principal, Depends(require("write", "write"))],
    services: Services,
    action_id: ActionId,
    body: Annotated[ApproveBody | None, Body()] = None,
) -> dict[str, Any]:
    """Needs `write`, and what the change itself needs over REST: an action that deletes (`restart_pod`)
    also needs `delete` (403 `insufficient_scope` otherwise, checked by the service)."""
    body = body or ApproveBody()
    return await run_blocking(
        services.actions.approve, principal, action_id, body.approval_notes, body.require_verification
    )


@router.post("/api/v1/ai/actions/{id}/reject", summary="Reject an action")
async def reject_action(
    principal: Annotated[Principal, Depends(require("write", "write"))],
    services: Services,
    action_id: ActionId,
    body: Annotated[RejectBody | None, Body()] = None,
) -> dict[str, Any]:
    return await run_blocking(services.actions.reject, principal, action_id, (body or RejectBody()).reason)
