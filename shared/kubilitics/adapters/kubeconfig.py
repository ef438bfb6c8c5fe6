"""Kubeconfig reading without the Kubernetes client (its import costs a cold start ~1 s).

Locally the kubeconfig is a file; in AWS it is a Secrets Manager secret holding the same YAML.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubilitics.errors import KubiliticsError


@dataclass(frozen=True)
class KubeIdentity:
    """A caller as the cluster's RBAC sees it: the user and groups a request impersonates."""

    user: str
    groups: tuple[str, ...] = ()

    def headers(self) -> list[tuple[str, str]]:
        """Impersonate-User, then one Impersonate-Group header per group (the API server reads each
        header value as one group: a comma-joined value would be a single group)."""
        return [("Impersonate-User", self.user)] + [("Impersonate-Group", g) for g in self.groups]

    def to_record(self) -> dict[str, Any]:
        return {"user": self.user, "groups": list(self.groups)}

    @classmethod
    def from_record(cls, record: Any) -> KubeIdentity | None:
        """The identity a stored request acted as; None for the service's own identity."""
        if not isinstance(record, dict) or not record.get("user"):
            return None
        return cls(str(record["user"]), tuple(str(g) for g in record.get("groups") or ()))


@dataclass(frozen=True)
class ContextConfig:
    name: str
    cluster_name: str
    server: str
    namespace: str = "default"
    user_name: str = ""
    cluster: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)
    # Who requests made with this context act as: None is the kubeconfig's own user (the service).
    acting_as: KubeIdentity | None = None

    def as_caller(self, identity: KubeIdentity | None) -> ContextConfig:
        return replace(self, acting_as=identity)

    @property
    def acting_as_record(self) -> dict[str, Any] | None:
        """The identity as stored with background work (investigations, sessions) that resumes it."""
        return self.acting_as.to_record() if self.acting_as else None


class Kubeconfig:
    def __init__(self, document: dict[str, Any], source: str):
        self.source = source
        self.current_context: str | None = document.get("current-context") or None
        clusters = {c["name"]: c.get("cluster", {}) for c in document.get("clusters") or []}
        users = {u["name"]: u.get("user", {}) or {} for u in document.get("users") or []}
        self.contexts: dict[str, ContextConfig] = {}
        for entry in document.get("contexts") or []:
            ctx = entry.get("context", {}) or {}
            cluster = clusters.get(ctx.get("cluster", ""), {})
            self.contexts[entry["name"]] = ContextConfig(
                name=entry["name"],
                cluster_name=ctx.get("cluster", ""),
                server=cluster.get("server", ""),
                namespace=ctx.get("namespace") or "default",
                user_name=ctx.get("user", ""),
                cluster=cluster,
                user=users.get(ctx.get("user", ""), {}),
            )

    @classmethod
    def from_yaml(cls, text: str, source: str) -> Kubeconfig:
        import yaml  # deferred: functions that never read a kubeconfig (the AI ones) do not pay for it

        document = yaml.safe_load(text) or {}
        if not isinstance(document, dict):
            raise ValueError(f"{source} is not a kubeconfig document")
        return cls(document, source)

    def resolve(self, name: str | None) -> ContextConfig:
        """The named context, or the current one; 401 invalid_context when it does not exist."""
        chosen = name or self.current_context
        if chosen is None and len(self.contexts) == 1:
            chosen = next(iter(self.contexts))
        if chosen is None or chosen not in self.contexts:
            raise KubiliticsError(
                f"Kubeconfig context {chosen!r} not found" if chosen else "No kubeconfig context selected",
                code="invalid_context",
                details={"context": chosen, "available_contexts": sorted(self.contexts)},
            )
        return self.contexts[chosen]


class KubeconfigSource:
    """Loads the kubeconfig once per process (from a file or a Secrets Manager secret)."""

    def __init__(self, path: Path | None = None, secret_arn: str | None = None):
        self._path = path
        self._secret_arn = secret_arn
        self._loaded: Kubeconfig | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether `get()` answers without reading a file or a secret."""
        return self._loaded is not None

    def get(self) -> Kubeconfig:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> Kubeconfig:
        if self._secret_arn:
            from kubilitics.adapters.aws import client

            text = client("secretsmanager").get_secret_value(SecretId=self._secret_arn)["SecretString"]
            return Kubeconfig.from_yaml(text, source=self._secret_arn)
        if self._path is None or not self._path.exists():
            return Kubeconfig({}, source=str(self._path))
        return Kubeconfig.from_yaml(self._path.read_text(), source=str(self._path))
