"""Events, metrics and topology (reference sections 6 and 7)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.api import documented as doc
from kubilitics.api.blocking import run_blocking
from kubilitics.api.deps import KubeContext, Services, require
from kubilitics.api.responses import JSONResponse
from kubilitics.auth.tokens import Principal
from kubilitics.ports import Clock

router = APIRouter(tags=["observability"])

Name = Annotated[str | None, Query(min_length=1, max_length=253)]
# Checked by the services (400 invalid_parameter naming the rule); declared for /openapi.json.
NamespaceName = Annotated[
    str | None, Query(min_length=1, max_length=253, json_schema_extra=doc.optional(doc.namespace_name()))
]
ObjectName = Annotated[
    str | None, Query(min_length=1, max_length=253, json_schema_extra=doc.optional(doc.object_name()))
]
Time = doc.optional(doc.date_time(doc.RFC3339_EVENTS), doc.EMPTY)
Limit = Annotated[int, Query(ge=1, le=1000)]


async def _answer(
    query: Callable[..., dict[str, Any]], context: ContextConfig, clock: Clock, **params: Any
) -> JSONResponse:
    """`query(context, now=clock.now(), **params)` as blocking work; what it returns is the body."""
    return JSONResponse(await run_blocking(query, context, now=clock.now(), **params))


@router.get("/api/v1/events", summary="Cluster events in a time window")
async def list_events(
    # every page of the window's events, plus the namespace and kind checks
    _: Annotated[Principal, Depends(require("read", "read", fans_out=True))],
    context: KubeContext,
    services: Services,
    namespace: NamespaceName = None,
    resource_kind: Name = None,
    resource_name: Name = None,
    event_type: Annotated[
        str | None,
        Query(
            description="Normal, Warning or Error (any case)",
            json_schema_extra=doc.optional({"type": "string", "pattern": doc.EVENT_TYPE}, doc.EMPTY),
        ),
    ] = None,
    since_time: Annotated[
        str | None, Query(description="RFC 3339 (default: one hour ago)", json_schema_extra=Time)
    ] = None,
    until_time: Annotated[
        str | None, Query(description="RFC 3339 (default: now)", json_schema_extra=Time)
    ] = None,
    limit: Limit = 100,
    sort_order: Literal["asc", "desc"] = "desc",
) -> JSONResponse:
    return await _answer(
        services.events.list_events,
        context,
        services.clock,
        namespace=namespace,
        resource_kind=resource_kind,
        resource_name=resource_name,
        event_type=event_type,
        since_time=since_time,
        until_time=until_time,
        limit=limit,
        sort_order=sort_order,
    )


@router.get("/api/v1/metrics/nodes", summary="Node CPU and memory: usage, allocatable, requests, limits")
async def node_metrics(
    _: Annotated[Principal, Depends(require("read", "standard", fans_out=True))],  # nodes, metrics, pods
    context: KubeContext,
    services: Services,
    node_name: ObjectName = None,
    sort_by: Literal["name", "cpu_usage", "memory_usage", "network"] = "name",
) -> JSONResponse:
    return await _answer(
        services.metrics.nodes, context, services.clock, node_name=node_name, sort_by=sort_by
    )


@router.get("/api/v1/metrics/pods", summary="Container CPU and memory against requests and limits")
async def pod_metrics(
    _: Annotated[Principal, Depends(require("read", "standard", fans_out=True))],  # pods, metrics, namespace
    context: KubeContext,
    services: Services,
    namespace: NamespaceName = None,
    pod_name: ObjectName = None,
    sort_by: Literal["name", "cpu_usage", "memory_usage"] = "name",
    limit: Limit = 100,
) -> JSONResponse:
    return await _answer(
        services.metrics.pods,
        context,
        services.clock,
        namespace=namespace,
        pod_name=pod_name,
        sort_by=sort_by,
        limit=limit,
    )


@router.get("/api/v1/topology", summary="Nodes, namespaces, workloads and their relationships")
async def topology(
    _: Annotated[Principal, Depends(require("read", "topology", fans_out=True))],  # up to ~15 calls
    context: KubeContext,
    services: Services,
    depth: Annotated[int, Query(ge=1, le=5, description="1 summary ... 5 containers")] = 3,
    namespace: NamespaceName = None,
    include_metrics: bool = True,
    include_events: bool = False,
) -> JSONResponse:
    return await _answer(
        services.topology.topology,
        context,
        services.clock,
        depth=depth,
        namespace=namespace,
        include_metrics=include_metrics,
        include_events=include_events,
    )
