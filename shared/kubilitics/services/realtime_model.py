"""The records of the real-time API: connections, watch sets, their members, per-connection pointers.

Plain data shared by the services and the store adapter (adapters.dynamodb.DynamoRealtimeStore).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubilitics.auth.tokens import Principal


@dataclass(frozen=True)
class Connection:
    """An authenticated WebSocket connection: who opened it and which kubeconfig context it uses."""

    connection_id: str
    sub: str
    jti: str
    scopes: frozenset[str]
    token_type: str
    expires_at: int  # the token's expiry: the connection's records go with it (TTL)
    context: str
    cluster_id: str | None = None
    namespace: str | None = None
    connected_at: float = 0.0
    groups: tuple[str, ...] = ()  # the token's groups: with `sub`, whom the cluster's RBAC sees
    issued_at: int = 0

    @classmethod
    def of(cls, connection_id: str, principal: Principal, context: str, now: float) -> Connection:
        return cls(
            connection_id=connection_id,
            sub=principal.sub,
            jti=principal.jti,
            scopes=principal.scopes,
            token_type=principal.token_type,
            expires_at=principal.expires_at,
            context=context,
            cluster_id=principal.cluster_id,
            namespace=principal.namespace,
            connected_at=now,
            groups=principal.groups,
            issued_at=principal.issued_at,
        )

    @property
    def principal(self) -> Principal:
        return Principal(
            sub=self.sub,
            scopes=self.scopes,
            token_type=self.token_type,
            jti=self.jti,
            expires_at=self.expires_at,
            cluster_id=self.cluster_id,
            namespace=self.namespace,
            groups=self.groups,
            issued_at=self.issued_at,
        )


@dataclass(frozen=True)
class WatchSet:
    """What one Kubernetes watch serves: (context, kind, namespace, label selector) and where it is.

    `checkpoint_rv`: every subscriber the relay knew when it wrote the checkpoint has been sent every
    event up to this resourceVersion. `generation` changes with every new subscription (see
    `RealtimeStore.delete_set_if_unused`).
    """

    context: str
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    namespace: str | None
    label_selector: str | None
    checkpoint_rv: str = ""
    checkpoint_at: float = 0.0
    generation: int = 0

    @property
    def key(self) -> str:
        parts = (
            self.context,
            self.group,
            self.version,
            self.plural,
            self.namespace or "",
            self.label_selector or "",
        )
        return "|".join(quote(part, safe="") for part in parts)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def describe(self) -> dict[str, Any]:
        return {
            "resource_kind": self.kind,
            "api_version": self.api_version,
            "namespace": self.namespace,
            "label_selector": self.label_selector,
        }


@dataclass(frozen=True)
class Member:
    """One subscription as the relay sees it: deliver events after `from_rv` to this connection."""

    connection_id: str
    subscription_id: str
    from_rv: str
    expires_at: int


@dataclass(frozen=True)
class Pointer:
    """What a connection has open, by name: `sub#<id>` (watch or live logs) or `shell`."""

    name: str
    stream: str  # "watch" | "logs" | "shell"
    set_key: str | None = None
    session_id: str | None = None
    sub: str | None = None  # who owns the session (to give the concurrency slot back)


def subscription_pointer(subscription_id: str) -> str:
    return f"sub#{subscription_id}"


SHELL_POINTER = "shell"


def rv_number(resource_version: str | None) -> int:
    """resourceVersions are etcd revisions in every API server in use; -1 when not a number."""
    try:
        return int(resource_version or "")
    except ValueError:
        return -1
