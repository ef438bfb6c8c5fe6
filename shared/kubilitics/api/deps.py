"""FastAPI dependencies: who is calling, what they may do, which cluster, and their rate limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.api.middleware import rate_limit_error
from kubilitics.auth.tokens import Principal
from kubilitics.container import Container, get_container
from kubilitics.errors import Forbidden, KubiliticsError, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="JWT bearer token (`kubilitics token create`)")

# Counter updates for these categories run while the route reads from Kubernetes (see middleware).
OVERLAPPING_CATEGORIES = frozenset({"read", "standard", "topology"})


def container() -> Container:
    return get_container()


Services = Annotated[Container, Depends(container)]


def authenticate(
    request: Request,
    services: Services,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    principal = services.token_codec.decode(credentials.credentials, now=services.clock.now())
    if services.revocations.is_revoked(principal.jti):
        raise KubiliticsError("The bearer token has been revoked", code="token_revoked")
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def require(scope: str, category: str | None = None) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller holds `scope`; one request is counted against `category`."""

    async def dependency(request: Request, principal: CurrentPrincipal, services: Services) -> Principal:
        if not principal.has_scope(scope):
            raise KubiliticsError(
                f"This operation needs the {scope!r} scope",
                code="insufficient_scope",
                details={"required_scope": scope, "granted_scopes": sorted(principal.scopes)},
            )
        if category is not None:
            pending = asyncio.ensure_future(run_in_threadpool(services.rate_limiter.hit, principal, category))
            if category in OVERLAPPING_CATEGORIES:
                request.scope["state"]["rate_limit_pending"] = pending
            else:
                decision = await pending
                request.scope["state"]["rate_limit"] = decision
                if not decision.allowed:
                    raise rate_limit_error(decision)
        return principal

    return dependency


def kube_context(
    principal: CurrentPrincipal,
    services: Services,
    x_kubeconfig_context: Annotated[str | None, Header(max_length=253)] = None,
) -> ContextConfig:
    """The kubeconfig context for this request; a token bound to a cluster reaches only that one."""
    requested = x_kubeconfig_context or principal.cluster_id
    if principal.cluster_id and requested != principal.cluster_id:
        raise Forbidden(
            f"This token is limited to cluster {principal.cluster_id!r}",
            details={"token_cluster_id": principal.cluster_id, "requested_context": requested},
        )
    return services.kubeconfig.get().resolve(requested)


KubeContext = Annotated[ContextConfig, Depends(kube_context)]
