"""The ports services depend on. Adapters implement them; tests may substitute in-memory fakes."""

from __future__ import annotations

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
