"""Evidence gathering: the only part of the diagnosis that talks to the cluster (through the port).

`gather_evidence` reads the target, walks its owner chain, finds the pods it consists of (or that
use it) and what they depend on (Services and their endpoints, PVCs and StorageClasses, ConfigMaps
and Secrets by name and keys, ServiceAccounts, nodes, ResourceQuotas, HPAs), then the events of all
of these within the window and the log tails of the pods that are in trouble. Independent reads run
in parallel; everything is bounded (pods, log lines, events) so an investigation of a 500-replica
Deployment costs about as much as one of a single pod.

A read that fails (forbidden, timeout, a kind the cluster does not serve) becomes a note in the
evidence instead of an error: an investigation with partial evidence beats no investigation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from kubilitics.ai.evidence import Evidence, LogTail, ObjectRef
from kubilitics.ai.kube_json import (
    containers,
    controller_of,
    event_last_seen,
    labels_of,
    map_selector_matches,
    meta,
    name_of,
    pod_finished,
    pod_is_ready,
    pod_node,
    selector_string,
)
from kubilitics.errors import KubiliticsError
from kubilitics.ports import KubernetesPort

# Kinds nothing reports events about (their events are not listed).
_NO_EVENTS = ("ConfigMap", "Secret", "StorageClass", "EndpointSlice", "Endpoints", "LimitRange")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")


@dataclass(frozen=True)
class GatherLimits:
    max_pods: int = 10  # pods kept per investigation (the most troubled first)
    max_log_pods: int = 4  # pods whose logs are read
    log_lines: int = 60  # tail of each log
    max_events: int = 400  # events kept in total (newest first)
    max_nearby_pods: int = 60  # pods kept by labels only, to explain selectors and node impact
    max_jobs: int = 3  # most recent Jobs of a CronJob
    workers: int = 8


def gather_evidence(
    kube: KubernetesPort,
    context: Any,
    kind: str,
    namespace: str | None,
    name: str,
    window_minutes: int = 60,
    *,
    limits: GatherLimits | None = None,
    clock: Callable[[], float] = time.time,
) -> Evidence:
    """Everything an analyzer may need about `kind/namespace/name`, read through `kube` only."""
    return _Gatherer(kube, context, limits or GatherLimits(), clock).run(
        kind, namespace, name, window_minutes
    )


class _Gatherer:
    def __init__(self, kube: KubernetesPort, context: Any, limits: GatherLimits, clock: Callable[[], float]):
        self.kube = kube
        self.context = context
        self.limits = limits
        self.clock = clock
        self.ev: Evidence
        self._rtypes: dict[str, Any] = {}

    # ---- port access (every call goes through these, so a failure becomes a note) -------------------

    def rtype(self, kind: str) -> Any | None:
        if kind not in self._rtypes:
            try:
                self._rtypes[kind] = self.kube.resource_type(self.context, kind)
            except KubiliticsError as exc:
                self.ev.notes.append(f"kind {kind} is not served: {exc.message}")
                self._rtypes[kind] = None
        return self._rtypes[kind]

    def get(
        self, kind: str, namespace: str | None, name: str, *, target: bool = False
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist (recorded as absent) or cannot be read. The
        target itself refused (403: the caller's RBAC) raises: nothing is diagnosed blind."""
        rtype = self.rtype(kind)
        if rtype is None or not name:
            return None
        ns = namespace if rtype.namespaced else None
        try:
            obj = self.kube.get(self.context, rtype, ns, name)
        except KubiliticsError as exc:
            if target and exc.code == "forbidden":
                raise
            if exc.code == "not_found":
                self.ev.add_absent(ObjectRef(rtype.kind, name, ns))
            else:
                self.ev.notes.append(
                    f"could not read {rtype.kind} {ns + '/' if ns else ''}{name}: {exc.message}"
                )
            return None
        obj.setdefault("kind", rtype.kind)
        return obj

    def list_items(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        rtype = self.rtype(kind)
        if rtype is None:
            return []
        try:
            result = self.kube.list_objects(
                self.context,
                rtype,
                namespace=namespace if rtype.namespaced else None,
                label_selector=label_selector,
                field_selector=field_selector,
                limit=limit,
            )
        except KubiliticsError as exc:
            self.ev.notes.append(f"could not list {rtype.plural}: {exc.message}")
            return []
        items = result.get("items") or []
        for item in items:
            item.setdefault("kind", rtype.kind)
        return list(items)

    def parallel(self, calls: Iterable[Callable[[], Any]]) -> list[Any]:
        calls = list(calls)
        if len(calls) <= 1:
            return [c() for c in calls]
        with ThreadPoolExecutor(max_workers=self.limits.workers) as pool:
            return list(pool.map(lambda c: c(), calls))

    # ---- the walk --------------------------------------------------------------------------------

    def run(self, kind: str, namespace: str | None, name: str, window_minutes: int) -> Evidence:
        now = self.clock()
        self.ev = Evidence(
            target=ObjectRef(kind, name, namespace),
            collected_at=now,
            window_minutes=window_minutes,
            context=getattr(self.context, "name", None),
        )
        rtype = self.rtype(kind)
        if rtype is None:
            return self.ev
        namespace = namespace if rtype.namespaced else None
        self.ev.target = ObjectRef(rtype.kind, name, namespace)
        target = self.get(rtype.kind, namespace, name, target=True)
        if target is None:
            self.ev.notes.append(f"{self.ev.target} was not found")
            self._events([self.ev.target])
            return self.ev
        self.ev.add(target)
        self._owner_chain(target)

        pods = self._pods_of(target)
        pods = self._bounded_pods(pods)
        for pod in pods:
            self.ev.add(pod, "Pod")
        self._dependencies(pods)
        self._events([ObjectRef.of(o) for o in self.ev.objects.values()])
        self._logs(pods)
        return self.ev

    def _owner_chain(self, obj: dict[str, Any]) -> None:
        current, seen = obj, set()
        for _ in range(4):  # Pod -> ReplicaSet -> Deployment; Pod -> Job -> CronJob; a CRD owner at most
            ref = controller_of(current)
            if not ref or ref.get("uid") in seen:
                return
            seen.add(ref.get("uid"))
            owner = self.get(str(ref.get("kind")), namespace_or_none(current), str(ref.get("name")))
            if owner is None:
                return
            self.ev.owners.append(self.ev.add(owner))
            current = owner

    def _pods_of(self, target: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods the target consists of, runs on, or that use it."""
        kind, ns = target.get("kind"), namespace_or_none(target)
        spec = target.get("spec") or {}
        if kind == "Pod":
            return [target]
        if kind == "Deployment":
            rsets = self._owned(self.list_items("ReplicaSet", ns, label_selector=_sel(spec)), target)
            for rs in rsets:
                self.ev.add(rs, "ReplicaSet")
            uids = {meta(rs).get("uid") for rs in rsets}
            candidates = self.list_items("Pod", ns, label_selector=_sel(spec))
            return [p for p in candidates if (controller_of(p) or {}).get("uid") in uids]
        if kind in ("ReplicaSet", "StatefulSet", "DaemonSet", "Job"):
            return self._owned(self.list_items("Pod", ns, label_selector=_sel(spec)), target)
        if kind == "CronJob":
            jobs = self._owned(self.list_items("Job", ns), target)
            jobs.sort(key=lambda j: meta(j).get("creationTimestamp") or "", reverse=True)
            pods: list[dict[str, Any]] = []
            for job in jobs[: self.limits.max_jobs]:
                self.ev.add(job, "Job")
                pods += self._owned(
                    self.list_items("Pod", ns, label_selector=_sel(job.get("spec") or {})), job
                )
            return pods
        if kind == "Service":
            selector = spec.get("selector") or {}
            if not selector:
                return []
            pods = self.list_items("Pod", ns, label_selector=selector_string(selector))
            if not pods:  # a selector that matches nothing: keep the namespace's pods by labels only
                self._nearby(self.list_items("Pod", ns, limit=self.limits.max_nearby_pods))
            self._controllers(pods)
            return pods
        if kind == "Node":
            on_node = self.list_items("Pod", None, field_selector=f"spec.nodeName={name_of(target)}")
            self._nearby(on_node)
            return []
        if kind == "PersistentVolumeClaim":
            claim = name_of(target)
            return [
                p
                for p in self.list_items("Pod", ns)
                if any(
                    (v.get("persistentVolumeClaim") or {}).get("claimName") == claim
                    for v in (p.get("spec") or {}).get("volumes") or []
                )
            ]
        if kind == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            workload = self.get(str(ref.get("kind")), ns, str(ref.get("name")))
            if workload is None:
                return []
            self.ev.add(workload)
            return self._pods_of(workload)
        return []

    def _controllers(self, pods: list[dict[str, Any]], limit: int = 3) -> None:
        """The workloads behind some pods (a Service's backends), to name what to change."""
        firsts: dict[str, dict[str, Any]] = {}
        for pod in pods:
            ref = controller_of(pod)
            if ref and str(ref.get("uid")) not in firsts and len(firsts) < limit:
                firsts[str(ref.get("uid"))] = pod
        for pod in firsts.values():
            current = pod
            for _ in range(2):  # Pod -> ReplicaSet -> Deployment
                ref = controller_of(current)
                if not ref:
                    break
                owner = self.get(str(ref.get("kind")), namespace_or_none(current), str(ref.get("name")))
                if owner is None:
                    break
                self.ev.add(owner)
                current = owner

    def _owned(self, items: list[dict[str, Any]], owner: dict[str, Any]) -> list[dict[str, Any]]:
        uid = meta(owner).get("uid")
        return [i for i in items if any(r.get("uid") == uid for r in meta(i).get("ownerReferences") or [])]

    def _bounded_pods(self, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The most telling pods first: troubled before healthy, newest before oldest."""
        if len(pods) <= self.limits.max_pods:
            return pods
        self.ev.notes.append(f"{len(pods)} pods; kept the {self.limits.max_pods} most troubled")
        ranked = sorted(pods, key=lambda p: meta(p).get("creationTimestamp") or "", reverse=True)
        ranked.sort(key=lambda p: 0 if _troubled(p) else 1)
        return ranked[: self.limits.max_pods]

    def _nearby(self, pods: list[dict[str, Any]]) -> None:
        for pod in pods[: self.limits.max_nearby_pods]:
            self.ev.nearby_pods.append(_slim_pod(pod))

    # ---- what the pods depend on -----------------------------------------------------------------

    def _dependencies(self, pods: list[dict[str, Any]]) -> None:
        target = self.ev.target_object or {}
        ns = self.ev.target.namespace
        refs: dict[tuple[str, str, str], None] = {}  # (kind, namespace, name), ordered and unique
        for pod in pods:
            pns = namespace_or_none(pod) or ns or ""
            for kind, ref_name in _pod_references(pod):
                refs[(kind, pns, ref_name)] = None
            if pod_node(pod):
                refs[("Node", "", str(pod_node(pod)))] = None
        if target.get("kind") == "PersistentVolumeClaim":
            sc = (target.get("spec") or {}).get("storageClassName")
            if sc:
                refs[("StorageClass", "", sc)] = None

        calls: list[Callable[[], Any]] = [partial(self._keep_get, k, n or None, name) for k, n, name in refs]
        unscheduled = any(not pod_node(p) and not pod_finished(p) for p in pods)
        if ns:
            calls.append(lambda: self._keep_all(self.list_items("ResourceQuota", ns)))
            calls.append(lambda: self._keep_all(self.list_items("LimitRange", ns)))  # they refuse pods too
            calls.append(lambda: self._keep_hpas(self.list_items("HorizontalPodAutoscaler", ns)))
            if pods and target.get("kind") != "Service":
                calls.append(lambda: self._keep_services(self.list_items("Service", ns), pods))
        if unscheduled:  # the scheduler's view: which nodes exist, their labels and taints
            calls.append(lambda: self._keep_all(self.list_items("Node", limit=100)))
        self.parallel(calls)

        # Second round: what depends on the first (StorageClasses of the claims, Service endpoints).
        calls = []
        claims = self.ev.of_kind("PersistentVolumeClaim")
        for claim in claims:
            sc = (claim.get("spec") or {}).get("storageClassName")
            if sc and not self.ev.get("StorageClass", sc):
                calls.append(partial(self._keep_get, "StorageClass", None, sc))
        if any(not (c.get("spec") or {}).get("storageClassName") for c in claims) or (
            target.get("kind") == "PersistentVolumeClaim"
            and not (target.get("spec") or {}).get("storageClassName")
        ):
            calls.append(lambda: self._keep_all(self.list_items("StorageClass", limit=50)))
        for svc in self.ev.of_kind("Service"):
            calls.append(partial(self._keep_get, "Endpoints", namespace_or_none(svc), name_of(svc)))
            calls.append(
                partial(
                    self._keep_list,
                    "EndpointSlice",
                    namespace_or_none(svc),
                    label_selector=f"kubernetes.io/service-name={name_of(svc)}",
                )
            )
        self.parallel(calls)

    def _keep(self, obj: dict[str, Any] | None) -> None:
        if obj is not None:
            self.ev.add(obj)

    def _keep_get(self, kind: str, namespace: str | None, name: str) -> None:
        self._keep(self.get(kind, namespace, name))

    def _keep_list(self, kind: str, namespace: str | None = None, **selectors: Any) -> None:
        self._keep_all(self.list_items(kind, namespace, **selectors))

    def _keep_all(self, objs: list[dict[str, Any]]) -> None:
        for obj in objs:
            self.ev.add(obj)

    def _keep_hpas(self, hpas: list[dict[str, Any]]) -> None:
        mine = {(r.kind, r.name) for r in [self.ev.target, *self.ev.owners]}
        for hpa in hpas:
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if (ref.get("kind"), ref.get("name")) in mine or self.ev.target.kind == "HorizontalPodAutoscaler":
                self.ev.add(hpa)

    def _keep_services(self, services: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        for svc in services:
            selector = (svc.get("spec") or {}).get("selector") or {}
            if any(map_selector_matches(selector, labels_of(p)) for p in pods):
                self.ev.add(svc)

    # ---- events and logs -------------------------------------------------------------------------

    def _events(self, refs: list[ObjectRef]) -> None:
        """Events about the gathered objects within the window (one field-selected list per name)."""
        by_scope: dict[tuple[str | None, str], None] = {}
        for ref in refs:
            if ref.kind in _NO_EVENTS:
                continue  # nothing reports events about these
            by_scope[(ref.namespace, ref.name)] = None
        wanted = {(r.kind, r.namespace, r.name) for r in refs}
        results = self.parallel(
            [
                partial(
                    self.list_items,
                    "Event",
                    ns,
                    field_selector=f"involvedObject.name={name}",
                    limit=self.limits.max_events,
                )
                for ns, name in by_scope
            ]
        )
        horizon = self.ev.collected_at - self.ev.window_minutes * 60
        kept = []
        for events in results:
            for event in events:
                io = event.get("involvedObject") or {}
                if (io.get("kind"), io.get("namespace") or None, io.get("name")) not in wanted:
                    continue
                seen = event_last_seen(event)
                if seen is not None and seen < horizon:
                    continue
                kept.append(event)
        kept.sort(key=lambda e: event_last_seen(e) or 0.0, reverse=True)
        self.ev.add_events(kept[: self.limits.max_events])

    def _logs(self, pods: list[dict[str, Any]]) -> None:
        candidates = sorted(pods, key=lambda p: 0 if _troubled(p) else 1)[: self.limits.max_log_pods]
        calls = []
        for pod in candidates:
            for c in containers(pod):
                if c.running or c.terminated:
                    calls.append(partial(self._log, pod, c.name, c.init, previous=False))
                if c.last_terminated and c.restarts > 0:
                    calls.append(partial(self._log, pod, c.name, c.init, previous=True))
        self.ev.logs.extend(self.parallel(calls))

    def _log(self, pod: dict[str, Any], container: str, init: bool, *, previous: bool) -> LogTail:
        ns, name = namespace_or_none(pod) or "", name_of(pod)
        params: dict[str, Any] = {"container": container, "tailLines": self.limits.log_lines}
        if previous:
            params["previous"] = "true"
        try:
            text = self.kube.pod_logs(self.context, ns, name, params)
        except KubiliticsError as exc:
            return LogTail(ns, name, container, previous, init=init, error=exc.message)
        lines = tuple(line for line in text.splitlines() if line.strip())[-self.limits.log_lines :]
        return LogTail(ns, name, container, previous, lines=lines, init=init)


# ---- helpers -------------------------------------------------------------------------------------


def namespace_or_none(obj: dict[str, Any]) -> str | None:
    return meta(obj).get("namespace") or None


def _sel(spec: dict[str, Any]) -> str | None:
    return selector_string(spec.get("selector")) or None


def _troubled(pod: dict[str, Any]) -> bool:
    if (pod.get("status") or {}).get("phase") == "Succeeded":
        return False
    if not pod_is_ready(pod):
        return True
    return any(c.restarts > 0 or c.waiting for c in containers(pod))


def _pod_references(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of every ConfigMap, Secret, PVC and ServiceAccount the pod spec refers to."""
    spec = pod.get("spec") or {}
    out: list[tuple[str, str]] = []
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for src in c.get("envFrom") or []:
            if (src.get("configMapRef") or {}).get("name"):
                out.append(("ConfigMap", src["configMapRef"]["name"]))
            if (src.get("secretRef") or {}).get("name"):
                out.append(("Secret", src["secretRef"]["name"]))
        for env in c.get("env") or []:
            value_from = env.get("valueFrom") or {}
            if (value_from.get("configMapKeyRef") or {}).get("name"):
                out.append(("ConfigMap", value_from["configMapKeyRef"]["name"]))
            if (value_from.get("secretKeyRef") or {}).get("name"):
                out.append(("Secret", value_from["secretKeyRef"]["name"]))
    for vol in spec.get("volumes") or []:
        if (vol.get("configMap") or {}).get("name"):
            out.append(("ConfigMap", vol["configMap"]["name"]))
        if (vol.get("secret") or {}).get("secretName"):
            out.append(("Secret", vol["secret"]["secretName"]))
        if (vol.get("persistentVolumeClaim") or {}).get("claimName"):
            out.append(("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]))
        for source in (vol.get("projected") or {}).get("sources") or []:
            if (source.get("configMap") or {}).get("name"):
                out.append(("ConfigMap", source["configMap"]["name"]))
            if (source.get("secret") or {}).get("name"):
                out.append(("Secret", source["secret"]["name"]))
    for secret in spec.get("imagePullSecrets") or []:
        if secret.get("name"):
            out.append(("Secret", secret["name"]))
    out.append(("ServiceAccount", spec.get("serviceAccountName") or "default"))
    return out


def _slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod by labels, owner, phase and readiness only (no spec details, no env)."""
    md = meta(pod)
    status = pod.get("status") or {}
    return {
        "kind": "Pod",
        "metadata": {
            "name": md.get("name"),
            "namespace": md.get("namespace"),
            "uid": md.get("uid"),
            "labels": md.get("labels") or {},
            "ownerReferences": md.get("ownerReferences") or [],
        },
        "spec": {
            "nodeName": (pod.get("spec") or {}).get("nodeName"),
            "containers": [
                {"name": c.get("name"), "ports": c.get("ports") or []}
                for c in (pod.get("spec") or {}).get("containers") or []
            ],
        },
        "status": {
            "phase": status.get("phase"),
            "reason": status.get("reason"),
            "message": status.get("message"),
            "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "Ready"],
        },
    }
