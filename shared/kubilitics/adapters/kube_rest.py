"""A small REST client for the Kubernetes API: raw JSON over urllib3, TLS and credentials from kubeconfig.

Used where a response is read as plain JSON (health, version, large lists): it skips the official
client's model deserialization, which costs ~10x `json.loads` on big lists (and orjson parses
in about half the time of `json.loads`).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from urllib3 import HTTPHeaderDict

from kubilitics.adapters.eks import EksTokenSource, eks_cluster_from_exec
from kubilitics.adapters.kubeconfig import ContextConfig, KubeIdentity
from kubilitics.errors import KubernetesApiError, KubiliticsError


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
    def __init__(self, context: ContextConfig, default_region: str = "us-east-1"):
        self.context = context
        if not context.server:
            raise KubernetesApiError(
                f"Context {context.name!r} has no cluster server", details={"context": context.name}
            )
        self._workdir = Path(tempfile.mkdtemp(prefix="kubilitics-tls-"))
        cluster, user = context.cluster, context.user
        ca = (
            None
            if cluster.get("insecure-skip-tls-verify")
            else _material(cluster, "certificate-authority", self._workdir)
        )
        # With a cluster CA, trust only it (and skip loading the system store: ~35 ms of cold start).
        tls = ssl.create_default_context(cafile=ca)
        if cluster.get("insecure-skip-tls-verify"):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        cert = _material(user, "client-certificate", self._workdir)
        key = _material(user, "client-key", self._workdir)
        if cert and key:
            tls.load_cert_chain(cert, key)
        self._headers = {"Accept": "application/json", "User-Agent": "kubilitics/1.0"}
        self._impersonation: list[tuple[str, str]] = []
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        self._bearer = f"Bearer {token}" if token else None
        eks = eks_cluster_from_exec(user)
        self._token_source = EksTokenSource(eks[0], eks[1] or default_region) if eks and not token else None
        self.ssl_context = tls
        # Kept connections: enough for the topology's calls at once (a new TLS connection costs ~5 ms).
        self._pool = urllib3.PoolManager(ssl_context=tls, maxsize=96, retries=False)

    def acting_as(self, identity: KubeIdentity | None) -> KubeRestClient:
        """This client, its requests impersonating `identity` (same connections, TLS and credentials)."""
        if identity is None:
            return self
        view = copy.copy(self)
        view._impersonation = identity.headers()
        return view

    @property
    def auth_headers(self) -> list[tuple[str, str]]:
        """Credentials and impersonation, as (name, value) pairs: a header may repeat (groups)."""
        if self._token_source is not None:
            return [("Authorization", f"Bearer {self._token_source()}"), *self._impersonation]
        return ([("Authorization", self._bearer)] if self._bearer else []) + self._impersonation

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: float,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """One call to the API server; API errors become domain errors (spec-decisions 2)."""
        url = self.context.server.rstrip("/") + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        headers = HTTPHeaderDict({**self._headers, "Accept": accept})
        for name, value in self.auth_headers:
            headers.add(name, value)
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            try:
                response = self._send(method, url, body, headers, timeout, stream)
            except urllib3.exceptions.ProtocolError:
                # A kept-alive connection the server (or a load balancer in front of it) closed while
                # it sat in the pool: a read is sent once more, on a fresh connection.
                if method not in ("GET", "HEAD"):
                    raise
                response = self._send(method, url, body, headers, timeout, stream)
        except urllib3.exceptions.HTTPError as exc:
            raise KubernetesApiError(
                f"Kubernetes API unreachable: {type(exc).__name__}",
                details={"context": self.context.name, "reason": connection_reason(exc)},
                headers={"Retry-After": str(KUBE_RETRY_AFTER_SECONDS)},
            ) from exc
        if response.status >= 400:
            data = response.data if not stream else response.read()
            raise api_error(response.status, data, self.context.name)
        return response

    def _send(
        self, method: str, url: str, body: bytes | None, headers: HTTPHeaderDict, timeout: float, stream: bool
    ) -> urllib3.BaseHTTPResponse:
        return self._pool.request(
            method,
            url,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            preload_content=not stream,
        )

    def json(self, method: str, path: str, *, timeout: float, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = orjson.loads(self.request(method, path, timeout=timeout, **kwargs).data)
        return result

    def get_json(self, path: str, *, timeout: float, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.json("GET", path, timeout=timeout, params=params)


# An API server that is down, slow or failing (502 kubernetes_api_error): when to ask again.
KUBE_RETRY_AFTER_SECONDS = 5


def api_error(status: int, data: bytes, context: str) -> KubiliticsError:
    """Map an API server error (a Status object) to the domain error of spec-decisions 2."""
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or f"Kubernetes API answered {status}")
    reason = body.get("reason", "")
    k8s_details = body.get("details") or {}
    details = {
        k: v for k, v in {"kind": k8s_details.get("kind"), "name": k8s_details.get("name")}.items() if v
    }
    if status == 404:
        return KubiliticsError(message, code="not_found", details=details)
    if status == 409:
        if "object is being deleted" in message:  # the name is held by an object still terminating
            return KubiliticsError(message, code="resource_terminating", details=details)
        code = "already_exists" if reason == "AlreadyExists" else "resource_conflict"
        return KubiliticsError(message, code=code, details=details)
    if status == 403:
        causes = k8s_details.get("causes") or []
        if any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes):
            # NamespaceLifecycle: no new content in a namespace being deleted
            return KubiliticsError(
                message, code="resource_terminating", details={**details, "reason": "NamespaceTerminating"}
            )
        if "exceeded quota" in message:  # ResourceQuota admission: the namespace's quota is used up
            quota = {**details, "reason": "ExceededQuota"}
            return KubiliticsError(message, code="quota_exceeded", details=quota)
    if status == 422 or (status == 400 and k8s_details.get("causes")):
        violations = [
            {
                "field": cause.get("field", ""),
                "reason": cause.get("reason", "FieldValueInvalid"),
                "message": cause.get("message", ""),
            }
            for cause in k8s_details.get("causes") or []
        ]
        return KubiliticsError(
            message, code="validation_failed", details={**details, "violations": violations},
            extra={"violations": violations},
        )  # fmt: skip
    if status == 400:
        return KubiliticsError(message, code="validation_failed", details=details)
    if status == 403:
        return KubiliticsError(message, code="forbidden", details=details)
    if status == 410:
        return KubiliticsError(message, code="resource_conflict", details={**details, "reason": "Expired"})
    if status == 429:
        return KubiliticsError(message, code="too_many_requests", details=details)
    return KubernetesApiError(
        f"Kubernetes API error ({status}): {message}",
        details={"context": context, "status": status},
        headers={"Retry-After": str(KUBE_RETRY_AFTER_SECONDS)} if status >= 500 else None,
    )


def connection_reason(exc: Exception) -> str:
    """Why a connection to the API server failed, in a word (`details.reason`)."""
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

    def __init__(self, region: str = "us-east-1") -> None:
        self._region = region  # for EKS tokens when the kubeconfig names no region
        self._clients: dict[str, KubeRestClient] = {}
        self._lock = threading.Lock()

    def for_context(self, context: ContextConfig) -> KubeRestClient:
        """The context's client; requests impersonate `context.acting_as` when it is set."""
        base = context.as_caller(None)
        with self._lock:
            existing = self._clients.get(context.name)
            if existing is None or existing.context != base:
                existing = self._clients[context.name] = KubeRestClient(base, self._region)
        return existing.acting_as(context.acting_as)
