"""Who is calling and what they may reach: one implementation for HTTP routes and WebSocket connections.

FastAPI dependencies (api/deps.py), the WebSocket Lambda and the local WebSocket router all call these,
so a token is judged the same way whichever door it comes through.
"""

from __future__ import annotations

from typing import Any, Protocol

from kubilitics.auth.tokens import Principal
from kubilitics.errors import Forbidden, KubiliticsError, Unauthorized


class AuthServices(Protocol):
    """What authentication needs (the container provides it)."""

    @property
    def token_codec(self) -> Any: ...

    @property
    def revocations(self) -> Any: ...

    @property
    def clock(self) -> Any: ...

    @property
    def kubeconfig(self) -> Any: ...

    def caller_context(self, principal: Principal, name: str | None) -> Any: ...


def authenticate_token(services: AuthServices, token: str | None) -> Principal:
    """The principal of a bearer token; 401 unauthorized / token_expired / token_revoked otherwise."""
    principal = decode_bearer(services, token)
    if services.revocations.is_revoked(principal):
        raise revoked_error()
    return principal


def decode_bearer(services: AuthServices, token: str | None) -> Principal:
    """The token's principal if it is well signed and current (revocation is not checked here)."""
    if not token:
        raise Unauthorized("Missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    principal: Principal = services.token_codec.decode(token, now=services.clock.now())
    return principal


def revoked_error() -> KubiliticsError:
    return KubiliticsError("The bearer token has been revoked", code="token_revoked")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value (None when absent or another scheme)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def require_scope(principal: Principal, scope: str) -> Principal:
    """403 insufficient_scope unless the principal holds `scope` (admin implies every scope)."""
    if not principal.has_scope(scope):
        raise KubiliticsError(
            f"This operation needs the {scope!r} scope",
            code="insufficient_scope",
            details={"required_scope": scope, "granted_scopes": sorted(principal.scopes)},
        )
    return principal


def resolve_context(services: AuthServices, principal: Principal, requested: str | None) -> Any:
    """The kubeconfig context to use, as this caller reaches it (impersonating them unless the context
    is in service mode); a token bound to a cluster reaches only that one (403 otherwise)."""
    wanted = requested or principal.cluster_id
    if principal.cluster_id and wanted != principal.cluster_id:
        raise Forbidden(
            f"This token is limited to cluster {principal.cluster_id!r}",
            details={"token_cluster_id": principal.cluster_id, "requested_context": wanted},
        )
    try:
        return services.caller_context(principal, wanted)
    except KubiliticsError as exc:
        if exc.code != "invalid_context" or not principal.cluster_id:
            raise
        # A token bound to a cluster learns no other context's name: the same error without the
        # list of available contexts (GET /api/v1/contexts shows such a token only its own).
        raise KubiliticsError(
            exc.message, code=exc.code, details={"context": exc.details.get("context")}
        ) from None
