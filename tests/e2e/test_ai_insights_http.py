"""Insights and analytics over real HTTP on the local server, which scans the cluster at start."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.e2e.conftest import start_local_server

pytestmark = pytest.mark.cluster

# A namespace with a privileged container: the startup scan must report it whatever else the
# cluster holds (a fresh test cluster has nothing else to find).
PRIVILEGED = """
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
  labels: {{kubilitics.testbed/ephemeral: "true"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: debug-tools, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: debug-tools}}}}
  template:
    metadata: {{labels: {{app: debug-tools}}}}
    spec:
      containers:
        - name: tools
          image: nginx:1.27
          securityContext: {{privileged: true}}
"""


@pytest.fixture(scope="module")
def local_server(k8s_cluster, tmp_path_factory):
    """A server of its own, started after the privileged workload exists so its first scan sees it."""
    namespace = f"t-insights-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl("apply", "-f", "-", input=PRIVILEGED.format(ns=namespace))
    deadline = time.monotonic() + 120
    while "Running" not in k8s_cluster.kubectl("get", "pods", "-n", namespace, check=False).stdout:
        assert time.monotonic() < deadline, "the privileged pod never ran"
        time.sleep(1)
    try:
        with start_local_server(k8s_cluster, tmp_path_factory) as server:
            server.privileged_namespace = namespace  # type: ignore[attr-defined]
            yield server
    finally:
        k8s_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def get(base: str, path: str, token: str) -> httpx.Response:
    return httpx.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_the_startup_scan_fills_the_insights(local_server):
    deadline = time.monotonic() + 120
    while True:
        body = get(local_server.url, "/api/v1/ai/insights?limit=5", local_server.admin_token).json()
        if body.get("last_scan") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert body["last_scan"] is not None, body
    assert body["total_count"] > 0 and len(body["insights"]) <= 5
    severities = [i["severity"] for i in body["insights"]]
    order = {"critical": 0, "warning": 1, "info": 2}
    assert severities == sorted(severities, key=order.__getitem__)
    on_ai_port = get(
        local_server.ai_url, "/api/v1/ai/insights?category=security&limit=1", local_server.admin_token
    )
    assert on_ai_port.status_code == 200
    assert all(i["category"] == "security" for i in on_ai_port.json()["insights"])
    security = get(
        local_server.url, "/api/v1/ai/insights?category=security&limit=100", local_server.admin_token
    )
    examples = [e for i in security.json()["insights"] for e in i["affected_resources"].get("examples") or []]
    assert any(local_server.privileged_namespace in example for example in examples), examples


def test_analytics_summary_counts_this_tests_requests(local_server):
    token = local_server.admin_token
    summary = get(local_server.ai_url, "/api/v1/ai/analytics/summary?time_period=24h", token)
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert body["period"]["duration_days"] == 1
    assert body["user_engagement"]["unique_users"] >= 1
    assert body["insights_generated"]["total"] >= 1  # the startup scan
