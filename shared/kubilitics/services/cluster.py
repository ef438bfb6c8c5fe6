"""Namespaces and kubeconfig contexts (reference section 4)."""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kubilitics.adapters.kubeconfig import ContextConfig, KubeconfigSource
from kubilitics.errors import InvalidParameter, KubiliticsError, NotFound
from kubilitics.kube_paths import segment
from kubilitics.ports import KubernetesPort
from kubilitics.services.quantities import extreme_quantity

# Namespaces a dashboard hides unless asked: the control plane's own and the simulator's (kwok).
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "kwok"})
COUNT_WORKERS = 16
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def count_of(page: dict[str, Any]) -> int:
    """Size of a list fetched with limit=1: the item plus the server's count of the rest."""
    return len(page.get("items") or []) + int((page.get("metadata") or {}).get("remainingItemCount") or 0)


def _count_is_exact(page: dict[str, Any]) -> bool:
    # The server may leave remainingItemCount out of a page that has more; then count by listing.
    meta = page.get("metadata") or {}
    return not meta.get("continue") or meta.get("remainingItemCount") is not None


def _rows(listing: dict[str, Any]) -> list[Any]:
    """A table's rows, or the items of the plain list a server without tables sends instead."""
    return list(listing.get("rows", listing.get("items")) or [])


def is_system_namespace(name: str) -> bool:
    return name in SYSTEM_NAMESPACES or name.startswith(("kube-", "kwok-"))


def check_namespace_name(value: str, parameter: str = "namespace") -> str:
    """A namespace name must be a DNS-1123 label; anything else is a 400, not an empty answer."""
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise InvalidParameter(
            f"{parameter} {value!r} is not a valid namespace name (lowercase DNS-1123 label, max 63)",
            details={"parameter": parameter, "value": value},
        )
    return value


def check_object_name(value: str, parameter: str) -> str:
    """An object name (DNS-1123 subdomain); it also goes into field selectors, so it is checked first."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise InvalidParameter(
            f"{parameter} {value!r} is not a valid object name (lowercase DNS-1123 subdomain, max 253)",
            details={"parameter": parameter, "value": value},
        )
    return value


def namespace_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{segment(namespace)}"


def require_namespace(kube: KubernetesPort, context: ContextConfig, namespace: str) -> dict[str, Any]:
    """The namespace object; 404 not_found naming it (a filter on a typo must not look empty)."""
    try:
        return kube.get_path(context, namespace_path(namespace))
    except KubiliticsError as exc:
        if exc.code == "not_found":
            raise NotFound(f"Namespace {namespace!r} not found", details={"namespace": namespace}) from exc
        raise


class ClusterService:
    def __init__(self, kube: KubernetesPort, kubeconfig: KubeconfigSource, probe_timeout: float):
        self._kube = kube
        self._kubeconfig = kubeconfig
        self._probe_timeout = probe_timeout

    # ---- namespaces ------------------------------------------------------------------------

    def namespaces(
        self, context: ContextConfig, *, limit: int, offset: int, include_system: bool
    ) -> dict[str, Any]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            quotas = pool.submit(self._kube.get_path, context, "/api/v1/resourcequotas")
            by_name = {
                n["metadata"]["name"]: n
                for n in self._kube.get_path(context, "/api/v1/namespaces").get("items") or []
            }
            names = sorted(n for n in by_name if include_system or not is_system_namespace(n))
            page = names[offset : offset + limit]
            # One tiny count per namespace of the page: the cost does not grow with the pods.
            with ThreadPoolExecutor(max_workers=max(1, min(len(page), COUNT_WORKERS))) as counters:
                pod_counts = dict(
                    zip(page, counters.map(lambda ns: self._pod_count(context, ns), page), strict=True)
                )
            quota_status = _quota_status_by_namespace(quotas.result().get("items") or [])

        items = []
        for name in page:
            ns = by_name[name]
            item: dict[str, Any] = {
                "name": name,
                "status": (ns.get("status") or {}).get("phase", "Active"),
                "creation_timestamp": ns["metadata"].get("creationTimestamp"),
                "pod_count": pod_counts[name],
            }
            if name in quota_status:
                item["resource_quota_status"] = quota_status[name]
            items.append(item)
        return {"total_count": len(names), "items": items}

    def _pod_count(self, context: ContextConfig, namespace: str) -> int:
        page = self._kube.get_path(context, f"{namespace_path(namespace)}/pods", {"limit": 1})
        return (
            count_of(page)
            if _count_is_exact(page)
            else len(_rows(self._kube.list_table(context, f"{namespace_path(namespace)}/pods")))
        )

    # ---- contexts --------------------------------------------------------------------------

    def contexts(self, cluster_id: str | None) -> dict[str, Any]:
        """Every context (only the bound one for a cluster-bound token), probed in parallel."""
        kubeconfig = self._kubeconfig.get()
        contexts = [c for c in kubeconfig.contexts.values() if cluster_id is None or c.name == cluster_id]
        current = cluster_id or kubeconfig.current_context
        probes: dict[str, dict[str, Any]] = {}
        if contexts:
            # A dead cluster must not slow the answer: every probe runs at once, and whatever has not
            # answered by the deadline is reported as a timeout while its thread finishes on its own.
            pool = ThreadPoolExecutor(max_workers=min(len(contexts), 16))
            futures = {c.name: pool.submit(self._probe, c) for c in contexts}
            wait(futures.values(), timeout=self._probe_timeout + 0.5)
            pool.shutdown(wait=False, cancel_futures=True)
            for name, future in futures.items():
                if future.done() and not future.cancelled():
                    probes[name] = future.result()
                else:
                    probes[name] = {"is_reachable": False, "error": "connection_timeout"}
        return {
            "current_context": current if current in kubeconfig.contexts else None,
            "contexts": [{**describe_context(c), **probes[c.name]} for c in contexts],
        }

    def _probe(self, context: ContextConfig) -> dict[str, Any]:
        try:
            version = self._kube.get_path(context, "/version", timeout=self._probe_timeout)
        except KubiliticsError as exc:
            return {"is_reachable": False, "error": _probe_error(exc)}
        except Exception:  # unreadable certificates, bad key data: the context cannot be used
            return {"is_reachable": False, "error": "invalid_config"}
        return {"is_reachable": True, "kubernetes_version": str(version.get("gitVersion", "")).lstrip("v")}


def _probe_error(exc: KubiliticsError) -> str:
    status = exc.details.get("status")
    if status == 401:
        return "unauthorized"
    if exc.code == "forbidden" or status == 403:
        return "forbidden"
    if exc.details.get("reason"):
        return str(exc.details["reason"])
    if "has no cluster server" in exc.message:
        return "invalid_config"
    return "api_error"


def describe_context(context: ContextConfig) -> dict[str, Any]:
    """What a context switcher may show. Never credentials: no tokens, no key or certificate data."""
    cluster: dict[str, Any] = {"name": context.cluster_name, "server": _without_userinfo(context.server)}
    if isinstance(context.cluster.get("certificate-authority"), str):
        cluster["certificate_authority"] = context.cluster["certificate-authority"]
    cluster["is_insecure"] = bool(context.cluster.get("insecure-skip-tls-verify"))
    user: dict[str, Any] = {"name": context.user_name}
    if isinstance(context.user.get("client-certificate"), str):
        user["client_certificate"] = context.user["client-certificate"]
    user["auth_method"] = _auth_method(context.user)
    return {"name": context.name, "cluster": cluster, "user": user, "namespace": context.namespace}


def _auth_method(user: dict[str, Any]) -> str:
    if user.get("exec"):
        return "exec"
    if user.get("auth-provider"):
        return "auth_provider"
    if user.get("token") or user.get("tokenFile"):
        return "token"
    if user.get("client-certificate") or user.get("client-certificate-data"):
        return "client_certificate"
    if user.get("username"):
        return "basic"
    return "none"


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _quota_status_by_namespace(quotas: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, str]]]:
    """hard/used per namespace, merged over the namespace's quotas.

    A resource limited by several quotas shows the tightest hard limit (the one that binds) and the
    usage once: every quota counts the same namespace, so adding them up would double it.
    """
    collected: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(
        lambda: {"hard": defaultdict(list), "used": defaultdict(list)}
    )
    for quota in quotas:
        namespace = quota["metadata"].get("namespace", "")
        status = quota.get("status") or {}
        hard = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
        for key, value in hard.items():
            collected[namespace]["hard"][key].append(value)
        for key, value in (status.get("used") or {}).items():
            collected[namespace]["used"][key].append(value)
    return {
        namespace: {
            "hard": {k: extreme_quantity(v, smallest=True) for k, v in sorted(sides["hard"].items())},
            "used": {k: extreme_quantity(v, smallest=False) for k, v in sorted(sides["used"].items())},
        }
        for namespace, sides in collected.items()
    }
