"""Kubernetes API paths built from names: each name is one quoted path segment, never more.

A name comes from a caller, a stored record or the model's tool input. Quoted with `safe=''`, a `/`
cannot add a segment (`a/b` is `a%2Fb`); "." and ".." are refused, because quoting leaves them as
they are and the path would be resolved as a relative one (`pods/..` is the namespace, and
`nodes/../../api/v1/namespaces/kube-system/secrets` another API altogether). An empty name is refused
too: `pods/` lists what `pods/<name>` reads one of.
"""

from __future__ import annotations

from urllib.parse import quote

from kubilitics.errors import KubiliticsError


def segment(name: str) -> str:
    """`name` as one path segment; 400 invalid_parameter for "", "." and ".."."""
    if not isinstance(name, str) or name in ("", ".", ".."):
        raise KubiliticsError(
            f"{name!r} is not a valid name", code="invalid_parameter", details={"value": name}
        )
    return quote(name, safe="")
