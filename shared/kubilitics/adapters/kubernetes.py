"""The Kubernetes gateway: every cluster call of the product goes through here.

REST calls are raw JSON over urllib3 (KubeRestClient) for speed; exec speaks the API server's
WebSocket channel protocol directly. Discovery (which kinds the cluster serves, CRDs included) is
cached per context.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from kubilitics.adapters.kube_rest import KubeRestClient, KubeRestClients
from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.errors import KubiliticsError

DISCOVERY_TTL_SECONDS = 300
# A kind not found in a cache at least this old triggers one fresh discovery (new CRDs).
DISCOVERY_REFRESH_AFTER_SECONDS = 5


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    verbs: tuple[str, ...]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
        if subresource:
            base += f"/{subresource}"
        return base

    def matches(self, text: str) -> bool:
        wanted = text.lower()
        return wanted in (self.kind.lower(), self.plural, self.singular, *self.short_names)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


class KubernetesGateway:
    def __init__(self, clients: KubeRestClients, timeout: float):
        self._clients = clients
        self.timeout = timeout
        self._discovery: dict[str, tuple[float, list[ResourceType]]] = {}
        self._lock = threading.Lock()

    def client(self, context: ContextConfig) -> KubeRestClient:
        return self._clients.for_context(context)

    # ---- discovery -------------------------------------------------------------------------

    def resource_types(
        self, context: ContextConfig, *, max_age: float = DISCOVERY_TTL_SECONDS
    ) -> list[ResourceType]:
        with self._lock:
            cached = self._discovery.get(context.name)
        if cached and time.monotonic() - cached[0] < max_age:
            return cached[1]
        types = self._discover(context)
        with self._lock:
            self._discovery[context.name] = (time.monotonic(), types)
        return types

    def _discover(self, context: ContextConfig) -> list[ResourceType]:
        client = self.client(context)
        groups = client.get_json("/apis", timeout=self.timeout).get("groups", [])
        paths = [("", "v1", "/api/v1")] + [
            (g["name"], g["preferredVersion"]["version"], f"/apis/{g['preferredVersion']['groupVersion']}")
            for g in groups
            if g.get("preferredVersion")
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:
            documents = list(pool.map(lambda p: self._group_resources(client, p[2]), paths))
        types: list[ResourceType] = []
        for (group, version, _), resources in zip(paths, documents, strict=True):
            for r in resources:
                if "/" in r["name"]:
                    continue  # subresources (pods/log, deployments/scale) are not kinds
                types.append(
                    ResourceType(
                        group=group,
                        version=version,
                        kind=r["kind"],
                        plural=r["name"],
                        singular=(r.get("singularName") or r["kind"]).lower(),
                        short_names=tuple(s.lower() for s in r.get("shortNames") or ()),
                        namespaced=bool(r.get("namespaced")),
                        verbs=tuple(r.get("verbs") or ()),
                    )
                )
        return types

    def _group_resources(self, client: KubeRestClient, path: str) -> list[dict[str, Any]]:
        try:
            resources: list[dict[str, Any]] = client.get_json(path, timeout=self.timeout).get("resources", [])
        except KubiliticsError:
            return []  # an aggregated API that is down (e.g. metrics) must not hide every other kind
        return resources

    def resource_type(self, context: ContextConfig, kind: str) -> ResourceType:
        """The kind by name, plural or short name (case-insensitive); 400 invalid_resource_kind."""
        for max_age in (DISCOVERY_TTL_SECONDS, DISCOVERY_REFRESH_AFTER_SECONDS):
            found = next((t for t in self.resource_types(context, max_age=max_age) if t.matches(kind)), None)
            if found:
                return found
        valid = sorted({t.kind for t in self.resource_types(context)})
        raise KubiliticsError(
            f"Unknown Kubernetes kind: {kind}",
            code="invalid_resource_kind",
            details={"kind": kind, "valid_kinds": valid},
        )

    # ---- objects ---------------------------------------------------------------------------

    def list_objects(
        self,
        context: ContextConfig,
        rtype: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        params = {
            "labelSelector": label_selector or None,
            "fieldSelector": field_selector or None,
            "limit": limit,
            "continue": continue_token or None,
        }
        return self.client(context).json(
            "GET", rtype.path(namespace), timeout=timeout or self.timeout, params=params
        )

    def get(
        self, context: ContextConfig, rtype: ResourceType, namespace: str | None, name: str
    ) -> dict[str, Any]:
        return self.client(context).json("GET", rtype.path(namespace, name), timeout=self.timeout)

    def create(
        self,
        context: ContextConfig,
        rtype: ResourceType,
        namespace: str | None,
        body: dict[str, Any],
        dry_run: bool,
    ) -> dict[str, Any]:
        return self.client(context).json(
            "POST",
            rtype.path(namespace),
            timeout=self.timeout,
            params={"dryRun": "All" if dry_run else None, "fieldValidation": "Strict"},
            body=json.dumps(body).encode(),
        )

    def replace(
        self,
        context: ContextConfig,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        dry_run: bool = False,
    ) -> dict[str, Any]:
        return self.client(context).json(
            "PUT",
            rtype.path(namespace, name),
            timeout=self.timeout,
            params={"dryRun": "All" if dry_run else None, "fieldValidation": "Strict"},
            body=json.dumps(body).encode(),
        )

    def patch(
        self,
        context: ContextConfig,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        patch_type: str,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        content_types = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }
        return self.client(context).json(
            "PATCH",
            rtype.path(namespace, name),
            timeout=self.timeout,
            params={"dryRun": "All" if dry_run else None},
            body=json.dumps(body).encode(),
            content_type=content_types[patch_type],
        )

    def delete(
        self,
        context: ContextConfig,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        propagation: str = "Background",
        dry_run: bool = False,
    ) -> dict[str, Any]:
        options: dict[str, Any] = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": propagation,
        }
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if dry_run:
            options["dryRun"] = ["All"]
        return self.client(context).json(
            "DELETE", rtype.path(namespace, name), timeout=self.timeout, body=json.dumps(options).encode()
        )

    def get_path(
        self,
        context: ContextConfig,
        path: str,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        return self.client(context).get_json(path, timeout=timeout or self.timeout, params=params)

    # ---- pods: logs and exec ---------------------------------------------------------------

    def pod_logs(self, context: ContextConfig, namespace: str, name: str, params: dict[str, Any]) -> str:
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/log"
        response = self.client(context).request(
            "GET", path, timeout=self.timeout, params=params, accept="*/*"
        )
        return response.data.decode("utf-8", errors="replace")

    def follow_pod_logs(
        self,
        context: ContextConfig,
        namespace: str,
        name: str,
        params: dict[str, Any],
        read_timeout: float = 3600,
    ) -> Iterator[str]:
        """Lines as the kubelet writes them, until the container stops or the caller stops reading."""
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/log"
        response = self.client(context).request(
            "GET", path, timeout=read_timeout, params={**params, "follow": "true"}, accept="*/*", stream=True
        )
        try:
            pending = b""
            for chunk in response.stream(4096, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
            if pending:
                yield pending.decode("utf-8", errors="replace")
        finally:
            response.release_conn()

    def exec(
        self,
        context: ContextConfig,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        timeout: float,
    ) -> ExecResult:
        """Run a command (no TTY, no stdin) and collect its output and exit code."""
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        status: dict[str, Any] = {}
        with self.open_exec(context, namespace, pod, container, command, stdin=False, tty=False) as socket:
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KubiliticsError(
                        f"Command did not finish within {timeout:g} s",
                        code="exec_failed",
                        details={"reason": "timeout", "timeout_seconds": timeout},
                        extra={"exit_code": None, "stdout": b"".join(stdout).decode(errors="replace"),
                               "stderr": b"".join(stderr).decode(errors="replace"), "pod": pod,
                               "container": container},
                    )  # fmt: skip
                try:
                    frame = socket.recv(timeout=remaining)
                except TimeoutError:
                    continue
                except Exception:  # the server closed the stream: the command is over
                    break
                if not isinstance(frame, bytes) or not frame:
                    continue
                channel, payload = frame[0], frame[1:]
                if channel == 1:
                    stdout.append(payload)
                elif channel == 2:
                    stderr.append(payload)
                elif channel == 3 and payload:
                    status = json.loads(payload)
        return ExecResult(exec_exit_code(status), b"".join(stdout).decode(errors="replace"),
                          b"".join(stderr).decode(errors="replace"))  # fmt: skip

    def open_exec(
        self,
        context: ContextConfig,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        *,
        stdin: bool,
        tty: bool,
    ) -> Any:
        """An exec WebSocket speaking `v4.channel.k8s.io` (channel byte + payload frames)."""
        from websockets.sync.client import connect

        client = self.client(context)
        query = urlencode(
            [("command", part) for part in command]
            + [("container", container), ("stdout", "true"), ("stderr", "false" if tty else "true"),
               ("stdin", "true" if stdin else "false"), ("tty", "true" if tty else "false")]
        )  # fmt: skip
        base = context.server.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/exec"
        try:
            return connect(
                f"{base}{path}?{query}",
                ssl=client.ssl_context if base.startswith("wss://") else None,
                subprotocols=["v4.channel.k8s.io"],  # type: ignore[list-item]
                additional_headers=client.auth_headers,
                open_timeout=self.timeout,
                max_size=None,
            )
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            body = getattr(getattr(exc, "response", None), "body", b"") or b""
            if status:
                from kubilitics.adapters.kube_rest import api_error

                raise api_error(status, body, context.name) from exc
            raise KubiliticsError(
                f"Could not open an exec stream: {type(exc).__name__}", code="kubernetes_api_error",
                details={"context": context.name},
            ) from exc  # fmt: skip


def exec_exit_code(status: dict[str, Any]) -> int:
    """The exit code from the exec status frame (channel 3)."""
    if not status or status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", "1"))
            except ValueError:
                return 1
    return 1
