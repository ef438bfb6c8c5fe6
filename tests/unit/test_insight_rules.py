"""Insight rules on hand-built snapshots (no cluster): ids, image pinning, RBAC, cost arithmetic."""

from __future__ import annotations

from typing import Any

from kubilitics.ai.insights import ScanPolicy, Snapshot, UnitPrices, cost, insight_id, security
from kubilitics.ai.insights.security import _unpinned

NOW = 1_800_000_000.0


def pod(name: str, ns: str = "team", **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "n1", **spec},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_ids_are_stable_and_scoped():
    a = insight_id("ctx", "security", "unpinned_image", "namespace/team")
    assert a == insight_id("ctx", "security", "unpinned_image", "namespace/team")
    assert a.startswith("ins-") and len(a) == 20
    assert a != insight_id("other", "security", "unpinned_image", "namespace/team")
    assert a != insight_id("ctx", "security", "unpinned_image", "namespace/other")


def test_image_pinning():
    assert _unpinned("nginx") and _unpinned("nginx:latest") and _unpinned("registry:5000/app")
    assert not _unpinned("nginx:1.27") and not _unpinned("registry:5000/app:1.0")
    assert not _unpinned("nginx@sha256:" + "a" * 64)


def test_wildcard_cluster_roles_skip_kubernetes_own():
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    bootstrap = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    roles = [
        {"metadata": {"name": "cluster-admin", "labels": bootstrap}, "rules": everything},
        {"metadata": {"name": "system:controller:x"}, "rules": everything},
        {
            "metadata": {"name": "too-broad"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}],
        },
    ]
    snap = Snapshot("ctx", NOW, cluster_roles=roles)
    [detection] = [d for d in security.detect(snap, ScanPolicy()) if d.rule == "wildcard_rbac"]
    assert detection.scope == "cluster" and detection.resources == ["ClusterRole/too-broad"]
    assert detection.severity == "warning"  # verbs * on named resources; * on * would be critical


def test_credentials_are_reported_by_name_only():
    env = [
        {"name": "DB_PASSWORD", "value": "s3cret"},
        {"name": "PASSWORD_FILE", "value": "/run/secrets/pw"},  # a path, not a credential
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
    ]
    snap = Snapshot("ctx", NOW, pods=[pod("p", containers=[{"name": "c", "image": "a:1", "env": env}])])
    found = {d.rule: d for d in security.detect(snap, ScanPolicy())}
    assert found["plaintext_secret_env"].details == [
        {"resource": "team/Pod/p container c", "detail": "env DB_PASSWORD holds a literal value"}
    ]
    assert found["secret_in_env"].details[0]["detail"] == "env TOKEN"
    assert "s3cret" not in repr(found)


def test_overprovisioned_savings_use_the_unit_prices():
    container = {"name": "c", "image": "a:1", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}
    snap = Snapshot(
        "ctx",
        NOW,
        pods=[pod("p1", containers=[container]), pod("p2", containers=[container])],
        pod_metrics={("team", "p1"): {"c": (0.1, 2**30)}, ("team", "p2"): {"c": (0.1, 2**30)}},
        scraped_nodes=frozenset({"n1"}),
    )
    policy = ScanPolicy(prices=UnitPrices(cpu_core_month=10.0, memory_gib_month=2.0, storage_gib_month=0.1))
    [detection] = [d for d in cost.detect(snap, policy) if d.rule == "overprovisioned_requests"]
    # per pod: cpu 2 -> 0.15 (0.1 x 1.5): 1.85 x $10; memory 4Gi -> 1.5Gi: 2.5 x $2; two pods
    assert detection.recommendation["monthly_savings_usd"] == round(2 * (1.85 * 10 + 2.5 * 2), 2) == 47.0
    assert detection.recommendation["potential_savings_percent"] == round(47.0 * 100 / (2 * (20 + 8)))
