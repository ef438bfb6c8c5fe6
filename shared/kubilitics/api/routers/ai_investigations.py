"""POST /api/v1/ai/investigate and GET /api/v1/ai/investigations (reference section 10)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from kubilitics.api.blocking import run_blocking
from kubilitics.api.deps import KubeContext, Services, require
from kubilitics.auth.tokens import Principal
from kubilitics.errors import KubiliticsError
from kubilitics.services.access import resource_subject
from kubilitics.services.investigations import CLUSTER, InvestigationRequest

router = APIRouter(tags=["ai"])


def missing_field(field: str) -> KubiliticsError:
    """The body pydantic would have refused had the field been required (api/errors.py)."""
    violations = [{"field": field, "reason": "missing", "message": "Field required"}]
    return KubiliticsError(
        f"Required field missing: {field}",
        code="missing_required_field",
        details={"field": field, "violations": violations},
    )


class InvestigateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource_kind: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="Kind, plural or short name; `Cluster` (or no resource at all) for the whole cluster",
    )
    namespace: str | None = Field(
        default=None, max_length=253, description="Namespace (default: the token's, else `default`)"
    )
    resource_name: str | None = Field(default=None, min_length=1, max_length=253)
    symptoms: list[Annotated[str, Field(max_length=500)]] = Field(default_factory=list, max_length=20)
    investigation_scope: Literal["quick", "standard", "deep"] = "standard"
    search_window_minutes: int = Field(default=60, ge=1, le=1440, description="Events and logs this far back")


@router.post(
    "/api/v1/ai/investigate",
    status_code=202,
    summary="Start an AI investigation of a resource (runs on the investigation state machine)",
)
async def start_investigation(
    principal: Annotated[Principal, Depends(require("write", "investigations"))],
    services: Services,
    context: KubeContext,
    body: InvestigateBody,
) -> dict[str, Any]:
    kind, name = body.resource_kind, body.resource_name
    if kind is None and name is None:
        kind = CLUSTER  # no resource: the whole cluster
    for field, value in (("resource_kind", kind), ("resource_name", name)):
        if value is None and not (field == "resource_name" and str(kind).lower() == CLUSTER.lower()):
            raise missing_field(field)
    request = InvestigationRequest(
        resource_kind=str(kind),
        resource_name=name or "",
        namespace=body.namespace,
        symptoms=tuple(body.symptoms),
        investigation_scope=body.investigation_scope,
        search_window_minutes=body.search_window_minutes,
    )
    return await run_blocking(services.investigations.start, principal, context, request)


@router.get("/api/v1/ai/investigations", summary="Investigations of the cluster, with their results")
async def list_investigations(
    _: Annotated[Principal, Depends(require("read", "standard"))],
    services: Services,
    context: KubeContext,
    status: Annotated[Literal["pending", "in_progress", "completed", "failed"] | None, Query()] = None,
    namespace: Annotated[str | None, Query(max_length=253)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    sort_by: Annotated[Literal["start_time", "completion_time", "severity"] | None, Query()] = None,
    include_findings: Annotated[bool, Query(description="Add root_cause, evidence and findings")] = False,
) -> dict[str, Any]:
    return await run_blocking(
        lambda: services.investigations.list(
            context.name,
            status=status,
            namespace=namespace,
            limit=limit,
            offset=offset,
            sort_by=sort_by,
            include_findings=include_findings,
            visible=lambda records: services.access_reviews.visible(context, records, resource_subject),
        )
    )
