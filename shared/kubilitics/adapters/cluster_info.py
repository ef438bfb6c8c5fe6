"""Cluster facts for health and version: `/version` and a node count, each with a short timeout."""

from __future__ import annotations

from typing import Any

from kubilitics.adapters.kube_rest import KubeRestClient, KubeRestClients
from kubilitics.adapters.kubeconfig import KubeconfigSource


class KubeClusterInfo:
    def __init__(self, kubeconfig: KubeconfigSource, clients: KubeRestClients):
        self._kubeconfig = kubeconfig
        self._clients = clients

    def _client(self, context: str | None) -> KubeRestClient:
        return self._clients.for_context(self._kubeconfig.get().resolve(context))

    def version(self, context: str | None, timeout: float) -> dict[str, Any]:
        return self._client(context).get_json("/version", timeout=timeout)

    def node_count(self, context: str | None, timeout: float) -> int:
        # limit=1 plus remainingItemCount counts nodes without transferring them all
        page = self._client(context).get_json("/api/v1/nodes", timeout=timeout, params={"limit": "1"})
        return len(page.get("items") or []) + int(page.get("metadata", {}).get("remainingItemCount") or 0)

    def cluster_name(self, context: str | None) -> str | None:
        return self._kubeconfig.get().resolve(context).cluster_name or None
