"""The read-only Kubernetes tools behind `providers.kubernetes_toolset()`: what the model may look at.

Every tool reads through the Kubernetes port and returns a small JSON document: objects are
sanitized as evidence is (Secret and ConfigMap values never, only their key names; managedFields and
last-applied-configuration dropped), lists are cut to a few dozen items. Nothing here can change the
cluster. The provider redacts whatever a tool returns before it is sent.
"""

from __future__ import annotations

from typing import Any

from kubilitics.ai.evidence import sanitize
from kubilitics.ai.kube_json import (
    controller_of,
    event_last_seen,
    format_time,
    labels_of,
    map_selector_matches,
)
from kubilitics.errors import KubiliticsError
from kubilitics.kube_paths import segment
from kubilitics.ports import KubernetesPort

MAX_ITEMS = 40
MAX_LOG_LINES = 200


class KubernetesToolbox:
    """`call_tool(name, input)` for one investigation: one cluster context, read-only."""

    def __init__(self, kube: KubernetesPort, context: Any, default_namespace: str | None = None):
        self._kube = kube
        self._context = context
        self._namespace = default_namespace
        self.calls = 0

    def __call__(self, name: str, arguments: dict[str, Any]) -> Any:
        self.calls += 1
        tool = getattr(self, f"_tool_{name}", None)
        if tool is None:
            raise KubiliticsError(f"Unknown tool {name!r}", code="invalid_parameter", details={"tool": name})
        return tool(**arguments)

    # ---- the tools -----------------------------------------------------------------------------

    def _tool_get_object(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        rtype, ns = self._type(kind, namespace)
        return sanitize({**self._kube.get(self._context, rtype, ns, name), "kind": rtype.kind})

    def _tool_list_events(
        self, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        rtype, ns = self._type("Event", namespace)
        selectors = [f"involvedObject.kind={kind}"] if kind else []
        if name:
            selectors.append(f"involvedObject.name={name}")
        items = (
            self._kube.list_objects(
                self._context, rtype, namespace=ns, field_selector=",".join(selectors) or None, limit=500
            ).get("items")
            or []
        )
        items.sort(key=lambda e: event_last_seen(e) or 0.0, reverse=True)
        return {
            "events": [
                {
                    "type": e.get("type"),
                    "reason": e.get("reason"),
                    "message": e.get("message"),
                    "object": {
                        k: (e.get("involvedObject") or {}).get(k) for k in ("kind", "namespace", "name")
                    },
                    "count": e.get("count") or (e.get("series") or {}).get("count") or 1,
                    "last_seen": format_time(seen) if (seen := event_last_seen(e)) else None,
                }
                for e in items[:MAX_ITEMS]
            ],
            "total": len(items),
        }

    def _tool_read_logs(
        self,
        pod: str,
        namespace: str | None = None,
        container: str | None = None,
        previous: bool = False,
        tail_lines: int = 100,
    ) -> dict[str, Any]:
        ns = namespace or self._namespace or "default"
        params: dict[str, Any] = {"tailLines": max(1, min(int(tail_lines), MAX_LOG_LINES))}
        if container:
            params["container"] = container
        if previous:
            params["previous"] = "true"
        text = self._kube.pod_logs(self._context, ns, pod, params)
        return {"pod": pod, "container": container, "previous": previous, "lines": text.splitlines()}

    def _tool_read_metrics(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        if kind == "Node":
            # The model chooses these names: each is one quoted segment ("..", "a/b" cannot move the path).
            usage = self._kube.get_path(self._context, f"/apis/metrics.k8s.io/v1beta1/nodes/{segment(name)}")
            node = self._kube.get(self._context, self._kube.resource_type(self._context, "Node"), None, name)
            return {
                "usage": usage.get("usage"),
                "allocatable": (node.get("status") or {}).get("allocatable"),
                "capacity": (node.get("status") or {}).get("capacity"),
            }
        ns = namespace or self._namespace or "default"
        usage = self._kube.get_path(
            self._context, f"/apis/metrics.k8s.io/v1beta1/namespaces/{segment(ns)}/pods/{segment(name)}"
        )
        pod = self._kube.get(self._context, self._kube.resource_type(self._context, "Pod"), ns, name)
        resources = {
            c.get("name"): c.get("resources") or {} for c in (pod.get("spec") or {}).get("containers") or []
        }
        return {
            "containers": [
                {
                    "name": c.get("name"),
                    "usage": c.get("usage"),
                    "resources": resources.get(c.get("name"), {}),
                }
                for c in usage.get("containers") or []
            ]
        }

    def _tool_owner_chain(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        rtype, ns = self._type(kind, namespace)
        current = {**self._kube.get(self._context, rtype, ns, name), "kind": rtype.kind}
        chain = [{"kind": rtype.kind, "name": name, "namespace": ns}]
        for _ in range(4):
            ref = controller_of(current)
            if not ref:
                break
            owner_type, _ = self._type(str(ref.get("kind")), ns)
            try:
                current = {
                    **self._kube.get(self._context, owner_type, ns, str(ref.get("name"))),
                    "kind": ref.get("kind"),
                }
            except KubiliticsError as exc:
                chain.append({"kind": ref.get("kind"), "name": ref.get("name"), "error": exc.message})
                break
            chain.append({"kind": ref.get("kind"), "name": ref.get("name"), "namespace": ns})
        return {"chain": chain}

    def _tool_endpoints(self, service: str, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self._namespace or "default"
        svc_type, _ = self._type("Service", ns)
        svc = self._kube.get(self._context, svc_type, ns, service)
        selector = (svc.get("spec") or {}).get("selector") or {}
        ep_type, _ = self._type("Endpoints", ns)
        try:
            endpoints = self._kube.get(self._context, ep_type, ns, service)
        except KubiliticsError:
            endpoints = {}
        ready, not_ready = [], []
        for subset in endpoints.get("subsets") or []:
            ports = [p.get("port") for p in subset.get("ports") or []]
            ready += [
                {"pod": ((a.get("targetRef") or {}).get("name")), "ports": ports}
                for a in subset.get("addresses") or []
            ]
            not_ready += [
                {"pod": ((a.get("targetRef") or {}).get("name")), "ports": ports}
                for a in subset.get("notReadyAddresses") or []
            ]
        pod_type, _ = self._type("Pod", ns)
        pods = self._kube.list_objects(self._context, pod_type, namespace=ns, limit=200).get("items") or []
        matching = [p for p in pods if selector and map_selector_matches(selector, labels_of(p))]
        return {
            "selector": selector,
            "ports": (svc.get("spec") or {}).get("ports"),
            "ready": ready[:MAX_ITEMS],
            "not_ready": not_ready[:MAX_ITEMS],
            "matching_pods": [
                {
                    "name": (p.get("metadata") or {}).get("name"),
                    "phase": (p.get("status") or {}).get("phase"),
                    "container_ports": [
                        port
                        for c in (p.get("spec") or {}).get("containers") or []
                        for port in c.get("ports") or []
                    ],
                }
                for p in matching[:MAX_ITEMS]
            ],
        }

    def _type(self, kind: str, namespace: str | None) -> tuple[Any, str | None]:
        rtype = self._kube.resource_type(self._context, kind)
        return rtype, (namespace or self._namespace or "default") if rtype.namespaced else None
