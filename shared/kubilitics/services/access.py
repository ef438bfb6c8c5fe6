"""What the cluster's RBAC lets a caller read, for data gathered by the service's own identity.

The insight scanner and the watch relay run as the service (one scan, one watch per watch set, for
every user); before a caller sees an insight or joins a watch set, the cluster is asked whether that
caller may read that kind in that namespace (a SelfSubjectAccessReview made as the caller). Answers
are cached per (context, caller, verb, kind, namespace) for `ttl_seconds` (10 s by default, at most
60: the longest a RoleBinding removed still shows its insights), at most MAX_ENTRIES of them.

In `service` mode (a context without an impersonated identity) every check passes: the service's
rights are the caller's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubilitics.errors import Forbidden, KubiliticsError
from kubilitics.ports import Clock, KubernetesPort

MAX_ENTRIES = 4096
# Reviews asked at once when a listing needs several (one per kind and namespace seen).
PARALLEL_REVIEWS = 8


class AccessReviews:
    def __init__(self, kube: KubernetesPort, clock: Clock, ttl_seconds: float = 10.0):
        self._kube = kube
        self._clock = clock
        self._ttl = ttl_seconds
        self._answers: OrderedDict[tuple[Any, ...], tuple[float, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def may(self, context: Any, verb: str, kind: str, namespace: str | None) -> bool:
        """Whether the context's caller may `verb` `kind` in `namespace` (None: in every namespace)."""
        if context.acting_as is None:
            return True
        rtype = self._kube.resource_type(context, kind)
        ns = namespace if rtype.namespaced else None
        key = (context.name, context.acting_as, verb, rtype.group, rtype.plural, ns)
        now = self._clock.now()
        with self._lock:
            cached = self._answers.get(key)
            if cached and cached[0] > now:
                self._answers.move_to_end(key)
                return cached[1]
        allowed = self._kube.may(context, verb, rtype, ns)
        with self._lock:
            self._answers[key] = (now + self._ttl, allowed)
            self._answers.move_to_end(key)
            while len(self._answers) > MAX_ENTRIES:
                self._answers.popitem(last=False)
        return allowed

    def may_read(self, context: Any, kind: str, namespace: str | None) -> bool:
        """`list` in the namespace, or across the cluster (which covers every namespace). A kind the
        cluster no longer serves (a record about a removed CRD) is read by nobody."""
        try:
            if self.may(context, "list", kind, None):
                return True
            return namespace is not None and self.may(context, "list", kind, namespace)
        except KubiliticsError as exc:
            if exc.code != "invalid_resource_kind":
                raise
            return False

    def require(self, context: Any, verb: str, kind: str, namespace: str | None) -> None:
        """403 forbidden, as the API server would answer, unless the caller may."""
        if not self.may(context, verb, kind, namespace):
            where = f" in namespace {namespace!r}" if namespace else " at the cluster scope"
            raise Forbidden(
                f"{context.acting_as.user} may not {verb} {kind}{where}",
                details={"verb": verb, "kind": kind, "namespace": namespace},
            )

    def visible(
        self,
        context: Any,
        records: list[dict[str, Any]],
        subjects: Callable[[dict[str, Any]], set[tuple[str, str | None]]],
    ) -> list[dict[str, Any]]:
        """The records the caller may see: they may read every (kind, namespace) the record is about."""
        if context is None or context.acting_as is None:
            return records
        about = [subjects(r) for r in records]
        readable = self.readable(context, (p for pairs in about for p in pairs))
        return [r for r, pairs in zip(records, about, strict=True) if pairs <= readable]

    def readable(self, context: Any, wanted: Iterable[tuple[str, str | None]]) -> set[tuple[str, str | None]]:
        """Which of the (kind, namespace) pairs the caller may read (reviews asked in parallel)."""
        pairs = list(dict.fromkeys(wanted))
        if context.acting_as is None:
            return set(pairs)
        if len(pairs) <= 1:
            return {p for p in pairs if self.may_read(context, *p)}
        with ThreadPoolExecutor(max_workers=min(PARALLEL_REVIEWS, len(pairs))) as pool:
            answers = list(pool.map(lambda p: self.may_read(context, *p), pairs))
        return {p for p, ok in zip(pairs, answers, strict=True) if ok}


def resource_subject(record: dict[str, Any]) -> set[tuple[str, str | None]]:
    """What an investigation or an action is about: its resource's (kind, namespace)."""
    resource = record.get("resource") or {}
    if resource.get("kind") == "Cluster":  # a cluster investigation reads every node: so must its reader
        return {("Node", None)}
    return {(str(resource.get("kind") or "Pod"), resource.get("namespace"))}
