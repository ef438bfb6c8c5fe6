"""The reference's example workflows (appendix of the API reference), driven end to end against the
local server on the test cluster by a client generated from its /openapi.json with
openapi-python-client (tests/generated_client.py; generated in the run, never committed).

Every REST call goes through the generated client's typed functions, and the checks are on its typed
models; the WebSocket parts use a plain `websockets` client (OpenAPI does not describe them; the
AsyncAPI document at /asyncapi.json does). About 40 s on the 2-core test machine (generating the
client: 2 s), most of it waiting for the cluster: the crashed pod and the server's start, the
OOM-killed worker, the investigation, pods starting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from websockets.sync.client import ClientConnection, connect

from tests import generated_client
from tests.e2e.conftest import start_local_server
from tests.e2e.test_realtime import collect
from tests.investigations_testbed import CRASHING_POD, NODES, oom_deployment, pod_terminated_reason, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def local_server(k8s_cluster, tmp_path_factory) -> Iterator[Any]:
    """A server of this module's own, started once a pod panics at start in `server.crash_namespace`:
    its startup scan (the next one comes 15 minutes later) has that pod for workflow 3's insights."""
    from tests.pods_testbed import create_namespace, delete_namespace

    namespace = create_namespace(k8s_cluster, "gen-client")
    try:
        k8s_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=CRASHING_POD)
        wait_for(
            lambda: "Error" in pod_terminated_reason(k8s_cluster, namespace, "app=orders"),
            90,
            "orders to crash",
        )
        with start_local_server(k8s_cluster, tmp_path_factory) as server:
            server.crash_namespace = namespace  # type: ignore[attr-defined]
            yield server
    finally:
        delete_namespace(k8s_cluster, namespace)


@pytest.fixture(scope="module")
def generated(local_server, tmp_path_factory) -> ModuleType:
    """The client package, generated from what the server publishes (once per document in a run)."""
    document = httpx.get(local_server.url + "/openapi.json", timeout=30)
    assert document.status_code == 200
    return generated_client.load(document.content, tmp_path_factory.mktemp("generated-client"))


@pytest.fixture(scope="module")
def api(generated, local_server) -> Iterator[Any]:
    with generated_client.client(generated, local_server.url, local_server.admin_token) as client:
        yield client


def typed(answer: Any, model: type) -> Any:
    """The answer parsed as `model` (an ErrorBody or None here means the call failed)."""
    assert isinstance(answer, model), f"expected {model.__name__}, got {answer!r}"
    return answer


def manifest(text: str, namespace: str) -> Any:
    """A KubernetesObject model of a YAML manifest."""
    from kubilitics_client.models import KubernetesObject

    body = yaml.safe_load(text)
    body["metadata"]["namespace"] = namespace
    return KubernetesObject.from_dict(body)


def web_deployment(name: str, replicas: int) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      {NODES}
      terminationGracePeriodSeconds: 1
      containers:
        - name: {name}
          image: "nginx:1.27"
          resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{memory: 64Mi}}}}
"""


def pods(api: Any, namespace: str, app: str) -> list[Any]:
    from kubilitics_client.api.resources import list_resources
    from kubilitics_client.models import ResourceList

    listed = typed(
        list_resources.sync("Pod", client=api, namespace=namespace, label_selector=f"app={app}"), ResourceList
    )
    assert listed.kind == "Pod" and listed.api_version == "v1"
    assert listed.total_count == len(listed.items) == listed.page.returned
    return list(listed.items)


def crashed(api: Any, namespace: str, app: str, reason: str) -> Any:
    """A pod of `app` whose container last ended for `reason` (OOMKilled, Error), or None."""
    return next(
        (
            p
            for p in pods(api, namespace, app)
            for s in (p.status or {}).get("containerStatuses") or []
            if ((s.get("lastState") or {}).get("terminated") or {}).get("reason") == reason
        ),
        None,
    )


def phase(pod: Any) -> str:
    return str((pod.status or {}).get("phase", ""))


def running(items: list[Any]) -> list[Any]:
    return [
        p
        for p in items
        if phase(p) == "Running" and not (p.metadata.additional_properties or {}).get("deletionTimestamp")
    ]


# ---- WebSocket (/api/v1/ws), plain client ---------------------------------------------------------


@contextmanager
def watch(server: Any) -> Iterator[ClientConnection]:
    url = server.url.replace("http://", "ws://") + f"/api/v1/ws?token={server.admin_token}"
    with connect(url, open_timeout=10) as ws:
        yield ws


def subscribe(ws: ClientConnection, kind: str, namespace: str, **fields: Any) -> dict[str, Any]:
    ws.send(json.dumps({"action": "subscribe", "resource_kind": kind, "namespace": namespace, **fields}))
    ack: dict[str, Any] = json.loads(ws.recv(timeout=10))
    assert ack["type"] == "SUBSCRIBED" and ack["namespace"] == namespace, ack
    return ack


def name(message: dict[str, Any]) -> str:
    return str(((message.get("resource") or {}).get("metadata") or {}).get("name", ""))


# ---- Workflow 1: troubleshooting a pod crash -------------------------------------------------------


def test_workflow_1_troubleshooting_a_pod_crash(api, k8s_namespace):
    """Logs, events, investigate, results, pending actions, approve; then the fix holds."""
    from kubilitics_client.api.ai import (
        approve_action,
        list_investigations,
        pending_actions,
        start_investigation,
    )
    from kubilitics_client.api.observability import list_events
    from kubilitics_client.api.pods import pod_logs
    from kubilitics_client.api.resources import create_resource, list_resources
    from kubilitics_client.models import (
        ActionApproved,
        ActionApprovedStatus,
        ApproveBody,
        EventList,
        InvestigateBody,
        InvestigationList,
        InvestigationStarted,
        InvestigationStatus,
        KubernetesObject,
        PendingActionList,
        ResourceList,
        ResourceRef,
    )

    ns = k8s_namespace
    # A queue worker whose memory grows past its 400Mi limit a few seconds after start: OOMKilled.
    created = typed(
        create_resource.sync("Deployment", client=api, body=manifest(oom_deployment("worker", "400Mi"), ns)),
        KubernetesObject,
    )
    assert (created.kind, created.metadata.name, created.metadata.namespace) == ("Deployment", "worker", ns)

    pod = wait_for(lambda: crashed(api, ns, "worker", "OOMKilled"), 120, "the worker to be OOMKilled")
    pod_name = pod.metadata.name

    # 1. The pod's logs: the worker started, then was killed.
    logs = pod_logs.sync(ns, pod_name, client=api, previous=True, timestamps=False)
    assert isinstance(logs, str), logs
    assert '{"level":"info","msg":"worker started","queue":"jobs"}' in logs.splitlines()

    # 2. The events of that pod.
    def pod_events() -> Any:
        events = typed(
            list_events.sync(client=api, namespace=ns, resource_kind="Pod", resource_name=pod_name), EventList
        )
        return events if any(e.reason == "BackOff" for e in events.items) else None

    events = wait_for(pod_events, 60, "a BackOff event of the pod")
    assert events.total_count == len(events.items)
    assert {(e.involved_object.kind, e.involved_object.name) for e in events.items} == {("Pod", pod_name)}
    backoff = next(e for e in events.items if e.reason == "BackOff")
    assert backoff.type_ == "Warning" and "restarting failed container" in backoff.message.lower()

    # 3. An investigation of the workload.
    started = typed(
        start_investigation.sync(
            client=api, body=InvestigateBody(resource_kind="Deployment", namespace=ns, resource_name="worker")
        ),
        InvestigationStarted,
    )
    assert started.resource == ResourceRef(kind="Deployment", namespace=ns, name="worker")
    assert started.status in ("pending", "in_progress")

    # 4. Its results.
    def finished() -> Any:
        listed = typed(
            list_investigations.sync(client=api, namespace=ns, include_findings=True), InvestigationList
        )
        item = next(i for i in listed.items if i.investigation_id == started.investigation_id)
        return item if item.status in (InvestigationStatus.COMPLETED, InvestigationStatus.FAILED) else None

    investigation = wait_for(finished, 120, f"investigation {started.investigation_id}")
    assert investigation.status == InvestigationStatus.COMPLETED, investigation
    assert investigation.progress_percent == 100
    assert investigation.root_cause.category == "oom_killed"
    assert 0.5 <= investigation.root_cause.confidence <= 1
    # Typed as the document says: the citations and the findings the cause rests on.
    assert any(c.source == "object" and c.object_.name.startswith("worker") for c in investigation.evidence)
    [finding] = [f for f in investigation.findings if f.category == "oom_killed"]
    assert finding.subject == ResourceRef(kind="Deployment", namespace=ns, name="worker")
    assert finding.severity in ("critical", "high") and finding.confidence >= 0.5
    assert [a.action_id for a in investigation.actions]  # the action it proposed, by id

    # 5. The action it proposes: double the memory limit.
    pending = typed(
        pending_actions.sync(client=api, investigation_id=started.investigation_id), PendingActionList
    )
    assert pending.total_count == len(pending.pending_actions) == 1
    [action] = pending.pending_actions
    assert action.investigation_id == started.investigation_id
    assert action.resource == ResourceRef(kind="Deployment", namespace=ns, name="worker")
    assert action.changes.additional_properties == {
        "spec.template.spec.containers[worker].resources.limits.memory": {
            "current": "400Mi",
            "proposed": "800Mi",
        }
    }
    assert action.expires_at > action.proposed_at

    # 6. Approved: applied and verified before the answer.
    approved = typed(
        approve_action.sync(
            action.action_id, client=api, body=ApproveBody(approval_notes="generated client")
        ),
        ActionApproved,
    )
    assert approved.action_id == action.action_id
    assert approved.status == ActionApprovedStatus.APPROVED
    assert approved.execution_status == "succeeded", approved

    # The fix, read back through the API: the new limit, and a worker that outlives its memory peak.
    [deployment] = typed(
        list_resources.sync("Deployment", client=api, namespace=ns, field_selector="metadata.name=worker"),
        ResourceList,
    ).items
    container = deployment.spec.additional_properties["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "800Mi"

    def healthy() -> Any:
        items = pods(api, ns, "worker")
        if len(items) != 1 or phase(items[0]) != "Running":
            return None
        [status] = items[0].status["containerStatuses"]
        limits = items[0].spec.additional_properties["containers"][0]["resources"]["limits"]
        return items[0] if status["ready"] and limits["memory"] == "800Mi" else None

    fixed = wait_for(healthy, 120, "one Running worker with the 800Mi limit")
    time.sleep(8)  # past the worker's memory peak (4 s after start)
    [again] = pods(api, ns, "worker")
    assert again.metadata.uid == fixed.metadata.uid
    [status] = again.status["containerStatuses"]
    assert status["restartCount"] == 0 and "running" in status["state"], status


# ---- Workflow 2: scaling a deployment --------------------------------------------------------------


def test_workflow_2_scaling_a_deployment(api, local_server, k8s_namespace):
    """Pod metrics, PUT the new replica count, watch the pods come over the WebSocket, metrics again."""
    from kubilitics_client.api.observability import pod_metrics
    from kubilitics_client.api.resources import create_resource, update_resource
    from kubilitics_client.models import (
        KubernetesObject,
        KubernetesObjectSpec,
        PodMetrics,
        UpdateResourcePatchStrategy,
    )

    ns = k8s_namespace
    typed(
        create_resource.sync("Deployment", client=api, body=manifest(web_deployment("nginx", 1), ns)),
        KubernetesObject,
    )
    [first] = wait_for(lambda: running(pods(api, ns, "nginx")), 90, "the first nginx pod Running")

    # 1. The current load.
    def metrics_of(count: int) -> Any:
        answer = typed(pod_metrics.sync(client=api, namespace=ns), PodMetrics)
        return answer if len(answer.pods) == count else None

    before = wait_for(lambda: metrics_of(1), 60, "metrics of the first pod")
    [measured] = before.pods
    assert (measured.namespace, measured.name) == (ns, first.metadata.name)
    [container] = measured.containers
    assert container.name == "nginx"
    assert (container.cpu.requests, container.cpu.limits) == ("0.01", None)
    assert (container.memory.requests, container.memory.limits) == (str(16 << 20), str(64 << 20))

    with watch(local_server) as ws:
        # 3 (subscribed first, so that no pod of the scale-up is missed).
        ack = subscribe(ws, "Pod", ns, label_selector="app=nginx", subscription_id="scaling")
        assert ack["resource_kind"] == "Pod"

        # 2. The new replica count.
        body = KubernetesObject(spec=KubernetesObjectSpec.from_dict({"replicas": 3}))
        updated = typed(
            update_resource.sync(
                "Deployment",
                ns,
                "nginx",
                client=api,
                body=body,
                patch_strategy=UpdateResourcePatchStrategy.MERGE_PATCH,
            ),
            KubernetesObject,
        )
        assert (updated.kind, updated.metadata.name) == ("Deployment", "nginx")
        assert updated.spec.additional_properties["replicas"] == 3

        def phases(messages: list[dict[str, Any]]) -> dict[str, str]:
            seen = {first.metadata.name: "Running"}
            for m in messages:
                if m["type"] in ("ADDED", "MODIFIED"):
                    seen[name(m)] = (m["resource"].get("status") or {}).get("phase", "")
                elif m["type"] == "DELETED":
                    seen.pop(name(m), None)
            return seen

        messages = collect(ws, lambda ms: list(phases(ms).values()).count("Running") == 3)
    assert all(m["subscription_id"] == "scaling" for m in messages)
    added = {name(m) for m in messages if m["type"] == "ADDED"}
    assert len(added) == 2 and first.metadata.name not in added
    assert all(m["resource"]["metadata"]["labels"]["app"] == "nginx" for m in messages)
    everyone = set(phases(messages))

    # 4. The metrics, now of three pods.
    after = wait_for(lambda: metrics_of(3), 90, "metrics of the three pods")
    assert {p.name for p in after.pods} == everyone
    assert all(p.namespace == ns and [c.name for c in p.containers] == ["nginx"] for p in after.pods)
    assert after.total_count == 3


# ---- Workflow 3: real-time cluster monitoring ------------------------------------------------------


def test_workflow_3_real_time_cluster_monitoring(api, local_server, k8s_cluster, k8s_namespace):
    """Subscribe to Pod, Deployment and Event; topology, node metrics, insights; then a change made
    through the API arrives as ADDED, MODIFIED and DELETED."""
    from kubilitics_client.api.ai import list_insights
    from kubilitics_client.api.observability import node_metrics, topology
    from kubilitics_client.api.resources import create_resource, delete_resource, update_resource
    from kubilitics_client.models import (
        InsightCategory,
        InsightList,
        InsightScan,
        InsightSeverity,
        KubernetesObject,
        KubernetesObjectSpec,
        ListInsightsCategory,
        NodeMetrics,
        Topology,
        UpdateResourcePatchStrategy,
    )

    ns, crashing = k8s_namespace, local_server.crash_namespace
    with watch(local_server) as ws:
        # 1. The subscriptions.
        for kind in ("Pod", "Deployment", "Event"):
            ack = subscribe(ws, kind, ns, subscription_id=kind.lower())
            assert (ack["resource_kind"], ack["subscription_id"]) == (kind, kind.lower())

        # 2. The cluster snapshot.
        snapshot = typed(topology.sync(client=api, include_events=True), Topology)
        nodes = {n.name for n in snapshot.nodes}
        assert snapshot.cluster.total_nodes == len(snapshot.nodes) >= 1
        [scratch] = [n for n in snapshot.namespaces if n.name == ns]
        assert (scratch.status, scratch.pod_count) == ("Active", 0)
        assert scratch.workloads.additional_properties["deployments"] == 0

        # 3. Node health.
        health = typed(node_metrics.sync(client=api), NodeMetrics)
        assert {n.name for n in health.nodes} == nodes
        for node in health.nodes:
            assert node.status in ("Ready", "NotReady", "Unknown")
            assert float(node.cpu.allocatable_cores) > 0 and int(node.memory.allocatable_bytes) > 0
            assert node.network.source and node.disk.source  # objects, never a bare null

        # 4. Proactive recommendations, among them the pod that crashed before the server's first scan.
        def scanned() -> Any:
            listed = typed(list_insights.sync(client=api, category=ListInsightsCategory.HEALTH), InsightList)
            return listed if isinstance(listed.last_scan, InsightScan) else None

        insights = wait_for(scanned, 120, "the server's first insight scan")
        assert insights.total_count == len(insights.insights) and insights.last_scan.detected >= 1
        assert all(i.category == InsightCategory.HEALTH for i in insights.insights)
        [insight] = [
            i for i in insights.insights if f"{crashing}/Pod/orders" in i.affected_resources.examples
        ]
        assert (insight.severity, insight.namespace, insight.status) == (
            InsightSeverity.CRITICAL,
            crashing,
            "active",
        )
        assert insight.dismissed_at is None and insight.insight_id.startswith("ins-")
        assert "orders" in insight.title

        # A change made through the API: create, scale, delete.
        typed(
            create_resource.sync("Deployment", client=api, body=manifest(web_deployment("web", 1), ns)),
            KubernetesObject,
        )
        messages = collect(
            ws,
            lambda ms: (
                any(m["subscription_id"] == "pod" and m["type"] == "ADDED" for m in ms)
                and any(m["subscription_id"] == "event" for m in ms)
            ),
        )
        typed(
            update_resource.sync(
                "Deployment",
                ns,
                "web",
                client=api,
                body=KubernetesObject(spec=KubernetesObjectSpec.from_dict({"replicas": 2})),
                patch_strategy=UpdateResourcePatchStrategy.MERGE_PATCH,
            ),
            KubernetesObject,
        )
        messages += collect(
            ws,
            lambda ms: (
                sum(m["subscription_id"] == "pod" and m["type"] == "ADDED" for m in messages + ms) >= 2
            ),
        )
        deleted = typed(delete_resource.sync("Deployment", ns, "web", client=api), KubernetesObject)
        # The API server's answer: the object (while finalizers hold it) or a Status naming it.
        if deleted.kind == "Status":
            assert deleted.additional_properties["details"]["name"] == "web"
        else:
            assert (deleted.kind, deleted.metadata.name) == ("Deployment", "web")

        def gone(ms: list[dict[str, Any]]) -> bool:
            everything = messages + ms
            pods_added = {
                name(m) for m in everything if m["subscription_id"] == "pod" and m["type"] == "ADDED"
            }
            pods_deleted = {
                name(m) for m in everything if m["subscription_id"] == "pod" and m["type"] == "DELETED"
            }
            return pods_added == pods_deleted and any(
                m["subscription_id"] == "deployment" and m["type"] == "DELETED" for m in everything
            )

        messages += collect(ws, gone)

    def seen(subscription: str) -> list[tuple[str, str]]:
        return [(m["type"], name(m)) for m in messages if m["subscription_id"] == subscription]

    deployment = seen("deployment")
    assert deployment[0] == ("ADDED", "web") and deployment[-1] == ("DELETED", "web")
    assert ("MODIFIED", "web") in deployment
    assert {kind for kind, _ in deployment} == {"ADDED", "MODIFIED", "DELETED"}
    pods_seen = seen("pod")
    assert {kind for kind, _ in pods_seen} == {"ADDED", "MODIFIED", "DELETED"}
    assert len({n for kind, n in pods_seen if kind == "ADDED"}) == 2
    assert all(n.startswith("web-") for _, n in pods_seen)
    events = [m["resource"] for m in messages if m["subscription_id"] == "event"]
    assert events and all(e["kind"] == "Event" and e["metadata"]["namespace"] == ns for e in events)
    reasons = {(e["involvedObject"]["kind"], e["reason"]) for e in events}
    assert ("Deployment", "ScalingReplicaSet") in reasons
    assert all(
        m["resource"]["kind"] == kind for kind in ("Pod",) for m in messages if m["subscription_id"] == "pod"
    )
