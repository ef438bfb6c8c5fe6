"""The ports services depend on. Adapters implement them; tests may substitute in-memory fakes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class RateLimitStore(Protocol):
    def increment_window(self, key: str, expires_at: int) -> int:
        """Add one to the counter `key` atomically and return the new value."""
        ...

    def acquire_slot(self, key: str, limit: int, lease_until: int) -> bool:
        """Take one of `limit` concurrency slots atomically; False when all are taken."""
        ...

    def release_slot(self, key: str) -> None: ...

    def reset_stale_slots(self, key: str, now: int, lease_until: int) -> bool:
        """Start `key` afresh at one holder if its lease ran out (leaked slots); True if reset."""
        ...


class RevocationStore(Protocol):
    def is_revoked(self, jti: str) -> bool: ...

    def revoke(self, jti: str, expires_at: int, revoked_by: str) -> None: ...


class HealthProbe(Protocol):
    """Something /health can check: returns a dict of facts or raises."""

    def __call__(self) -> dict[str, Any]: ...


class ClusterInfoSource(Protocol):
    """What health and version need from a Kubernetes context."""

    def version(self, context: str | None, timeout: float) -> dict[str, Any]: ...

    def node_count(self, context: str | None, timeout: float) -> int: ...

    def cluster_name(self, context: str | None) -> str | None: ...


class KubernetesPort(Protocol):
    """What services need from a cluster (implemented by adapters.kubernetes.KubernetesGateway).

    `context` is a resolved kubeconfig context (adapters.kubeconfig.ContextConfig); `rtype` a
    discovered kind (adapters.kubernetes.ResourceType). Objects are raw Kubernetes JSON (dicts).
    """

    timeout: float

    def resource_types(self, context: Any, *, max_age: float = ...) -> list[Any]: ...

    def resource_type(self, context: Any, kind: str) -> Any: ...

    def list_objects(
        self,
        context: Any,
        rtype: Any,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]: ...

    def get(self, context: Any, rtype: Any, namespace: str | None, name: str) -> dict[str, Any]: ...

    def create(
        self, context: Any, rtype: Any, namespace: str | None, body: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]: ...

    def replace(
        self,
        context: Any,
        rtype: Any,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        dry_run: bool = False,
    ) -> dict[str, Any]: ...

    def patch(
        self,
        context: Any,
        rtype: Any,
        namespace: str | None,
        name: str,
        body: Any,
        patch_type: str,
        dry_run: bool = False,
    ) -> dict[str, Any]: ...

    def delete(
        self,
        context: Any,
        rtype: Any,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        propagation: str = "Background",
        dry_run: bool = False,
    ) -> dict[str, Any]: ...

    def get_path(
        self, context: Any, path: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]: ...

    def pod_logs(self, context: Any, namespace: str, name: str, params: dict[str, Any]) -> str: ...

    def follow_pod_logs(
        self, context: Any, namespace: str, name: str, params: dict[str, Any], read_timeout: float = ...
    ) -> Iterator[str]: ...

    def exec(
        self, context: Any, namespace: str, pod: str, container: str, command: list[str], timeout: float
    ) -> Any: ...
