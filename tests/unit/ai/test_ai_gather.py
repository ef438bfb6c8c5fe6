"""gather_evidence through an in-memory KubernetesPort serving objects captured from the test cluster."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from kubilitics.adapters.kubernetes import ResourceType
from kubilitics.ai.evidence import ObjectRef
from kubilitics.ai.gather import GatherLimits, gather_evidence
from kubilitics.ai.kube_json import parse_time
from kubilitics.errors import KubiliticsError

FIXTURES = Path(__file__).parent / "fixtures"

KINDS = {
    # kind: (group, version, plural, namespaced)
    "Pod": ("", "v1", "pods", True),
    "Event": ("", "v1", "events", True),
    "ConfigMap": ("", "v1", "configmaps", True),
    "Secret": ("", "v1", "secrets", True),
    "ServiceAccount": ("", "v1", "serviceaccounts", True),
    "Service": ("", "v1", "services", True),
    "Endpoints": ("", "v1", "endpoints", True),
    "PersistentVolumeClaim": ("", "v1", "persistentvolumeclaims", True),
    "ResourceQuota": ("", "v1", "resourcequotas", True),
    "LimitRange": ("", "v1", "limitranges", True),
    "Node": ("", "v1", "nodes", False),
    "Deployment": ("apps", "v1", "deployments", True),
    "ReplicaSet": ("apps", "v1", "replicasets", True),
    "StatefulSet": ("apps", "v1", "statefulsets", True),
    "DaemonSet": ("apps", "v1", "daemonsets", True),
    "Job": ("batch", "v1", "jobs", True),
    "CronJob": ("batch", "v1", "cronjobs", True),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers", True),
    "EndpointSlice": ("discovery.k8s.io", "v1", "endpointslices", True),
    "StorageClass": ("storage.k8s.io", "v1", "storageclasses", False),
}


class FakeKube:
    """A KubernetesPort over a dict of objects; records the calls it gets."""

    timeout = 5.0

    def __init__(self, objects: list[dict[str, Any]], logs: dict[tuple[str, str, bool], str] | None = None):
        self.objects = [copy.deepcopy(o) for o in objects]
        self.logs = logs or {}
        self.calls: list[tuple[str, ...]] = []
        self.forbidden: set[str] = set()

    def resource_types(self, context: Any, *, max_age: float = 0) -> list[ResourceType]:
        return [self.resource_type(context, k) for k in KINDS]

    def resource_type(self, context: Any, kind: str) -> ResourceType:
        if kind not in KINDS:
            raise KubiliticsError(f"Unknown Kubernetes kind: {kind}", code="invalid_resource_kind")
        group, version, plural, namespaced = KINDS[kind]
        return ResourceType(group, version, kind, plural, kind.lower(), (), namespaced, ("get", "list"))

    def _match(self, obj: dict[str, Any], rtype: ResourceType, namespace: str | None) -> bool:
        md = obj.get("metadata") or {}
        return obj.get("kind") == rtype.kind and (not namespace or md.get("namespace") == namespace)

    def get(self, context: Any, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        self.calls.append(("get", rtype.kind, name))
        for obj in self.objects:
            if self._match(obj, rtype, namespace) and obj["metadata"]["name"] == name:
                return copy.deepcopy(obj)
        raise KubiliticsError(f'{rtype.plural} "{name}" not found', code="not_found")

    def list_objects(
        self,
        context: Any,
        rtype: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        self.calls.append(("list", rtype.kind, label_selector or field_selector or ""))
        if rtype.kind in self.forbidden:
            raise KubiliticsError(f"{rtype.plural} is forbidden", code="forbidden")
        items = []
        for obj in self.objects:
            if not self._match(obj, rtype, namespace):
                continue
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if label_selector and not all(
                labels.get(k) == v for k, v in (p.split("=", 1) for p in label_selector.split(","))
            ):
                continue
            if field_selector:
                key, value = field_selector.split("=", 1)
                if key == "involvedObject.name" and obj["involvedObject"]["name"] != value:
                    continue
                if key == "spec.nodeName" and (obj.get("spec") or {}).get("nodeName") != value:
                    continue
            items.append({k: v for k, v in copy.deepcopy(obj).items() if k != "kind"})  # lists omit kind
        return {"items": items[:limit] if limit else items}

    def pod_logs(self, context: Any, namespace: str, name: str, params: dict[str, Any]) -> str:
        previous = params.get("previous") == "true"
        self.calls.append(("logs", name, params["container"], str(previous)))
        key = (name, params["container"], previous)
        if key not in self.logs:
            raise KubiliticsError(
                f'previous terminated container "{params["container"]}" not found', code="validation_failed"
            )
        return self.logs[key]


def cluster(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The objects and events of a captured scenario, as the API server would serve them."""
    doc = json.loads((FIXTURES / f"{name}.json").read_text())
    return doc, [*doc["objects"].values(), *doc["events"]]


def test_deployment_gathers_its_replicasets_pods_services_nodes_events_and_logs():
    doc, objects = cluster("crashloop-app-error")
    ns = doc["target"]["namespace"]
    pods = [o for o in objects if o["kind"] == "Pod"]
    logs = {(p["metadata"]["name"], "orders", False): "panic: boom\n" for p in pods}
    kube = FakeKube(objects, logs)
    ev = gather_evidence(kube, None, "Deployment", ns, "orders", clock=lambda: doc["collected_at"])
    kinds = {o["kind"] for o in ev.objects.values()}
    assert {
        "Deployment",
        "ReplicaSet",
        "Pod",
        "Service",
        "Endpoints",
        "EndpointSlice",
        "Node",
        "ServiceAccount",
    } <= kinds
    assert len(ev.pods) == 2
    assert ev.events and all(e["involvedObject"]["name"] for e in ev.events)
    assert {(t.pod, t.container, t.previous) for t in ev.logs if t.lines} == set(logs)
    assert ev.notes == []


def test_secrets_referenced_by_pods_arrive_as_names_and_keys():
    doc, objects = cluster("missing-secret-key")
    ns = doc["target"]["namespace"]
    for obj in objects:
        if obj["kind"] == "Secret":  # what the API server really returns: the values
            obj.pop("keys")
            obj["data"] = {
                "username": base64.b64encode(b"mailer").decode(),
                "pasword": base64.b64encode(b"s3cr3t-canary").decode(),
            }
    ev = gather_evidence(
        FakeKube(objects), None, "Deployment", ns, "mailer", clock=lambda: doc["collected_at"]
    )
    text = json.dumps(ev.to_dict())
    assert "s3cr3t-canary" not in text and base64.b64encode(b"s3cr3t-canary").decode() not in text
    assert ev.get("Secret", "smtp-credentials", ns)["keys"] == ["pasword", "username"]


def test_referenced_objects_that_do_not_exist_are_recorded_as_absent():
    doc, objects = cluster("missing-configmap")
    ns = doc["target"]["namespace"]
    ev = gather_evidence(
        FakeKube(objects), None, "Deployment", ns, "checkout", clock=lambda: doc["collected_at"]
    )
    assert ObjectRef("ConfigMap", "checkout-config", ns) in ev.absent


def test_pod_target_walks_its_owner_chain():
    doc, objects = cluster("crashloop-app-error")
    ns = doc["target"]["namespace"]
    pod = next(o for o in objects if o["kind"] == "Pod")
    ev = gather_evidence(
        FakeKube(objects), None, "Pod", ns, pod["metadata"]["name"], clock=lambda: doc["collected_at"]
    )
    assert [o.kind for o in ev.owners] == ["ReplicaSet", "Deployment"]
    assert ev.target_object is not None and len(ev.pods) == 1


def test_many_pods_are_bounded_troubled_first():
    doc, objects = cluster("healthy-deployment")
    ns = doc["target"]["namespace"]
    template = next(o for o in objects if o["kind"] == "Pod")
    extra = []
    for i in range(30):
        pod = copy.deepcopy(template)
        pod["metadata"].update(name=f"web-extra-{i:02d}", uid=f"uid-{i}")
        extra.append(pod)
    sick = extra[-1]
    sick["status"]["containerStatuses"][0].update(ready=False, restartCount=4)
    kube = FakeKube(objects + extra)
    limits = GatherLimits(max_pods=5, max_log_pods=2)
    ev = gather_evidence(
        kube, None, "Deployment", ns, "web", limits=limits, clock=lambda: doc["collected_at"]
    )
    names = {p["metadata"]["name"] for p in ev.pods}
    assert len(names) == 5 and "web-extra-29" in names
    assert any("kept the 5 most troubled" in n for n in ev.notes)
    assert len({c[1] for c in kube.calls if c[0] == "logs"}) <= 2


def test_reads_that_fail_become_notes_not_errors():
    doc, objects = cluster("healthy-deployment")
    ns = doc["target"]["namespace"]
    kube = FakeKube(objects)
    kube.forbidden = {"ResourceQuota", "Event"}
    ev = gather_evidence(kube, None, "Deployment", ns, "web", clock=lambda: doc["collected_at"])
    assert any("resourcequotas is forbidden" in n for n in ev.notes)
    assert ev.target_object is not None


def test_unknown_kind_and_missing_target():
    kube = FakeKube([])
    ev = gather_evidence(kube, None, "Gadget", "default", "x", clock=lambda: 0.0)
    assert any("Gadget is not served" in n for n in ev.notes)
    ev = gather_evidence(kube, None, "Deployment", "default", "ghost", clock=lambda: 0.0)
    assert ev.target_object is None and any("was not found" in n for n in ev.notes)


@pytest.mark.parametrize("minutes", [1, 60])
def test_events_outside_the_window_are_dropped(minutes):
    doc, objects = cluster("crashloop-app-error")
    ns = doc["target"]["namespace"]
    later = doc["collected_at"] + 30 * 60  # gathered half an hour after the capture
    ev = gather_evidence(
        FakeKube(objects), None, "Deployment", ns, "orders", window_minutes=minutes, clock=lambda: later
    )
    horizon = later - minutes * 60
    from kubilitics.ai.kube_json import event_last_seen

    assert all((event_last_seen(e) or 0) >= horizon for e in ev.events)
    assert bool(ev.events) == (minutes == 60)
    assert parse_time("2026-11-25T23:35:00Z") is not None
