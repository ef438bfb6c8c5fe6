"""Whose rights a Kubernetes request uses: the caller's (impersonation) or the service's own.

`impersonate` mode (the default): every request made for a caller carries `Impersonate-User:
<prefix><sub>` and one `Impersonate-Group: <prefix><group>` per group of the token, plus
`<prefix>authenticated`, so the cluster's RBAC decides what that caller may see and do. The prefix
(`kubilitics:` by default) keeps every name a token can produce out of the `system:` namespace:
no token can become `system:admin` or join `system:masters`. The service's own identity then needs
only the right to impersonate (deploy/rbac/), plus read access for the shared machinery (the insight
scanner and the watch relay run as the service and filter what each caller sees, services/access.py).

`service` mode: requests use the kubeconfig's own identity (single-tenant setups); scopes are then
the only authorization. Modes are set per kubeconfig context.

The `admin` scope is about this API (AI configuration, other users' usage): it never bypasses the
cluster's RBAC in `impersonate` mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from kubilitics.adapters.kubeconfig import ContextConfig, KubeIdentity
from kubilitics.auth.tokens import Principal
from kubilitics.errors import Unauthorized

Mode = Literal["impersonate", "service"]
MODES: tuple[Mode, ...] = ("impersonate", "service")
AUTHENTICATED_GROUP = "authenticated"
# The group of the local server's development admin token. The bundled test cluster binds
# `kubilitics:cluster-admins` to the cluster-admin ClusterRole; on another cluster, bind it yourself
# (or run that context in service mode).
DEVELOPMENT_ADMIN_GROUP = "cluster-admins"


def _printable(text: str) -> bool:
    # Header values: printable ASCII only (a CR/LF would split headers; http.client sends latin-1).
    return all(" " <= ch <= "~" for ch in text)


@dataclass(frozen=True)
class AuthorizationPolicy:
    default_mode: Mode = "impersonate"
    modes: Mapping[str, Mode] = field(default_factory=dict)  # per kubeconfig context name
    prefix: str = "kubilitics:"

    def mode(self, context_name: str) -> Mode:
        return self.modes.get(context_name, self.default_mode)

    def identity(self, principal: Principal) -> KubeIdentity:
        """The Kubernetes user and groups of a caller (401 when the token's names cannot be sent)."""
        names = (principal.sub, *principal.groups)
        if not all(_printable(n) for n in names):
            raise Unauthorized(
                "The token's subject or groups contain characters a Kubernetes user name cannot have"
            )
        groups = tuple(dict.fromkeys(self.prefix + g for g in (*principal.groups, AUTHENTICATED_GROUP)))
        return KubeIdentity(self.prefix + principal.sub, groups)

    def for_caller(self, context: ContextConfig, principal: Principal) -> ContextConfig:
        """The context as this caller reaches it: impersonating them, or as the service."""
        if self.mode(context.name) == "service":
            return context.as_caller(None)
        return context.as_caller(self.identity(principal))
