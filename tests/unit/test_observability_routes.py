"""The events, metrics and topology routes hand their query parameters to the services as given (no cluster:
the services are recording fakes; tokens and rate limits run against moto)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubilitics.adapters.kubeconfig import ContextConfig

CONTEXT = ContextConfig(name="ctx", cluster_name="c", server="https://kube.test:6443")


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
            self.calls.append((method, args, kwargs))
            return {"answered_by": method}

        return call


class _Clock:
    def now(self) -> float:
        return 1_000.0


@pytest.fixture()
def api(aws, mint):
    from kubilitics.api.app import create_app
    from kubilitics.api.deps import kube_context
    from kubilitics.api.routers import observability
    from kubilitics.container import get_container

    services = get_container()
    recorder = _Recorder()
    for name in ("events", "metrics", "topology"):
        services.__dict__[name] = recorder
    services.clock = _Clock()
    app = create_app(observability.router)
    app.dependency_overrides[kube_context] = lambda: CONTEXT
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {mint(scopes='read')}"
    return client, recorder


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        (
            "/api/v1/events",
            "list_events",
            {
                "namespace": None,
                "resource_kind": None,
                "resource_name": None,
                "event_type": None,
                "since_time": None,
                "until_time": None,
                "limit": 100,
                "sort_order": "desc",
            },
        ),
        (
            "/api/v1/events?namespace=shop&resource_kind=Pod&resource_name=web-1&event_type=Warning"
            "&since_time=2026-01-01T00:00:00Z&until_time=2026-01-02T00:00:00Z&limit=5&sort_order=asc",
            "list_events",
            {
                "namespace": "shop",
                "resource_kind": "Pod",
                "resource_name": "web-1",
                "event_type": "Warning",
                "since_time": "2026-01-01T00:00:00Z",
                "until_time": "2026-01-02T00:00:00Z",
                "limit": 5,
                "sort_order": "asc",
            },
        ),
        ("/api/v1/metrics/nodes", "nodes", {"node_name": None, "sort_by": "name"}),
        (
            "/api/v1/metrics/nodes?node_name=n1&sort_by=network",
            "nodes",
            {"node_name": "n1", "sort_by": "network"},
        ),
        (
            "/api/v1/metrics/pods",
            "pods",
            {"namespace": None, "pod_name": None, "sort_by": "name", "limit": 100},
        ),
        (
            "/api/v1/metrics/pods?namespace=shop&pod_name=web-1&sort_by=cpu_usage&limit=7",
            "pods",
            {"namespace": "shop", "pod_name": "web-1", "sort_by": "cpu_usage", "limit": 7},
        ),
        (
            "/api/v1/topology",
            "topology",
            {"depth": 3, "namespace": None, "include_metrics": True, "include_events": False},
        ),
        (
            "/api/v1/topology?depth=5&namespace=shop&include_metrics=false&include_events=true",
            "topology",
            {"depth": 5, "namespace": "shop", "include_metrics": False, "include_events": True},
        ),
    ],
)
def test_query_parameters_reach_the_service(api, path, method, expected):
    client, recorder = api
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.json() == {"answered_by": method}
    assert recorder.calls == [(method, (CONTEXT,), {"now": 1_000.0, **expected})]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/events?limit=0",
        "/api/v1/events?limit=1001",
        "/api/v1/events?sort_order=up",
        "/api/v1/events?resource_kind=",
        f"/api/v1/events?resource_name={'a' * 254}",
        "/api/v1/metrics/nodes?sort_by=disk",
        "/api/v1/metrics/nodes?node_name=",
        "/api/v1/metrics/pods?sort_by=network",
        "/api/v1/metrics/pods?limit=0",
        f"/api/v1/metrics/pods?namespace={'a' * 254}",
        "/api/v1/topology?depth=6",
        "/api/v1/topology?depth=0",
    ],
)
def test_invalid_query_parameters_are_refused_before_the_service(api, path):
    client, recorder = api
    response = client.get(path)
    assert response.status_code == 400, response.text
    assert recorder.calls == []
