"""The insight scanner on the test cluster: workloads built to trigger each rule, a clean namespace
that must produce none, rescans that update instead of duplicating, dismissals that survive rescans,
and the scanner Lambda driven with events/insight_scanner/scheduled.json (DynamoDB is moto).

The node simulator reports usage from the image catalog (scripts/testbed/images.yaml): nginx uses
1m CPU and 9Mi, polinux/stress 1000m CPU and what --vm-bytes says, busybox running `sleep` 0m.
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.pods_testbed import create_namespace, delete_namespace, wait_until
from tests.support import EVENTS, LambdaContext

pytestmark = pytest.mark.cluster

SLEEP = ["sh", "-c", "sleep infinity"]


def container(name: str, image: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **fields}


def sleeping(**fields: Any) -> dict[str, Any]:
    """Container `app`, busybox running `sleep`: 0m CPU on the simulated node."""
    return container("app", "busybox:1.36", command=SLEEP, **fields)


def deployment(name: str, *containers: dict[str, Any], **pod_spec: Any) -> dict[str, Any]:
    """A Deployment whose pods are labelled app=<name>; `pod_spec`: the rest of the pods' spec."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {**pod_spec, "containers": list(containers)},
            },
        },
    }


def manifests(*objects: dict[str, Any]) -> str:
    """The objects as YAML documents, for `kubectl apply -f -`."""
    return yaml.safe_dump_all(objects, sort_keys=False)


TRIGGERS = manifests(
    deployment("priv", sleeping(securityContext={"privileged": True})),
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rooted"},
        "spec": {"securityContext": {"runAsUser": 0}, "containers": [sleeping()]},
    },
    deployment(
        "hosty",
        sleeping(volumeMounts=[{"name": "logs", "mountPath": "/host-logs", "readOnly": True}]),
        hostNetwork=True,
        volumes=[{"name": "logs", "hostPath": {"path": "/var/log"}}],
    ),
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "api-credentials"},
        "stringData": {"token": "not-a-real-token"},
    },
    deployment(
        "leaky",
        container(
            "app",
            "nginx",
            env=[
                {"name": "DB_PASSWORD", "value": "hunter2-do-not-show"},
                {
                    "name": "API_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "api-credentials", "key": "token"}},
                },
                {"name": "LOG_LEVEL", "value": "debug"},
            ],
        ),
    ),
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "everything"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    },
    deployment(
        "hog",
        container(
            "stress",
            "polinux/stress:1.0.4",
            args=["--vm", "1", "--vm-bytes", "90M", "--vm-hang", "0"],
            resources={
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"cpu": "1100m", "memory": "100Mi"},
            },
        ),
    ),
    deployment(
        "crasher",
        container("app", "busybox:1.36", command=["sh", "-c", "echo starting; echo fatal: boom; exit 1"]),
    ),
    deployment(
        "oversized",
        container("web", "nginx:1.27", resources={"requests": {"cpu": "500m", "memory": "512Mi"}}),
    ),
    deployment("sleeper", sleeping(resources={"requests": {"cpu": "200m", "memory": "128Mi"}})),
)


def volume_and_claim(pv: str, namespace: str) -> str:
    """A hostPath PersistentVolume `pv` and the claim `orphan` bound to it, which no pod mounts."""
    return manifests(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": pv,
                "hostPath": {"path": f"/tmp/{pv}"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "orphan", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": pv,
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    )


DEFAULT_DENY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "default-deny"},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
}

# Everything the rules look for, done right.
CLEAN = manifests(
    deployment(
        "cache",
        container(
            "redis",
            "redis:7.2",
            securityContext={"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            resources={
                "requests": {"cpu": "10m", "memory": "16Mi"},
                "limits": {"cpu": "200m", "memory": "128Mi"},
            },
        ),
        automountServiceAccountToken=False,
        securityContext={"runAsNonRoot": True, "runAsUser": 999},
    ),
    DEFAULT_DENY,
)


class Cluster:
    def __init__(self, k8s_cluster: Any, triggers: str, clean: str, pv: str):
        self.k = k8s_cluster
        self.triggers, self.clean, self.pv = triggers, clean, pv

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        return json.loads(self.k.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]

    def metrics(self, namespace: str) -> dict[str, Any]:
        raw = self.k.kubectl(
            "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods", check=False
        )
        if raw.returncode != 0:
            return {}
        return {i["metadata"]["name"]: i for i in json.loads(raw.stdout).get("items", [])}


@pytest.fixture(scope="module")
def cluster(k8s_cluster) -> Iterator[Cluster]:
    triggers = create_namespace(k8s_cluster, "ins-trig")
    clean = create_namespace(k8s_cluster, "ins-clean")
    pv = f"ins-pv-{uuid.uuid4().hex[:6]}"
    started = time.time()
    k8s_cluster.kubectl("apply", "-n", triggers, "-f", "-", input=TRIGGERS)
    k8s_cluster.kubectl("apply", "-f", "-", input=volume_and_claim(pv, triggers))
    k8s_cluster.kubectl("apply", "-n", clean, "-f", "-", input=CLEAN)
    c = Cluster(k8s_cluster, triggers, clean, pv)

    def ready() -> bool:
        pods = {
            (p["metadata"].get("labels") or {}).get("app", p["metadata"]["name"]): p for p in c.pods(triggers)
        }
        metrics = c.metrics(triggers)
        crasher = pods.get("crasher", {}).get("status", {}).get("containerStatuses") or [{}]
        hog = pods.get("hog")
        oversized = pods.get("oversized")
        return bool(
            crasher[0].get("restartCount", 0) >= 3
            and hog
            and oversized
            and hog["metadata"]["name"] in metrics
            and oversized["metadata"]["name"] in metrics
            and any(
                c2["usage"]["memory"] not in ("0", "0Ki")
                for c2 in metrics[hog["metadata"]["name"]]["containers"]
            )
        )

    def clean_ready() -> bool:
        pods = c.pods(clean)
        return bool(pods) and all(p["metadata"]["name"] in c.metrics(clean) for p in pods)

    try:
        wait_until(ready, timeout=240, what="restarts, metrics of the trigger workloads")
        wait_until(clean_ready, timeout=120, what="metrics of the clean workload")
        # Pods missing from the metrics count as idle only once metrics-server had time to see them.
        wait_until(lambda: all(c.pods(triggers)) and time.time() - started > 70, timeout=90, what="70 s")
        wait_until(
            lambda: (
                json.loads(k8s_cluster.kubectl("get", "pvc", "orphan", "-n", triggers, "-o", "json").stdout)[
                    "status"
                ].get("phase")
                == "Bound"
            ),
            timeout=60,
            what="PVC orphan bound",
        )
        yield c
    finally:
        delete_namespace(k8s_cluster, triggers)
        delete_namespace(k8s_cluster, clean)
        k8s_cluster.kubectl("delete", "pv", pv, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture()
def services(aws, settings_env, k8s_cluster):
    from kubilitics import container

    settings_env.setenv("KUBILITICS_KUBECONFIG", k8s_cluster.kubeconfig)
    settings_env.setenv("KUBILITICS_INSIGHT_MIN_AGE_SECONDS", "0")
    container.reset()
    return container.get_container()


def scan(services, cluster: Cluster) -> dict[str, Any]:
    context = services.insight_contexts()[0]
    return services.insight_scanner.scan(context, [cluster.triggers, cluster.clean])


def listed(services, **filters: Any) -> list[dict[str, Any]]:
    context = services.insight_contexts()[0].name
    return services.insights.list(context, limit=1000, **filters)["insights"]


def by_rule(insights: list[dict[str, Any]], namespace: str) -> dict[str, dict[str, Any]]:
    return {i["rule"]: i for i in insights if i["namespace"] == namespace}


def test_each_rule_fires_on_its_workload_and_the_clean_namespace_has_none(services, cluster):
    report = scan(services, cluster)
    assert report["created"] == report["detected"] > 0
    insights = listed(services)
    mine = by_rule(insights, cluster.triggers)
    ns = cluster.triggers

    security = {r for r, i in mine.items() if i["category"] == "security"}
    assert security == {
        "privileged_container",
        "root_container",
        "host_path_volume",
        "host_network",
        "no_security_context",
        "default_service_account_token",
        "wildcard_rbac",
        "plaintext_secret_env",
        "secret_in_env",
        "unpinned_image",
        "namespace_without_network_policy",
    }
    assert mine["privileged_container"]["severity"] == "critical"
    assert mine["privileged_container"]["affected_resources"]["examples"] == [
        f"{ns}/Deployment/priv container app"
    ]
    assert {
        "resource": f"{ns}/Pod/rooted container app",
        "detail": "runAsUser: 0",
    } in mine["root_container"]["affected_resources"]["details"]
    assert mine["host_path_volume"]["affected_resources"]["details"] == [
        {"resource": f"{ns}/Deployment/hosty", "detail": "volume logs: hostPath /var/log"}
    ]
    assert mine["host_network"]["affected_resources"]["examples"] == [f"{ns}/Deployment/hosty"]
    assert mine["wildcard_rbac"]["severity"] == "critical"
    assert mine["wildcard_rbac"]["affected_resources"]["examples"] == [f"{ns}/Role/everything"]
    # Secrets by name only: the literal value never appears in an insight.
    plaintext = mine["plaintext_secret_env"]
    assert plaintext["affected_resources"]["details"] == [
        {
            "resource": f"{ns}/Deployment/leaky container app",
            "detail": "env DB_PASSWORD holds a literal value",
        }
    ]
    assert "hunter2" not in json.dumps(insights)
    assert mine["secret_in_env"]["affected_resources"]["details"][0]["detail"] == "env API_TOKEN"
    assert mine["unpinned_image"]["affected_resources"]["details"] == [
        {"resource": f"{ns}/Deployment/leaky container app", "detail": "image nginx"}
    ]
    assert mine["namespace_without_network_policy"]["affected_resources"]["examples"] == [f"Namespace/{ns}"]

    cpu, memory = mine["cpu_near_limit"], mine["memory_near_limit"]
    assert cpu["category"] == memory["category"] == "performance"
    assert cpu["affected_resources"]["examples"] == [f"{ns}/Deployment/hog container stress"]
    assert cpu["affected_resources"]["details"][0]["detail"].endswith("cpu 1.000 of limit 1.1 cores (91%)")
    # stress keeps its 90M (MiB) allocated, plus the 1Mi its own process takes
    assert memory["affected_resources"]["details"][0]["detail"].endswith("memory 91Mi of limit 100Mi (91%)")
    restarts = mine["frequent_restarts"]
    assert restarts["affected_resources"]["examples"] == [f"{ns}/Deployment/crasher container app"]

    over = mine["overprovisioned_requests"]
    assert over["affected_resources"]["examples"] == [f"{ns}/Deployment/oversized container web"]
    # 500m -> 10m (the floor) at $29.55/core-month, 512Mi -> 16Mi at $3.24/GiB-month
    assert (
        over["recommendation"]["monthly_savings_usd"] == round(0.49 * 29.55 + 496 / 1024 * 3.24, 2) == 16.05
    )
    if "idle_workload" not in mine:  # say why (metrics-server timing)
        snap = services.insight_scanner.snapshot(services.insight_contexts()[0], frozenset({ns}))
        ages = [(p["metadata"]["name"], snap.age(p)) for p in snap.pods]
        pytest.fail(f"no idle insight: nodes {snap.scraped_nodes}, metrics {snap.pod_metrics}, ages {ages}")
    idle = mine["idle_workload"]
    assert f"{ns}/Deployment/sleeper" in idle["affected_resources"]["examples"]
    assert f"{ns}/Deployment/oversized" not in idle["affected_resources"]["examples"]  # 1m CPU: not idle
    pvc = mine["unattached_pvc"]
    assert pvc["affected_resources"]["details"] == [
        {"resource": f"{ns}/PersistentVolumeClaim/orphan", "detail": "Bound, 10Gi"}
    ]
    assert pvc["recommendation"]["monthly_savings_usd"] == 0.8  # 10 GiB at $0.08

    health = {i["rule"]: i for i in insights if i["category"] == "health" and i["namespace"] == ns}
    assert health["app_crash"]["affected_resources"]["examples"][0] == f"{ns}/Deployment/crasher"
    assert health["app_crash"]["root_cause"]["category"] == "app_crash"
    for insight in mine.values():
        assert insight["insight_id"].startswith("ins-")
        assert insight["severity"] in ("critical", "warning", "info")
        assert set(insight["recommendation"]) >= {"action", "steps", "estimated_effort_hours", "risk_level"}
        assert insight["dismissed_at"] is None and insight["status"] == "active"

    clean = [i for i in insights if i["namespace"] == cluster.clean or cluster.clean in json.dumps(i)]
    assert clean == []


def test_rescans_update_in_place_and_dismissed_insights_stay_dismissed(services, cluster):
    first = scan(services, cluster)
    ids = sorted(i["insight_id"] for i in listed(services))
    second = scan(services, cluster)
    assert second["created"] == 0 and second["resolved"] == 0
    assert second["unchanged"] + second["updated"] == first["detected"] == second["detected"]
    assert sorted(i["insight_id"] for i in listed(services)) == ids

    target = by_rule(listed(services), cluster.triggers)["privileged_container"]
    dismissed = services.insights.dismiss(
        target["insight_id"], {"reason": "acknowledged_wont_fix", "notes": "debug tooling"}, "alice"
    )
    assert dismissed["dismissed_by"] == "alice" and dismissed["reason"] == "acknowledged_wont_fix"
    scan(services, cluster)
    assert target["insight_id"] not in {i["insight_id"] for i in listed(services)}
    again = {i["insight_id"]: i for i in listed(services, dismissed=True)}[target["insight_id"]]
    assert again["dismissed_at"] == dismissed["dismissed_at"]
    assert again["dismissed_by"] == "alice" and again["dismissed_notes"] == "debug tooling"
    assert again["status"] == "active"  # still detected: dismissed, not resolved
    assert len(listed(services, dismissed=True)) == len(ids)


def test_a_fixed_problem_is_resolved_by_the_next_scan(services, cluster):
    cluster.k.kubectl(
        "create", "role", "temporary-wildcard", "-n", cluster.triggers, "--verb=*", "--resource=*"
    )
    try:
        scan(services, cluster)
        wildcard = by_rule(listed(services), cluster.triggers)["wildcard_rbac"]
        assert wildcard["affected_resources"]["count"] == 2
    finally:
        cluster.k.kubectl("delete", "role", "temporary-wildcard", "-n", cluster.triggers)
    report = scan(services, cluster)
    assert report["updated"] >= 1  # the wildcard insight now lists one Role
    assert by_rule(listed(services), cluster.triggers)["wildcard_rbac"]["affected_resources"]["count"] == 1

    # A namespace that gets a NetworkPolicy: its insight is resolved (and kept, for analytics).
    cluster.k.kubectl("apply", "-n", cluster.triggers, "-f", "-", input=manifests(DEFAULT_DENY))
    try:
        before = by_rule(listed(services), cluster.triggers)["namespace_without_network_policy"]
        report = scan(services, cluster)
        assert report["resolved"] == 1
        resolved = {i["insight_id"]: i for i in listed(services, status="resolved")}
        assert resolved[before["insight_id"]]["resolved_at"] is not None
        assert "namespace_without_network_policy" not in by_rule(listed(services), cluster.triggers)
    finally:
        cluster.k.kubectl("delete", "networkpolicy", "default-deny", "-n", cluster.triggers)
    report = scan(services, cluster)
    back = by_rule(listed(services), cluster.triggers)["namespace_without_network_policy"]
    assert back["insight_id"] == before["insight_id"] and back["resolved_at"] is None


def test_scheduled_event_runs_a_full_scan(services, cluster, k8s_cluster):
    role = f"kubilitics-test-wildcard-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl("create", "clusterrole", role, "--verb=*", "--resource=*")
    try:
        handler = importlib.import_module("functions.insight_scanner.app").handler
        event = json.loads((EVENTS / "insight_scanner" / "scheduled.json").read_text())
        result = handler(event, LambdaContext())
        assert result["failed"] == [], result["failed"]
        [report] = result["scans"]
        assert report["context"] == k8s_cluster.context and report["namespaces"] == "all"
        assert report["created"] == report["detected"] > 0
        insights = listed(services)
        cluster_wide = [i for i in insights if i["rule"] == "wildcard_rbac" and i["namespace"] is None]
        assert f"ClusterRole/{role}" in cluster_wide[0]["affected_resources"]["examples"] + [
            d["resource"] for d in cluster_wide[0]["affected_resources"].get("details", [])
        ]
        assert "cluster-admin" not in json.dumps(cluster_wide)  # Kubernetes' own roles are not flagged
        assert "privileged_container" in by_rule(insights, cluster.triggers)
        assert [i for i in insights if i["namespace"] == cluster.clean] == []
        assert services.insights.list(k8s_cluster.context)["last_scan"]["scanned_at"] == report["scanned_at"]

        # A scoped run (the rule's input names namespaces) touches nothing outside them.
        event["detail"] = {"namespaces": [cluster.clean]}
        scoped = handler(event, LambdaContext())["scans"][0]
        assert scoped["detected"] == 0 and scoped["resolved"] == 0
    finally:
        k8s_cluster.kubectl("delete", "clusterrole", role, check=False)
