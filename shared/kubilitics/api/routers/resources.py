"""GET/POST /api/v1/resources/{kind}, PUT/DELETE /api/v1/resources/{kind}/{namespace}/{name} (section 3)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query

from kubilitics.api import documented as doc
from kubilitics.api.blocking import run_blocking
from kubilitics.api.deps import KubeContext, Services, require
from kubilitics.api.responses import JSONResponse
from kubilitics.auth.tokens import Principal
from kubilitics.rawjson import strip_managed_fields
from kubilitics.services.resources import (
    CLUSTER_SCOPED_NAMESPACE,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    ListQuery,
)

router = APIRouter(prefix="/api/v1/resources", tags=["resources"])

Kind = Annotated[
    str,
    Path(
        min_length=1,
        max_length=253,
        description="Kind, plural or short name (`Pod`, `pods`, `po`), optionally with its group "
        "(`deployments.apps`); any kind the cluster serves, custom resources included",
    ),
]
Namespace = Annotated[
    str,
    Path(
        min_length=1,
        max_length=63,
        description=f"Namespace; `{CLUSTER_SCOPED_NAMESPACE}` for cluster-scoped kinds (Node, ClusterRole)",
        # checked by the service: a DNS-1123 label for namespaced kinds, `_` for cluster-scoped ones
        json_schema_extra={"pattern": f"^(_|{doc.DNS1123_LABEL[1:-1]})$"},
    ),
]
# Any name the API server may hold (RBAC names have `:`): the service refuses only what would change
# the path on the way there (`.`, `..`, `/`, `%`).
Name = Annotated[
    str, Path(min_length=1, max_length=253, json_schema_extra={"pattern": r"^(?!\.{1,2}$)[^/%]+$"})
]
Manifest = Annotated[dict[str, Any], Body(description="A Kubernetes object as JSON (camelCase fields)")]
# As kubectl does, objects come without metadata.managedFields (server-side apply's bookkeeping).
ShowManagedFields = Annotated[bool, Query(description="Keep metadata.managedFields in the objects returned")]

# Objects are returned as JSONResponse: FastAPI's encoder would walk every field of every object.


@router.get("/{kind}", summary="List objects of any kind, with selectors, paging and sorting")
async def list_resources(
    kind: Kind,
    _: Annotated[Principal, Depends(require("read", "read"))],
    context: KubeContext,
    services: Services,
    namespace: Annotated[
        str | None,
        Query(
            max_length=63,
            description="Omit (or empty) for all namespaces; ignored for cluster-scoped kinds",
            json_schema_extra=doc.optional(doc.namespace_name(), doc.EMPTY),
        ),
    ] = None,
    label_selector: Annotated[str | None, Query(max_length=4096, examples=["app=web,tier!=cache"])] = None,
    field_selector: Annotated[str | None, Query(max_length=4096, examples=["status.phase=Running"])] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    sort_by: Annotated[Literal["name", "created", "age"] | None, Query()] = None,
    sort_order: Annotated[Literal["asc", "desc"] | None, Query()] = None,
    show_managed_fields: ShowManagedFields = False,
) -> JSONResponse:
    query = ListQuery(
        namespace, label_selector, field_selector, limit, offset, sort_by, sort_order, show_managed_fields
    )
    return JSONResponse(await run_blocking(services.resources.list_page, context, kind, query))


@router.post("/{kind}", status_code=201, summary="Create an object (validate_only: server-side dry run)")
async def create_resource(
    kind: Kind,
    manifest: Manifest,
    principal: Annotated[Principal, Depends(require("write", "write"))],
    context: KubeContext,
    services: Services,
    validate_only: Annotated[bool, Query(description="Dry run: 201 with the would-be object")] = False,
    show_managed_fields: ShowManagedFields = False,
) -> JSONResponse:
    created = await run_blocking(
        lambda: services.resources.create(
            context,
            kind,
            manifest,
            default_namespace=principal.namespace or "default",
            dry_run=validate_only,
        )
    )
    return JSONResponse(
        _shown(created, show_managed_fields), status_code=201
    )  # validate_only too: the reference answers as a create


@router.put("/{kind}/{namespace}/{name}", summary="Replace or patch an object")
async def update_resource(
    kind: Kind,
    namespace: Namespace,
    name: Name,
    body: Manifest,
    _: Annotated[Principal, Depends(require("write", "write"))],
    context: KubeContext,
    services: Services,
    patch_strategy: Annotated[
        Literal["replace", "merge_patch", "strategic_merge_patch"], Query()
    ] = "replace",
    show_managed_fields: ShowManagedFields = False,
) -> JSONResponse:
    updated = await run_blocking(
        lambda: services.resources.update(context, kind, namespace, name, body, strategy=patch_strategy)
    )
    return JSONResponse(_shown(updated, show_managed_fields))


@router.delete("/{kind}/{namespace}/{name}", summary="Delete an object")
async def delete_resource(
    kind: Kind,
    namespace: Namespace,
    name: Name,
    _: Annotated[Principal, Depends(require("delete", "write"))],
    context: KubeContext,
    services: Services,
    grace_period_seconds: Annotated[
        int | None, Query(ge=0, le=31_536_000, description="Default: the object's own (30 s for most pods)")
    ] = None,
    force: Annotated[bool, Query(description="Delete at once (grace period 0)")] = False,
    show_managed_fields: ShowManagedFields = False,
) -> JSONResponse:
    deleted = await run_blocking(
        lambda: services.resources.delete(
            context, kind, namespace, name, grace_period_seconds=grace_period_seconds, force=force
        )
    )
    return JSONResponse(_shown(deleted, show_managed_fields))


def _shown(obj: Any, show_managed_fields: bool) -> Any:
    return obj if show_managed_fields else strip_managed_fields(obj)
