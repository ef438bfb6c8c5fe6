"""A small REST client for the Kubernetes API: raw JSON over urllib3, TLS and credentials from kubeconfig.

Used where a response is read as plain JSON (health, version, large lists): it skips the official
client's model deserialization, which costs ~10x `json.loads` on big lists.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import urllib3

from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.errors import KubernetesApiError


def _material(config: dict[str, Any], key: str, workdir: Path) -> str | None:
    """Path of a PEM given as `<key>` (a path) or `<key>-data` (base64); data is written to a 0600 file."""
    if config.get(f"{key}-data"):
        target = workdir / key
        if not target.exists():
            fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(base64.b64decode(config[f"{key}-data"]))
        return str(target)
    return config.get(key) or None


class KubeRestClient:
    def __init__(self, context: ContextConfig):
        self.context = context
        if not context.server:
            raise KubernetesApiError(
                f"Context {context.name!r} has no cluster server", details={"context": context.name}
            )
        self._workdir = Path(tempfile.mkdtemp(prefix="kubilitics-tls-"))
        cluster, user = context.cluster, context.user
        tls = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        else:
            ca = _material(cluster, "certificate-authority", self._workdir)
            if ca:
                tls.load_verify_locations(cafile=ca)
        cert = _material(user, "client-certificate", self._workdir)
        key = _material(user, "client-key", self._workdir)
        if cert and key:
            tls.load_cert_chain(cert, key)
        self._headers = {"Accept": "application/json", "User-Agent": "kubilitics/1.0"}
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._pool = urllib3.PoolManager(ssl_context=tls, maxsize=16, retries=False)

    def get_json(self, path: str, *, timeout: float, params: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.context.server.rstrip("/") + path
        try:
            response = self._pool.request(
                "GET", url, fields=params, headers=self._headers, timeout=urllib3.Timeout(total=timeout)
            )
        except urllib3.exceptions.HTTPError as exc:
            raise KubernetesApiError(
                f"Kubernetes API unreachable: {type(exc).__name__}",
                details={"context": self.context.name, "reason": _reason(exc)},
            ) from exc
        if response.status >= 400:
            raise KubernetesApiError(
                f"Kubernetes API answered {response.status} for GET {path}",
                details={"context": self.context.name, "status": response.status},
            )
        result: dict[str, Any] = json.loads(response.data)
        return result


def _reason(exc: Exception) -> str:
    text = repr(exc).lower()
    if "timeout" in text or "timed out" in text:
        return "connection_timeout"
    if "refused" in text:
        return "connection_refused"
    if "ssl" in text or "certificate" in text:
        return "tls_error"
    return "connection_error"


class KubeRestClients:
    """One client per context, created on first use and kept for the life of the process."""

    def __init__(self) -> None:
        self._clients: dict[str, KubeRestClient] = {}
        self._lock = threading.Lock()

    def for_context(self, context: ContextConfig) -> KubeRestClient:
        with self._lock:
            existing = self._clients.get(context.name)
            if existing is None or existing.context != context:
                existing = self._clients[context.name] = KubeRestClient(context)
            return existing
