"""What the gateway's create, replace and patch send to the API server (a recording HTTP pool, no cluster)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubilitics.adapters.kube_rest import KubeRestClients
from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.adapters.kubernetes import BUILTIN_TYPES, KubernetesGateway

CONFIGMAPS = next(t for t in BUILTIN_TYPES if t.kind == "ConfigMap")
BODY = {"metadata": {"name": "cm"}, "data": {"k": "v"}}


class _Response:
    status = 200
    data = b'{"kind": "ConfigMap"}'


class _RecordingPool:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str, url: str, *, body: bytes, headers: dict[str, str], **_: Any) -> _Response:
        self.calls.append(
            {"method": method, "url": url, "body": body, "content_type": headers["Content-Type"]}
        )
        return _Response()


@pytest.fixture()
def sent() -> tuple[KubernetesGateway, ContextConfig, _RecordingPool]:
    context = ContextConfig(
        name="ctx", cluster_name="c", server="https://kube.test:6443/", user={"token": "t"}
    )
    clients = KubeRestClients()
    pool = _RecordingPool()
    clients.for_context(context)._pool = pool
    return KubernetesGateway(clients, timeout=5.0), context, pool


BASE = "https://kube.test:6443/api/v1/namespaces/shop/configmaps"


@pytest.mark.parametrize(
    ("write", "method", "url"),
    [
        (lambda g, c, dry_run: g.create(c, CONFIGMAPS, "shop", BODY, dry_run), "POST", BASE),
        (
            lambda g, c, dry_run: g.replace(c, CONFIGMAPS, "shop", "cm", BODY, dry_run=dry_run),
            "PUT",
            f"{BASE}/cm",
        ),
    ],
    ids=["create", "replace"],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_create_and_replace(sent, write, method, url, dry_run):
    gateway, context, pool = sent
    assert write(gateway, context, dry_run) == {"kind": "ConfigMap"}
    query = "dryRun=All&fieldValidation=Strict" if dry_run else "fieldValidation=Strict"
    assert pool.calls == [
        {
            "method": method,
            "url": f"{url}?{query}",
            "body": json.dumps(BODY).encode(),
            "content_type": "application/json",
        }
    ]


@pytest.mark.parametrize(
    ("patch_type", "content_type"),
    [
        ("merge", "application/merge-patch+json"),
        ("strategic", "application/strategic-merge-patch+json"),
        ("json", "application/json-patch+json"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_patch(sent, patch_type, content_type, dry_run):
    gateway, context, pool = sent
    body = [{"op": "add", "path": "/data/x", "value": "1"}] if patch_type == "json" else {"data": {"x": "1"}}
    assert gateway.patch(context, CONFIGMAPS, "shop", "cm", body, patch_type, dry_run=dry_run) == {
        "kind": "ConfigMap"
    }
    url = f"{BASE}/cm?dryRun=All" if dry_run else f"{BASE}/cm?"  # an empty query, as today
    assert pool.calls == [
        {"method": "PATCH", "url": url, "body": json.dumps(body).encode(), "content_type": content_type}
    ]


@pytest.mark.parametrize("dry_run", [False, True])
def test_delete_with_a_uid_deletes_only_that_object(sent, dry_run):
    """DeleteOptions.preconditions.uid: an object recreated under the same name fails it (409) and stays."""
    gateway, context, pool = sent
    gateway.delete(context, CONFIGMAPS, "shop", "cm", grace_period_seconds=0, dry_run=dry_run, uid="u-1")
    gateway.delete(context, CONFIGMAPS, "shop", "cm")
    with_uid, without = (json.loads(call["body"]) for call in pool.calls)
    assert [call["method"] for call in pool.calls] == ["DELETE", "DELETE"]
    assert with_uid == {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "propagationPolicy": "Background",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "u-1"},
        **({"dryRun": ["All"]} if dry_run else {}),
    }
    assert "preconditions" not in without
