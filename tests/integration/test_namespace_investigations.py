"""Namespace investigations ("what is broken in this namespace?") on the test cluster, end to end
through the investigations Lambda handler: POST /api/v1/ai/investigate with resource_kind Namespace,
the state machine on moto's interpreter, the task Lambda in this process (ai/triage.py).

- a namespace with healthy workloads and two broken ones: the root cause is the crash-looping
  Deployment (ranked above the failed Job: severity, then a user-facing Service it empties), every
  problem is listed with its subject and category, and the summary counts the affected workloads;
- a namespace full of look-alikes (a finished Job, a Deployment scaled to zero behind a Service, an
  optional ConfigMap reference that does not exist, a LimitRange nothing violates) is healthy;
- insights and triage agree: a namespace with active health insights is never reported healthy.
"""

from __future__ import annotations

import importlib

import pytest

from tests.investigations_testbed import NODES, invoke, list_event, start_event, wait_for

pytestmark = pytest.mark.cluster

HEALTHY_WEB = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      {NODES}
      containers:
        - name: nginx
          image: nginx:1.27
          ports: [{{containerPort: 80, name: http}}]
          resources: {{requests: {{cpu: 10m, memory: 32Mi}}, limits: {{memory: 128Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
"""

# The orders release panics at start (exit 1): CrashLoopBackOff, and its Service has no endpoints.
# The migration Job fails once and gives up (backoffLimit 0): BackoffLimitExceeded.
BROKEN = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: orders}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: orders}}}}
  template:
    metadata: {{labels: {{app: orders}}}}
    spec:
      {NODES}
      containers:
        - name: orders
          image: ghcr.io/kubilitics-demo/orders:2.3.1
          ports: [{{containerPort: 8080, name: http}}]
          resources: {{requests: {{cpu: 10m, memory: 32Mi}}, limits: {{memory: 128Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: orders}}
spec:
  selector: {{app: orders}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: batch/v1
kind: Job
metadata: {{name: db-migrate}}
spec:
  backoffLimit: 0
  template:
    spec:
      {NODES}
      restartPolicy: Never
      containers:
        - name: migrate
          image: busybox:1.36
          command: ["sh", "-c", "echo 'ERROR: relation invoices does not exist' >&2; exit 1"]
          resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}
"""

LOOK_ALIKES = f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: seed}}
spec:
  backoffLimit: 0
  template:
    spec:
      {NODES}
      restartPolicy: Never
      containers:
        - name: seed
          image: busybox:1.36
          command: ["sh", "-c", "echo seeded"]
          resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: reports}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: reports}}}}
  template:
    metadata: {{labels: {{app: reports}}}}
    spec:
      {NODES}
      containers:
        - name: reports
          image: nginx:1.27
          ports: [{{containerPort: 80, name: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: reports}}
spec:
  selector: {{app: reports}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      {NODES}
      containers:
        - name: api
          image: nginx:1.27
          env:
            - name: FEATURE_FLAGS
              valueFrom: {{configMapKeyRef: {{name: feature-flags, key: flags, optional: true}}}}
          resources: {{requests: {{cpu: 10m, memory: 32Mi}}, limits: {{cpu: 200m, memory: 128Mi}}}}
---
apiVersion: v1
kind: LimitRange
metadata: {{name: container-bounds}}
spec:
  limits:
    - type: Container
      max: {{cpu: "1", memory: 512Mi}}
"""


@pytest.fixture()
def handler(on_cluster, investigation_machine):
    return importlib.import_module("functions.ai_investigations.app").handler


def _jsonpath(cluster, kind: str, name: str, ns: str, path: str) -> str:
    return str(cluster.kubectl("get", kind, name, "-n", ns, "-o", f"jsonpath={path}", check=False).stdout)


@pytest.fixture(scope="module")
def broken_ns(k8s_cluster):
    from tests.pods_testbed import create_namespace, delete_namespace

    ns = create_namespace(k8s_cluster, "triage-broken")
    k8s_cluster.kubectl("apply", "-n", ns, "-f", "-", input=HEALTHY_WEB + "---" + BROKEN)
    try:
        wait_for(
            lambda: _jsonpath(k8s_cluster, "deployment", "web", ns, "{.status.readyReplicas}") == "2",
            timeout=120,
            what="web ready",
        )
        wait_for(
            lambda: "CrashLoopBackOff"
            in str(
                k8s_cluster.kubectl(
                    "get", "pods", "-n", ns, "-l", "app=orders", "-o",
                    "jsonpath={.items[*].status.containerStatuses[*].state.waiting.reason}", check=False,
                ).stdout
            ),
            timeout=120,
            what="orders crash-looping",
        )  # fmt: skip
        wait_for(
            lambda: (
                "BackoffLimitExceeded"
                in _jsonpath(
                    k8s_cluster, "job", "db-migrate", ns, '{.status.conditions[?(@.type=="Failed")].reason}'
                )
            ),
            timeout=180,
            what="db-migrate failed",
        )
        yield ns
    finally:
        delete_namespace(k8s_cluster, ns)


@pytest.fixture(scope="module")
def look_alikes_ns(k8s_cluster):
    from tests.pods_testbed import create_namespace, delete_namespace

    ns = create_namespace(k8s_cluster, "triage-alike")
    k8s_cluster.kubectl("apply", "-n", ns, "-f", "-", input=HEALTHY_WEB + "---" + LOOK_ALIKES)
    try:
        wait_for(
            lambda: (
                _jsonpath(k8s_cluster, "deployment", "web", ns, "{.status.readyReplicas}") == "2"
                and _jsonpath(k8s_cluster, "deployment", "api", ns, "{.status.readyReplicas}") == "1"
            ),
            timeout=120,
            what="web and api ready",
        )
        wait_for(
            lambda: _jsonpath(k8s_cluster, "job", "seed", ns, "{.status.succeeded}") == "1",
            timeout=120,
            what="seed Job complete",
        )
        yield ns
    finally:
        delete_namespace(k8s_cluster, ns)


def investigate_namespace(handler, token: str, ns: str) -> dict:
    status, _, started = invoke(
        handler, start_event(token, {"resource_kind": "Namespace", "resource_name": ns})
    )
    assert status == 202, started
    assert started["resource"] == {"kind": "Namespace", "name": ns}
    investigation_id = started["investigation_id"]

    def finished():
        code, _, body = invoke(handler, list_event(token, include_findings=True, limit=500))
        assert code == 200, body
        item = next((i for i in body["items"] if i["investigation_id"] == investigation_id), None)
        return item if item and item["status"] in ("completed", "failed") else None

    item: dict = wait_for(finished, timeout=120, what=f"investigation of namespace {ns}")
    assert item["status"] == "completed", item
    return item


def test_a_namespace_with_two_broken_workloads_names_both_and_ranks_the_outage_first(
    handler, mint, broken_ns
):
    token = mint(sub="alice", scopes="read,write")
    item = investigate_namespace(handler, token, broken_ns)

    root = item["root_cause"]
    assert root["category"] == "app_crash", root
    assert root["subject"] == {"kind": "Deployment", "name": "orders", "namespace": broken_ns}
    assert root["confidence"] >= 0.8
    assert item["severity"] == "critical"  # no orders pod is ready

    found = [(f["category"], f["subject"]["kind"], f["subject"]["name"]) for f in item["findings"]]
    assert found == [("app_crash", "Deployment", "orders"), ("job_backoff_limit", "Job", "db-migrate")]
    assert all(f["subject"]["namespace"] == broken_ns for f in item["findings"])

    # Deployment web, Deployment orders, Job db-migrate, Service web, Service orders; the empty
    # orders Service counts as affected (folded into the Deployment's problem, not a second cause).
    triage = item["triage"]
    assert triage["workloads"] == 5
    assert triage["affected"] == 3
    assert triage["affected_workloads"] == ["Deployment orders", "Job db-migrate"]
    assert item["findings_summary"].startswith(f"3 of 5 workloads in namespace {broken_ns} affected")
    assert "web" not in " ".join(f["subject"]["name"] for f in item["findings"])

    assert item["evidence"], "the root cause cites what it rests on"
    assert item["recommendations"] and item["recommendations"][0]["priority"] == 1


def test_a_namespace_of_look_alikes_is_healthy(handler, mint, look_alikes_ns):
    token = mint(sub="alice", scopes="read,write")
    item = investigate_namespace(handler, token, look_alikes_ns)
    # Listed with the namespace's investigations (?namespace= names the namespace investigated).
    code, _, listed = invoke(handler, list_event(token, namespace=look_alikes_ns, limit=500))
    assert code == 200 and item["investigation_id"] in [i["investigation_id"] for i in listed["items"]]
    assert item["root_cause"]["category"] == "healthy", item["findings_summary"]
    assert item["findings"] == [] and item["recommendations"] == []
    triage = item["triage"]
    # Deployments web, reports, api; Job seed; Services web, reports.
    assert triage["workloads"] == 6 and triage["affected"] == 0
    assert item["findings_summary"].startswith(f"Namespace {look_alikes_ns} is healthy: 0 of 6 workloads")


def test_a_namespace_with_active_health_insights_is_never_reported_healthy(
    handler, mint, broken_ns, look_alikes_ns
):
    from kubilitics.container import get_container

    services = get_container()
    context = services.insight_contexts()[0]
    services.insight_scanner.scan(context, [broken_ns, look_alikes_ns])
    active = services.insights.list(context.name, category="health", limit=1000)["insights"]
    with_insights = {i["namespace"] for i in active}
    assert broken_ns in with_insights and look_alikes_ns not in with_insights

    token = mint(sub="alice", scopes="read,write")
    for ns in (broken_ns, look_alikes_ns):
        item = investigate_namespace(handler, token, ns)
        healthy = item["root_cause"]["category"] == "healthy"
        assert healthy == (ns not in with_insights), (ns, item["findings_summary"])
        if ns in with_insights:
            # Every workload an insight names is among the investigation's problems.
            named = {i["affected_resources"]["examples"][0] for i in active if i["namespace"] == ns}
            subjects = {f"{ns}/{f['subject']['kind']}/{f['subject']['name']}" for f in item["findings"]}
            assert named <= subjects, (named, subjects)


# A LimitRange that refuses every pod of a Deployment (its cpu limit is above the maximum), a Service
# whose selector matches nothing, and the failing migration Job: three problems of the same severity,
# ranked by how much is down (the refused Deployment and the empty Service before the one-off Job).
REFUSED = f"""
apiVersion: v1
kind: LimitRange
metadata: {{name: container-bounds}}
spec:
  limits:
    - type: Container
      max: {{cpu: 500m}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: billing}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: billing}}}}
  template:
    metadata: {{labels: {{app: billing}}}}
    spec:
      {NODES}
      containers:
        - name: billing
          image: nginx:1.27
          resources: {{requests: {{cpu: 100m}}, limits: {{cpu: "2"}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: frontend}}
spec:
  selector: {{app: frontend-v2}}
  ports: [{{port: 80, targetPort: 80}}]
"""


@pytest.fixture(scope="module")
def refused_ns(k8s_cluster):
    from tests.pods_testbed import create_namespace, delete_namespace

    ns = create_namespace(k8s_cluster, "triage-refused")
    job = BROKEN.split("---")[-1]
    k8s_cluster.kubectl("apply", "-n", ns, "-f", "-", input=HEALTHY_WEB + "---" + REFUSED + "---" + job)
    try:
        wait_for(
            lambda: "maximum cpu usage per Container"
            in str(
                k8s_cluster.kubectl(
                    "get", "events", "-n", ns, "--field-selector", "reason=FailedCreate", "-o",
                    "jsonpath={.items[*].message}", check=False,
                ).stdout
            ),
            timeout=60,
            what="the LimitRange refusing billing's pods",
        )  # fmt: skip
        wait_for(
            lambda: (
                "BackoffLimitExceeded"
                in _jsonpath(
                    k8s_cluster, "job", "db-migrate", ns, '{.status.conditions[?(@.type=="Failed")].reason}'
                )
            ),
            timeout=180,
            what="db-migrate failed",
        )
        wait_for(
            lambda: _jsonpath(k8s_cluster, "deployment", "web", ns, "{.status.readyReplicas}") == "2",
            timeout=120,
            what="web ready",
        )
        yield ns
    finally:
        delete_namespace(k8s_cluster, ns)


def test_a_limit_range_refusing_pods_and_an_empty_service_rank_above_a_failed_job(handler, mint, refused_ns):
    token = mint(sub="alice", scopes="read,write")
    item = investigate_namespace(handler, token, refused_ns)
    found = [
        (f["category"], f["subject"]["kind"], f["subject"]["name"], f["severity"]) for f in item["findings"]
    ]
    assert found == [
        ("quota_exceeded", "Deployment", "billing", "high"),
        ("service_selector_mismatch", "Service", "frontend", "high"),
        ("job_backoff_limit", "Job", "db-migrate", "high"),
    ], found
    root = item["root_cause"]
    assert root["subject"] == {"kind": "Deployment", "name": "billing", "namespace": refused_ns}
    assert "LimitRange container-bounds" in root["summary"] and "500m" in root["summary"]
    assert any(e["source"] == "event" and e.get("reason") == "FailedCreate" for e in item["evidence"])
    assert item["triage"]["affected"] == 3 and item["triage"]["workloads"] == 5
