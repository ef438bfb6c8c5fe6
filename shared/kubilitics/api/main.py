"""Every router of the API, grouped as the Lambda functions group them."""

from __future__ import annotations

from fastapi import APIRouter

from kubilitics.api.routers import (
    ai_actions,
    ai_admin,
    ai_chat,
    ai_insights,
    ai_investigations,
    cluster,
    observability,
    pods,
    realtime,
    resources,
    system,
)


def cluster_routers() -> list[APIRouter]:
    """Health, version and the cluster-management groups (served on port 8080)."""
    return [
        system.router,
        resources.router,
        cluster.router,
        observability.router,
        pods.router,
        realtime.router,
    ]


def ai_routers() -> list[APIRouter]:
    """The AI groups (served on 8080 and, like the reference's AI service, on 8081)."""
    return [ai_admin.router, ai_insights.router, ai_chat.router, ai_investigations.router, ai_actions.router]
