"""Domain errors and the one registry of error codes (reference section 16).

Services and adapters raise these; only `kubilitics.api` turns them into HTTP. The class names of the
subclasses are also the `ErrorEquals` names used by the investigation state machine.
"""

from __future__ import annotations

from typing import Any

# code -> HTTP status. Section 16 of the reference, plus the codes its endpoint sections use.
ERROR_STATUS: dict[str, int] = {
    # authentication & authorization
    "unauthorized": 401,
    "token_expired": 401,
    "invalid_context": 401,
    "token_revoked": 401,
    "forbidden": 403,
    "insufficient_scope": 403,
    # resources
    "not_found": 404,
    "already_exists": 409,
    "resource_conflict": 409,
    "invalid_resource_kind": 400,
    "resource_in_use": 409,
    "resource_terminating": 409,
    # validation
    "validation_failed": 400,
    "invalid_parameter": 400,
    "missing_required_field": 400,
    "invalid_label_selector": 400,
    "invalid_field_selector": 400,
    "method_not_allowed": 405,
    # rate limits
    "rate_limit_exceeded": 429,
    "quota_exceeded": 429,
    "too_many_requests": 429,
    # server
    "internal_server_error": 500,
    "service_unavailable": 503,
    "database_error": 500,
    "kubernetes_api_error": 502,
    "ai_service_unavailable": 503,
    "version_query_failed": 500,
    # AI
    "investigation_failed": 500,
    "invalid_investigation_request": 400,
    "llm_api_error": 502,
    "token_budget_exhausted": 429,
    "vector_store_error": 500,
    "action_expired": 410,
    "exec_failed": 500,
}


def error_body(
    code: str, message: str, details: dict[str, Any] | None, trace_id: str | None
) -> dict[str, Any]:
    """The standard error body of reference section 16 (HTTP responses and WebSocket ERROR messages)."""
    from kubilitics.clock import rfc3339

    return {
        "error": code,
        "message": message,
        "details": details or {},
        "timestamp": rfc3339(),
        "trace_id": trace_id,
    }


class KubiliticsError(Exception):
    """An error with a registered code. `extra` fields are added at the top level of the body."""

    code = "internal_server_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if self.code not in ERROR_STATUS:
            raise ValueError(f"unregistered error code {self.code!r}")
        self.message = message
        self.details = details or {}
        self.headers = headers or {}
        self.extra = extra or {}

    @property
    def status(self) -> int:
        return ERROR_STATUS[self.code]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class Unauthorized(KubiliticsError):
    code = "unauthorized"


class Forbidden(KubiliticsError):
    code = "forbidden"


class NotFound(KubiliticsError):
    code = "not_found"


class ValidationFailed(KubiliticsError):
    code = "validation_failed"


class InvalidParameter(KubiliticsError):
    code = "invalid_parameter"


class RateLimitExceeded(KubiliticsError):
    code = "rate_limit_exceeded"


class DatabaseError(KubiliticsError):
    code = "database_error"


class KubernetesApiError(KubiliticsError):
    code = "kubernetes_api_error"


class LlmApiError(KubiliticsError):
    code = "llm_api_error"


class TokenBudgetExhausted(KubiliticsError):
    code = "token_budget_exhausted"
