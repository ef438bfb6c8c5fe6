"""FastAPI dependencies: who is calling, what they may do, which cluster, and their rate limit."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.api.blocking import run_blocking
from kubilitics.api.middleware import rate_limit_error
from kubilitics.auth.access import decode_bearer, require_scope, resolve_context, revoked_error
from kubilitics.auth.tokens import Principal
from kubilitics.container import Container, get_container
from kubilitics.errors import KubiliticsError

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="JWT bearer token (`kubilitics token create`)")

# Reads: their counter update may run while the route reads from Kubernetes (see middleware), and a
# counter store that fails lets them through. Routes that fan out (`fans_out=True`) wait for the
# verdict instead: a refused request must not cost the cluster a dozen calls first.
OVERLAPPING_CATEGORIES = frozenset({"read", "standard", "topology"})
# Their own threads (made on demand), as many as the local server may have requests in flight.
_counter_updates = ThreadPoolExecutor(max_workers=32, thread_name_prefix="rate-limit")


async def container() -> Container:
    # async: no I/O here, so no thread hop (sync dependencies run in the thread pool)
    return get_container()


Services = Annotated[Container, Depends(container)]


async def authenticate(
    request: Request,
    services: Services,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # As auth.access.authenticate_token, without blocking the loop: the store is read only when the
    # revocation cache has no fresh answer for this token.
    principal = decode_bearer(services, credentials.credentials if credentials else None)
    revoked = services.revocations.cached(principal)
    if revoked is None:
        revoked = await run_blocking(services.revocations.is_revoked, principal)
    if revoked:
        raise revoked_error()
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def require(
    scope: str | None, category: str | None = None, *, fans_out: bool = False
) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller holds `scope` (None: any valid token); counts one request in `category`.

    `fans_out`: the route makes many backend calls (topology, every namespace's pod count, ...), so
    even a read waits for the limiter's verdict before it starts.
    """
    overlaps = category in OVERLAPPING_CATEGORIES and not fans_out

    async def dependency(request: Request, principal: CurrentPrincipal, services: Services) -> Principal:
        if scope is not None:
            require_scope(principal, scope)
        if category is None:
            return principal
        state = request.scope["state"]
        limiter = services.rate_limiter
        refused = limiter.denied(principal, category)
        if refused is not None:  # this window was refused already: no counter, no route
            state["rate_limit"] = refused
            raise rate_limit_error(refused)
        # Submitted to a thread now, not when the loop next gets control: a route may block it.
        hit = functools.partial(limiter.hit, principal, category, _operation(request))
        pending = asyncio.get_running_loop().run_in_executor(_counter_updates, hit)
        if overlaps:
            state["rate_limit_pending"] = pending
            return principal
        try:
            decision = await pending
        except KubiliticsError as exc:
            if category not in OVERLAPPING_CATEGORIES:
                raise
            # As the middleware does for overlapped reads: the limiter's store failing must not
            # take reads down with it.
            log.warning("rate limiter unavailable, request allowed: %r", exc)
            return principal
        state["rate_limit"] = decision
        if not decision.allowed:
            raise rate_limit_error(decision)
        return principal

    # What the route waits for, for tests and readers: (category, overlaps the route or not).
    dependency.rate_limit = (category, overlaps)  # type: ignore[attr-defined]
    return dependency


def _operation(request: Request) -> str:
    """`GET /api/v1/ai/insights`: the route template, so engagement analytics groups by endpoint."""
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


async def kube_context(
    principal: CurrentPrincipal,
    services: Services,
    x_kubeconfig_context: Annotated[str | None, Header(max_length=253)] = None,
) -> ContextConfig:
    """The kubeconfig context for this request; a token bound to a cluster reaches only that one."""
    if services.kubeconfig.loaded:  # read once per process (a file, or Secrets Manager)
        context: ContextConfig = resolve_context(services, principal, x_kubeconfig_context)
    else:
        context = await run_blocking(resolve_context, services, principal, x_kubeconfig_context)
    return context


KubeContext = Annotated[ContextConfig, Depends(kube_context)]
