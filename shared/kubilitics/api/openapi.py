"""The OpenAPI document: every operation with its typed body, success schema and error answers.

Built on the first GET /openapi.json (never at cold start: api/app.py imports this module then).
Routes answer raw JSON (objects as the API server wrote them, orjson-rendered) and FastAPI does not
validate or re-serialize what they return: the response schemas here are documentation, written
against what the services build (field names as in the reference, additions beside them).

What FastAPI generates is corrected in five ways:
- no 422 `HTTPValidationError`: a request FastAPI refuses is answered 400 with the standard error body
  (api/errors.py), as every other error;
- every error status an operation can answer, with the standard body (reference section 16) and, on
  429, the rate-limit headers (section 17); every answer carries X-Request-ID and X-API-Version;
- the success schema of each operation (OPERATIONS; a route missing there fails the unit test);
- the bodies a route reads as plain JSON (dismiss, PUT /ai/config) typed as the services check them;
- names a generated client can use (tests/e2e/test_generated_client.py generates one with
  openapi-python-client): operationIds are the route functions' names, optional parameters are not
  declared nullable, shared shapes and nullable objects are named components (ResourceRef, RootCause).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from kubilitics.errors import ERROR_STATUS

# ---- schema helpers ------------------------------------------------------------------------------


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(
    properties: dict[str, Any] | None = None,
    required: Iterable[str] = (),
    description: str | None = None,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An object; other fields may appear beside those listed (new fields are optional, section 18)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties or {}}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    if values is not None:
        schema["additionalProperties"] = values
    return schema


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def map_of(values: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": values}


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
N_STR, N_INT, N_NUM, N_BOOL, N_TIME = (nullable(s) for s in (STR, INT, NUM, BOOL, TIME))
DECIMAL = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "description": "A decimal number as a string"}
N_DECIMAL = nullable(DECIMAL)
COUNTS = map_of(INT)

# ---- component schemas ---------------------------------------------------------------------------

ERROR_BODY = obj(
    {
        "error": {"type": "string", "enum": sorted(ERROR_STATUS), "description": "Machine-readable code"},
        "message": STR,
        "details": obj(description="Context of the error (the parameter, the field, the limit, ...)"),
        "timestamp": TIME,
        "trace_id": {**N_STR, "description": "The request's X-Request-ID"},
    },
    required=("error", "message", "details", "timestamp", "trace_id"),
    description="The standard error body (reference section 16). Some codes add fields at the top level "
    "as the reference's examples do (`violations`, `valid_kinds`, `resource_kind`, `expired_at`, "
    "an exec's `exit_code`/`stdout`/`stderr`).",
)

KUBERNETES_OBJECT = obj(
    {
        "apiVersion": STR,
        "kind": STR,
        "metadata": obj({"name": STR, "namespace": STR, "uid": STR, "resourceVersion": STR}),
        "spec": obj(),
        "status": {"description": "An object, or a string in some kinds"},
    },
    description="A Kubernetes object as the API server has it (camelCase fields); DELETE may answer "
    "a `Status` object instead.",
)

HEALTH = obj(
    {
        "status": {"type": "string", "enum": ["healthy", "degraded"]},
        "timestamp": TIME,
        "version": STR,
        "build": STR,
        "uptime_seconds": INT,
        "dependencies": map_of(STR),
        "region": N_STR,
        "cluster_info": obj({"name": N_STR, "nodes": N_INT, "version": N_STR}),
        "error": STR,
        "retry_after_seconds": INT,
    },
    required=("status", "timestamp", "version"),
)

VERSION = obj(
    {
        "backend": obj(
            {
                "version": STR,
                "build_commit": STR,
                "build_date": STR,
                "golang_version": N_STR,
                "python_version": STR,
                "architecture": STR,
            }
        ),
        "frontend": obj({"version": N_STR, "react_version": N_STR, "build_hash": N_STR, "status": STR}),
        "ai_service": obj(
            {"version": STR, "build_commit": STR, "go_version": N_STR, "python_version": STR, "status": {}}
        ),
        "kubernetes": obj({"api_version": STR, "cluster_name": N_STR}),
        "database": obj({"type": STR, "migration_version": {}, "schema_version": {}}),
        "helm_chart": obj({"name": N_STR, "version": N_STR, "repository": N_STR, "status": STR}),
        "deployment": obj(),
    },
    required=("backend", "kubernetes", "database"),
)

RESOURCE_LIST = obj(
    {
        "kind": STR,
        "api_version": STR,
        "total_count": INT,
        "page": obj(
            {"limit": INT, "offset": INT, "returned": INT, "has_more": BOOL},
            required=("limit", "offset", "returned", "has_more"),
        ),
        "items": array(ref("KubernetesObject")),
    },
    required=("kind", "api_version", "total_count", "page", "items"),
)

QUOTA = obj({"hard": map_of(STR), "used": map_of(STR)})
NAMESPACE_LIST = obj(
    {
        "total_count": INT,
        "items": array(
            obj(
                {
                    "name": STR,
                    "status": STR,
                    "creation_timestamp": N_TIME,
                    "pod_count": N_INT,
                    "resource_quota_status": QUOTA,
                },
                required=("name", "status"),
            )
        ),
    },
    required=("total_count", "items"),
)

CONTEXT_LIST = obj(
    {
        "current_context": N_STR,
        "contexts": array(
            obj(
                {
                    "name": STR,
                    "cluster": obj(
                        {"name": N_STR, "server": N_STR, "certificate_authority": STR, "is_insecure": BOOL}
                    ),
                    "user": obj({"name": N_STR, "client_certificate": STR, "auth_method": STR}),
                    "namespace": N_STR,
                    "is_reachable": BOOL,
                    "kubernetes_version": STR,
                    "error": STR,
                },
                required=("name", "is_reachable"),
            )
        ),
    },
    required=("current_context", "contexts"),
)

EVENT = obj(
    {
        "type": STR,
        "reason": STR,
        "message": STR,
        "involved_object": obj({"kind": STR, "namespace": STR, "name": STR, "uid": STR}),
        "first_timestamp": TIME,
        "last_timestamp": TIME,
        "count": INT,
        "source": obj({"component": STR, "host": STR}),
    },
    required=("type", "reason", "message", "involved_object"),
)
EVENT_LIST = obj({"total_count": INT, "items": array(ref("Event"))}, required=("total_count", "items"))

SOURCE = {
    "source": {**STR, "description": "Where the figures come from, or `unavailable`"},
    "reason": {**STR, "description": "Why there are no figures"},
}
NODE_METRICS = obj(
    {
        "timestamp": TIME,
        "nodes": array(
            obj(
                {
                    "name": STR,
                    "cpu": obj(
                        {
                            "usage_cores": N_DECIMAL,
                            "allocatable_cores": N_DECIMAL,
                            "percent": N_NUM,
                            "requests_cores": N_DECIMAL,
                            "limits_cores": N_DECIMAL,
                            "requests_percent": N_NUM,
                            "limits_percent": N_NUM,
                            "throttling_detected": N_BOOL,
                        }
                    ),
                    "memory": obj(
                        {
                            "usage_bytes": N_DECIMAL,
                            "allocatable_bytes": N_DECIMAL,
                            "percent": N_NUM,
                            "requests_bytes": N_DECIMAL,
                            "limits_bytes": N_DECIMAL,
                            "requests_percent": N_NUM,
                            "limits_percent": N_NUM,
                        }
                    ),
                    "network": obj(
                        {"rx_bytes": N_DECIMAL, "tx_bytes": N_DECIMAL, "rx_errors": N_INT, "tx_errors": N_INT}
                        | SOURCE
                    ),
                    "disk": obj(
                        {"usage_bytes": N_DECIMAL, "allocatable_bytes": N_DECIMAL, "percent": N_NUM} | SOURCE
                    ),
                    "status": STR,
                    "pod_count": INT,
                },
                required=("name", "cpu", "memory", "network", "disk", "status"),
            )
        ),
    },
    required=("timestamp", "nodes"),
)

USAGE = obj(
    {
        "usage_cores": N_DECIMAL,
        "usage_bytes": N_DECIMAL,
        "requests": N_DECIMAL,
        "limits": N_DECIMAL,
        "percent_of_request": N_NUM,
        "percent_of_limit": N_NUM,
    }
)
POD_METRICS = obj(
    {
        "timestamp": TIME,
        "total_count": INT,
        "pods": array(
            obj(
                {
                    "namespace": STR,
                    "name": STR,
                    "containers": array(
                        obj({"name": N_STR, "cpu": ref("ContainerUsage"), "memory": ref("ContainerUsage")})
                    ),
                },
                required=("namespace", "name", "containers"),
            )
        ),
    },
    required=("timestamp", "pods"),
)

TOPOLOGY = obj(
    {
        "cluster": obj(
            {"name": N_STR, "version": STR, "total_nodes": INT, "total_pods": INT, "total_services": INT}
        ),
        "nodes": array(
            obj(
                {
                    "name": STR,
                    "role": STR,
                    "status": STR,
                    "cpu_available_cores": N_DECIMAL,
                    "memory_available_bytes": N_DECIMAL,
                    "pod_count": INT,
                    "pods": array(obj({"namespace": STR, "name": STR, "status": N_STR})),
                    "taints": array(obj({"key": N_STR, "value": N_STR, "effect": N_STR})),
                },
                required=("name",),
            )
        ),
        "namespaces": array(
            obj(
                {
                    "name": STR,
                    "status": STR,
                    "pod_count": INT,
                    "resource_quota_enforced": BOOL,
                    "workloads": COUNTS,
                },
                required=("name",),
            )
        ),
        "network_policies": obj({"total": INT, "by_namespace": COUNTS}),
        "metrics_available": BOOL,
        "unscheduled_pods": array(obj()),
        "events": obj({"window_seconds": INT, "warning_count": INT, "recent_warnings": array(ref("Event"))}),
    },
    required=("cluster", "nodes", "namespaces", "network_policies"),
)

EXEC_RESULT = obj(
    {
        "exit_code": INT,
        "stdout": STR,
        "stderr": STR,
        "execution_time_ms": INT,
        "pod": STR,
        "container": STR,
        "truncated": BOOL,
    },
    required=("exit_code", "stdout", "stderr", "execution_time_ms", "pod", "container"),
)

AI_STATUS = obj(
    {
        "status": STR,
        "mode": {"type": "string", "enum": ["llm", "rules_only"]},
        "uptime_seconds": INT,
        "llm_provider": obj(
            {"name": STR, "model": N_STR, "endpoint": N_STR, "connectivity": STR, "last_check": TIME}
        ),
        "token_usage": obj(
            {
                "total_tokens_used": INT,
                "tokens_remaining_budget": INT,
                "monthly_limit_tokens": INT,
                "daily_quota": {**STR, "pattern": r"^\d+$"},
                "daily_used": {**STR, "pattern": r"^\d+$"},
                "reset_time": TIME,
            }
        ),
        "request_queue": obj({"pending": INT, "in_progress": INT, "average_latency_ms": INT}),
        "vector_store": obj({"type": STR, "status": STR}),
    },
    required=("status", "llm_provider", "token_usage"),
)

AI_CONFIG_UPDATED = obj(
    {
        "message": STR,
        "updated_fields": array(STR),
        "effective_timestamp": TIME,
        "restart_required": BOOL,
        "warnings": array({}),
    },
    required=("message", "updated_fields", "effective_timestamp", "restart_required"),
)

SPEND = ref("Spend")
AI_USAGE = obj(
    {
        "time_period": STR,
        "billing_period": obj(
            {
                "start_date": {"type": "string", "format": "date"},
                "end_date": {"type": "string", "format": "date"},
                "days_remaining": INT,
            }
        ),
        "budget": obj(
            {
                "monthly_limit_usd": NUM,
                "monthly_limit_tokens": INT,
                "used_usd": NUM,
                "used_tokens": INT,
                "reserved_usd": NUM,
                "percent_used": NUM,
                "projected_spend_usd": NUM,
            }
        ),
        "totals": SPEND,
        "usage_by_operation": map_of(SPEND),
        "usage_by_user": map_of(SPEND),
        "usage_by_namespace": map_of(SPEND),
        "alerts": array(obj({"type": STR, "threshold_percent": NUM, "current_percent": NUM, "status": STR})),
    },
    required=("billing_period", "budget", "usage_by_operation", "alerts"),
)

ANALYTICS = obj(
    {
        "period": obj(
            {"start_time": TIME, "end_time": TIME, "duration_days": INT, "time_period": STR},
            required=("start_time", "end_time", "duration_days"),
        ),
        "investigations": obj(
            {
                "total_initiated": INT,
                "total_completed": INT,
                "average_duration_seconds": NUM,
                "by_status": COUNTS,
                "success_rate_percent": N_NUM,
                "by_severity": COUNTS,
            }
        ),
        "actions_proposed": obj(
            {
                "total": INT,
                "approved": INT,
                "rejected": INT,
                "expired": INT,
                "pending": INT,
                "approval_rate_percent": N_NUM,
            }
        ),
        "insights_generated": obj(
            {"total": INT, "by_category": COUNTS, "dismissed_percent": N_NUM, "resolved": INT}
        ),
        "token_usage": obj({"total_tokens": INT, "average_per_request": NUM, "by_operation": COUNTS}),
        "llm_api_calls": obj({"total": INT, "success_rate_percent": N_NUM, "average_latency_ms": N_NUM}),
        "user_engagement": obj(
            {
                "unique_users": INT,
                "total_requests": INT,
                "most_active_hours": array(STR),
                "top_operations": array(STR),
                "requests_by_operation": COUNTS,
            }
        ),
    },
    required=("period", "investigations", "actions_proposed", "insights_generated", "user_engagement"),
)

INSIGHT = obj(
    {
        "insight_id": STR,
        "category": {"type": "string", "enum": ["health", "security", "performance", "cost_optimization"]},
        "severity": {"type": "string", "enum": ["critical", "warning", "info"]},
        "title": STR,
        "description": STR,
        "affected_resources": obj({"count": INT, "examples": array(STR)}),
        "recommendation": obj(),
        "generated_time": N_TIME,
        "dismissed_at": N_TIME,
        "rule": N_STR,
        "status": N_STR,
        "namespace": N_STR,
        "cluster": N_STR,
        "first_detected": N_TIME,
        "resolved_at": N_TIME,
        "dismissed_by": N_STR,
        "dismissed_reason": N_STR,
        "dismissed_notes": N_STR,
    },
    required=("insight_id", "category", "severity", "title", "generated_time", "dismissed_at"),
)
INSIGHT_LIST = obj(
    {
        "total_count": INT,
        "insights": array(ref("Insight")),
        "last_scan": nullable(ref("InsightScan")),
    },
    required=("total_count", "insights"),
)
DISMISS_BODY = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
        "notes": nullable({"type": "string", "maxLength": 2000}),
    },
    "required": ["reason"],
    "additionalProperties": False,
    "examples": [{"reason": "acknowledged_wont_fix", "notes": "Legacy system; replaced in Q3"}],
}
INSIGHT_DISMISSED = obj(
    {"insight_id": STR, "dismissed_at": TIME, "dismissed_by": STR, "reason": STR, "notes": N_STR},
    required=("insight_id", "dismissed_at", "dismissed_by", "reason"),
)

# Named components (not inline objects) where several schemas share a shape, so that a generated
# client has one class for it (ResourceRef) rather than one per place it appears, and a nullable object
# is a class of its own name (RiskAssessment) rather than `PendingActionRiskAssessmentType0`.
RESOURCE_REF = ref("ResourceRef")
ROOT_CAUSE = obj(
    {"category": STR, "summary": STR, "confidence": NUM},
    required=("category", "summary", "confidence"),
    description="The diagnosis (listed with include_findings; null until there is one)",
)
INVESTIGATION_STARTED = obj(
    {
        "investigation_id": STR,
        "status": STR,
        "resource": RESOURCE_REF,
        "start_time": TIME,
        "estimated_completion_time": TIME,
        "progress_percent": INT,
    },
    required=("investigation_id", "status", "resource", "start_time"),
)
INVESTIGATION = obj(
    {
        "investigation_id": STR,
        "status": {"type": "string", "enum": ["pending", "in_progress", "completed", "failed"]},
        "resource": RESOURCE_REF,
        "severity": N_STR,
        "start_time": TIME,
        "completion_time": N_TIME,
        "progress_percent": NUM,
        "findings_summary": N_STR,
        "recommendations": array(obj({"priority": INT, "action": STR, "details": STR})),
        "error": {},
        "root_cause": nullable(ref("RootCause")),
        "evidence": array(ref("Citation")),
        "findings": array(ref("Finding")),
        "actions": array(ref("ProposedAction")),
    },
    required=("investigation_id", "status", "resource", "start_time"),
)
INVESTIGATION_LIST = obj(
    {"total_count": INT, "items": array(ref("Investigation"))}, required=("total_count", "items")
)

PENDING_ACTION = obj(
    {
        "action_id": STR,
        "investigation_id": N_STR,
        "severity": N_STR,
        "action_type": N_STR,
        "title": N_STR,
        "description": N_STR,
        "resource": nullable(RESOURCE_REF),
        "changes": obj(),
        "risk_assessment": nullable(ref("RiskAssessment")),
        "proposed_at": TIME,
        "expires_at": TIME,
        "status": N_STR,
    },
    required=("action_id", "proposed_at", "expires_at"),
)
PENDING_ACTION_LIST = obj(
    {"total_count": INT, "pending_actions": array(ref("PendingAction"))},
    required=("total_count", "pending_actions"),
)
ACTION_APPROVED = obj(
    {
        "action_id": STR,
        "status": {"type": "string", "enum": ["approved"]},
        "approved_at": TIME,
        "approved_by": STR,
        "execution_status": {
            "type": "string",
            "description": "succeeded, rolled_back or failed: the change runs before the answer",
        },
        "estimated_completion_time": TIME,
        "completed_at": TIME,
        "message": STR,
        "resource": RESOURCE_REF,
        "changes": obj(),
        "verification": ref("Verification"),
        "rollback": ref("Rollback"),
        "error": {},
    },
    required=("action_id", "status", "approved_at", "approved_by", "execution_status"),
)
ACTION_REJECTED = obj(
    {
        "action_id": STR,
        "status": {"type": "string", "enum": ["rejected"]},
        "rejected_at": TIME,
        "rejected_by": STR,
        "reason": N_STR,
    },
    required=("action_id", "status", "rejected_at", "rejected_by"),
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "ErrorBody": ERROR_BODY,
    "KubernetesObject": KUBERNETES_OBJECT,
    "Health": HEALTH,
    "Version": VERSION,
    "ResourceList": RESOURCE_LIST,
    "NamespaceList": NAMESPACE_LIST,
    "ContextList": CONTEXT_LIST,
    "Event": EVENT,
    "EventList": EVENT_LIST,
    "NodeMetrics": NODE_METRICS,
    "PodMetrics": POD_METRICS,
    "Topology": TOPOLOGY,
    "ExecResult": EXEC_RESULT,
    "AiStatus": AI_STATUS,
    "AiConfigUpdated": AI_CONFIG_UPDATED,
    "AiUsage": AI_USAGE,
    "AnalyticsSummary": ANALYTICS,
    "Insight": INSIGHT,
    "InsightList": INSIGHT_LIST,
    "DismissBody": DISMISS_BODY,
    "InsightDismissed": INSIGHT_DISMISSED,
    "ResourceRef": obj({"kind": STR, "namespace": STR, "name": STR}),
    # What a diagnosis rests on: an object's field, an event or a log line (ai/findings.py Citation).
    "Citation": obj(
        {
            "source": {"type": "string", "enum": ["object", "event", "log", "absent"]},
            "object": RESOURCE_REF,
            "field": STR,
            "value": STR,
            "reason": STR,
            "event": STR,
            "event_type": STR,
            "count": INT,
            "last_seen": STR,
            "container": STR,
            "previous": BOOL,
        },
        required=("source", "object"),
    ),
    "Finding": obj(
        {
            "category": STR,
            "summary": STR,
            "confidence": NUM,
            "severity": {"type": "string", "enum": ["critical", "high", "medium", "low"]},
            "subject": RESOURCE_REF,
            "analyzer": N_STR,
            "affects": array({**STR, "description": "`namespace/name` of a pod, or the key of an object"}),
        },
        required=("category", "summary", "confidence", "severity", "subject"),
        description="One problem found, with its subject (namespace, node and cluster scope: each one)",
    ),
    "ProposedAction": obj(
        {"action_id": STR, "action_type": N_STR, "status": N_STR},
        required=("action_id",),
        description="An action the investigation proposed (GET /api/v1/ai/actions/pending has it whole)",
    ),
    "Verification": obj(
        {"verified": BOOL, "message": STR, "checks": array(STR)},
        description="What was checked after the change was applied",
    ),
    "Rollback": obj(
        {"succeeded": BOOL, "restored": {}, "error": STR},
        required=("succeeded",),
        description="The automatic rollback after a failed verification",
    ),
    "ContainerUsage": USAGE,
    "Spend": obj({"tokens": INT, "cost_usd": NUM, "count": INT}),
    "InsightScan": obj(
        {"scanned_at": N_TIME, "duration_ms": N_INT, "detected": N_INT, "resolved": N_INT},
        description="The last scan of the cluster",
    ),
    "RiskAssessment": obj(
        {
            "risk_level": STR,
            "potential_issues": array(STR),
            "requires_approval": BOOL,
            "approval_reason": N_STR,
        }
    ),
    "RootCause": ROOT_CAUSE,
    "InvestigationStarted": INVESTIGATION_STARTED,
    "Investigation": INVESTIGATION,
    "InvestigationList": INVESTIGATION_LIST,
    "PendingAction": PENDING_ACTION,
    "PendingActionList": PENDING_ACTION_LIST,
    "ActionApproved": ACTION_APPROVED,
    "ActionRejected": ACTION_REJECTED,
}


def _ai_config_schemas() -> dict[str, dict[str, Any]]:
    """GET /ai/config answers the effective configuration, PUT takes any part of it (the models the
    service validates with, ai/configuration.py), plus the key: write-only on PUT, masked on GET."""
    from kubilitics.ai.configuration import AiConfig

    document = AiConfig.model_json_schema(ref_template="#/components/schemas/{model}")
    defs: dict[str, dict[str, Any]] = document.pop("$defs", {})
    llm = defs["LlmConfiguration"]
    update = {**llm, "properties": {**llm["properties"]}}
    update["properties"]["api_key"] = nullable({"type": "string", "minLength": 8, "maxLength": 512})
    update["properties"]["api_key_prefix"] = {"description": "Ignored (GET shows it)"}
    update["title"] = "LlmConfigurationUpdate"
    shown = {**llm, "properties": {**llm["properties"], "api_key_prefix": N_STR}}
    config = {**document, "title": "AiConfig"}
    body = {
        **document,
        "title": "AiConfigUpdate",
        "description": "Any part of the configuration (a partial update): sections merge field by field; "
        "a list replaces the list. `llm_configuration.api_key` sets the key (write-only).",
        "properties": {**document["properties"], "llm_configuration": ref("LlmConfigurationUpdate")},
    }
    config["properties"] = {**document["properties"], "llm_configuration": ref("LlmConfiguration")}
    return {
        **defs,
        "LlmConfiguration": shown,
        "LlmConfigurationUpdate": update,
        "AiConfig": config,
        "AiConfigUpdate": body,
    }


# ---- operations ----------------------------------------------------------------------------------

COMMON = (400, 401, 403, 429, 500, 503)  # every authenticated operation
KUBE = (404, 502)  # reads a cluster: a namespace or object that is not there, the API server failing


@dataclass(frozen=True)
class Operation:
    success: str | None  # component schema of the success answer (None: text)
    errors: tuple[int, ...] = ()  # besides COMMON
    body: str | None = None  # component schema of a body the route reads as plain JSON
    public: bool = False  # no token, no rate limit


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("get", "/health"): Operation("Health", public=True),
    ("get", "/api/v1/version"): Operation("Version"),
    ("get", "/api/v1/resources/{kind}"): Operation("ResourceList", KUBE),
    ("post", "/api/v1/resources/{kind}"): Operation("KubernetesObject", (*KUBE, 409), "KubernetesObject"),
    ("put", "/api/v1/resources/{kind}/{namespace}/{name}"): Operation(
        "KubernetesObject", (*KUBE, 409), "KubernetesObject"
    ),
    ("delete", "/api/v1/resources/{kind}/{namespace}/{name}"): Operation("KubernetesObject", (*KUBE, 409)),
    ("get", "/api/v1/namespaces"): Operation("NamespaceList", KUBE),
    ("get", "/api/v1/contexts"): Operation("ContextList"),
    ("get", "/api/v1/events"): Operation("EventList", KUBE),
    ("get", "/api/v1/metrics/nodes"): Operation("NodeMetrics", KUBE),
    ("get", "/api/v1/metrics/pods"): Operation("PodMetrics", KUBE),
    ("get", "/api/v1/topology"): Operation("Topology", KUBE),
    ("get", "/api/v1/pods/{namespace}/{name}/logs"): Operation(None, KUBE),
    ("post", "/api/v1/pods/{namespace}/{name}/exec"): Operation("ExecResult", (*KUBE, 409)),
    ("get", "/api/v1/ai/status"): Operation("AiStatus"),
    ("get", "/api/v1/ai/config"): Operation("AiConfig"),
    ("put", "/api/v1/ai/config"): Operation("AiConfigUpdated", (409,), body="AiConfigUpdate"),
    ("get", "/api/v1/ai/usage"): Operation("AiUsage"),
    ("get", "/api/v1/ai/analytics/summary"): Operation("AnalyticsSummary"),
    ("get", "/api/v1/ai/insights"): Operation("InsightList", (502,)),
    ("post", "/api/v1/ai/insights/{id}/dismiss"): Operation(
        "InsightDismissed", (404, 409, 502), "DismissBody"
    ),
    # a resource that is not there is a 400 invalid_investigation_request (section 10)
    ("post", "/api/v1/ai/investigate"): Operation("InvestigationStarted", (502,)),
    ("get", "/api/v1/ai/investigations"): Operation("InvestigationList", (502,)),
    ("get", "/api/v1/ai/actions/pending"): Operation("PendingActionList", (502,)),
    ("post", "/api/v1/ai/actions/{id}/approve"): Operation("ActionApproved", (*KUBE, 409, 410)),
    ("post", "/api/v1/ai/actions/{id}/reject"): Operation("ActionRejected", (404, 409, 410)),
}

RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": ("integer", "Requests allowed per minute in this category"),
    "X-RateLimit-Remaining": ("integer", "Requests left in the current window"),
    "X-RateLimit-Reset": ("integer", "When the window resets (Unix seconds)"),
    "X-RateLimit-Reset-After": ("integer", "Seconds until the window resets"),
}
EVERY_ANSWER_HEADERS = {
    "X-Request-ID": ("string", "The request's trace id (the client's X-Request-ID when it sent a sane one)"),
    "X-API-Version": ("string", "The API version that answered"),
}
HEADERS: dict[str, dict[str, Any]] = {
    name: {"description": text, "schema": {"type": kind}}
    for name, (kind, text) in {
        **RATE_LIMIT_HEADERS,
        **EVERY_ANSWER_HEADERS,
        "Retry-After": ("integer", "Seconds to wait before retrying"),
    }.items()
}
# Middleware (api/middleware.py): an X-API-Version whose major version is not 1 is a 400.
API_VERSION_PARAMETER = {
    "name": "X-API-Version",
    "in": "header",
    "required": False,
    "description": "Requested API version (reference section 18); a major version other than 1 is a 400",
    "schema": {"type": "string", "pattern": r"^\s*v?0*1(\.\d+){0,2}\s*$", "examples": ["1.0.0"]},
}


def _codes_for(status: int) -> list[str]:
    return sorted(code for code, code_status in ERROR_STATUS.items() if code_status == status)


def error_response(status: int) -> dict[str, Any]:
    headers: dict[str, Any] = {
        name: {"$ref": f"#/components/headers/{name}"} for name in EVERY_ANSWER_HEADERS
    }
    if status == 429:
        headers.update({name: {"$ref": f"#/components/headers/{name}"} for name in RATE_LIMIT_HEADERS})
    if status in (429, 503):
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    return {
        "description": "Error; codes: " + ", ".join(f"`{code}`" for code in _codes_for(status)),
        "headers": headers,
        "content": {"application/json": {"schema": ref("ErrorBody")}},
    }


def describe(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(SCHEMAS)
    if any(op.success in ("AiConfig",) or op.body == "AiConfigUpdate" for op in _present(document)):
        schemas.update(_ai_config_schemas())
    components["headers"] = HEADERS
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            _complete(operation, OPERATIONS.get((method, path)))
            _name(operation, method, path)
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _without_null(parameter["schema"])
    ids = [op["operationId"] for item in document.get("paths", {}).values() for op in item.values()]
    if len(ids) != len(set(ids)):  # two routes of one name: give one an explicit operation_id
        raise RuntimeError(f"operationIds not unique: {sorted(ids)}")
    return document


def _name(operation: dict[str, Any], method: str, path: str) -> None:
    """The operationId is the route function's name (`approve_action`), not FastAPI's
    `approve_action_api_v1_ai_actions__id__approve_post`: a generated client names its functions and
    its parameter enums after it."""
    suffix = re.sub(r"\W", "_", path) + "_" + method
    operation_id = operation.get("operationId", "")
    if operation_id.endswith(suffix) and len(operation_id) > len(suffix):
        operation["operationId"] = operation_id[: -len(suffix)]


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter is absent or a string: FastAPI's `anyOf [..., {"type": "null"}]` for an optional
    parameter says it could be JSON null, which no query string or header can carry (a generated client
    then types it `X | None | Unset` and names its enums `..._type_0`). A lone branch left is inlined."""
    branches = schema.get("anyOf")
    if not branches or not any(b.get("type") == "null" for b in branches):
        return schema
    rest = [b for b in branches if b.get("type") != "null"]
    others = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(rest) == 1:
        return {**rest[0], **others}
    return {"anyOf": rest, **others}


def _present(document: dict[str, Any]) -> list[Operation]:
    return [
        OPERATIONS[(method, path)]
        for path, item in document.get("paths", {}).items()
        for method in item
        if (method, path) in OPERATIONS
    ]


def _complete(operation: dict[str, Any], described: Operation | None) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    if described is None:  # a route added without a line in OPERATIONS: the unit test names it
        return
    success = next(status for status in responses if status.startswith("2"))
    answer = responses[success]
    answer["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in EVERY_ANSWER_HEADERS}
    if not described.public:
        answer["headers"].update(
            {name: {"$ref": f"#/components/headers/{name}"} for name in RATE_LIMIT_HEADERS}
        )
    if described.success is not None:
        answer["content"] = {"application/json": {"schema": ref(described.success)}}
    else:
        answer["content"] = {
            "text/plain": {"schema": {"type": "string"}},
            "text/event-stream": {
                "schema": {"type": "string", "description": "`data:` lines, one per log line"}
            },
        }
    statuses = (400, 500) if described.public else (*COMMON, *described.errors)
    for status in sorted(set(statuses)):
        responses[str(status)] = error_response(status)
    if described.public:  # /health: degraded is a 503 with the health body
        responses["503"] = {
            "description": "A critical dependency is unhealthy (`status: degraded`)",
            "headers": {
                "Retry-After": {"$ref": "#/components/headers/Retry-After"},
                **{name: {"$ref": f"#/components/headers/{name}"} for name in EVERY_ANSWER_HEADERS},
            },
            "content": {"application/json": {"schema": ref("Health")}},
        }
    if described.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(described.body)}},
        }
    parameters = operation.setdefault("parameters", [])
    if not any(p.get("name") == "X-API-Version" for p in parameters):
        parameters.append(API_VERSION_PARAMETER)
