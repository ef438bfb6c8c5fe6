"""Resources (reference section 3): list, create, update and delete any kind the cluster serves.

Objects stay raw Kubernetes JSON from end to end (camelCase, every field), so what a client reads
it can send back; a listed object is not even parsed, its text passes through (kubilitics.rawjson).
Lists page with the API server's own limit/continue (spec-decisions 4): one consistent snapshot per
request, skipped and counted with table rows (no object bodies), so `total_count` and `has_more` are
exact without holding the whole list. Sorting has to see every object; it keeps only the best
`offset + limit` of them while reading page by page, reading only their names and creation times.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubilitics import rawjson
from kubilitics.errors import KubernetesApiError, KubiliticsError
from kubilitics.ports import KubernetesPort
from kubilitics.rawjson import RawJSON, without_managed_fields
from kubilitics.services.selectors import (
    is_dns1123_label,
    is_dns1123_subdomain,
    validate_field_selector,
    validate_label_selector,
)

# Threads kept between requests for the counts made beside a page: a thread started per request
# waits for the GIL while the page's answer is read (~1 ms here).
_COUNTING = ThreadPoolExecutor(max_workers=8, thread_name_prefix="list-count")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# A sorted list holds the best offset + limit objects while it reads: this bounds that (and the rows
# skipped by an unsorted one). Deeper pages: narrow the list with a namespace or selectors.
MAX_OFFSET = 10_000
SORT_PAGE = 500  # objects per API server page while reading everything to sort it
ROWS_PAGE = 5000  # table rows per page when only skipping or counting (~100 bytes a row)
CLUSTER_SCOPED_NAMESPACE = "_"  # the namespace path segment of cluster-scoped kinds
PATCH_TYPES = {"merge_patch": "merge", "strategic_merge_patch": "strategic"}
# A fresh discovery when a group-qualified kind is not in the cache (new CRDs).
DISCOVERY_REFRESH_SECONDS = 5


@dataclass(frozen=True)
class ListQuery:
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    sort_by: str | None = None  # name | created | age
    sort_order: str | None = None  # asc | desc
    show_managed_fields: bool = False  # kubectl's default: left out


@dataclass(frozen=True)
class Page:
    items: list[RawJSON]
    total: int


def _count_all(lister: Callable[..., dict[str, Any]]) -> int:
    """Every matching object, in one unpaged call (the API server answers it from its cache)."""
    return _rows(lister(limit=None, continue_token=None, rows_only=True))


def _walk_rows(
    lister: Callable[..., dict[str, Any]], token: str | None, most: int | None = None
) -> tuple[int, str | None]:
    """Rows from `token` on (at most `most`), one snapshot: (rows seen, continue token or None at the end)."""
    seen = 0
    while most is None or seen < most:
        chunk = lister(
            limit=min(most - seen, ROWS_PAGE) if most else ROWS_PAGE, continue_token=token, rows_only=True
        )
        seen += _rows(chunk)
        token = chunk["metadata"].get("continue") or None
        if token is None:
            break
    return seen, token


def _rows(listed: dict[str, Any]) -> int:
    """Objects in a list response: a Table's rows, or the items when the server sent a plain list."""
    return len(listed.get("rows") or listed.get("items") or [])


def _violation(field: str, reason: str, message: str) -> KubiliticsError:
    violations = [{"field": field, "reason": reason, "message": message}]
    return KubiliticsError(
        message,
        code="validation_failed",
        details={"violations": violations},
        extra={"violations": violations},
    )


def _invalid_parameter(parameter: str, message: str, **details: Any) -> KubiliticsError:
    return KubiliticsError(message, code="invalid_parameter", details={"parameter": parameter, **details})


def sort_key(sort_by: str | None) -> Callable[[dict[str, Any]], tuple[str, ...]]:
    """The key of an object's identity (rawjson.identity) in the wanted order."""
    if sort_by is None:  # the API server's own order
        return lambda m: (m.get("namespace", ""), m.get("name", ""))
    if sort_by == "name":
        return lambda m: (m.get("name", ""), m.get("namespace", ""))
    # RFC 3339 UTC timestamps order as strings; name and namespace make the order total.
    return lambda m: (m.get("creationTimestamp", ""), m.get("namespace", ""), m.get("name", ""))


class _Ranked:
    """A kept object in the sort: `a < b` when a comes after b in the wanted order (is worse)."""

    __slots__ = ("descending", "key", "text")

    def __init__(self, key: tuple[str, ...], descending: bool):
        self.key = key
        self.descending = descending
        self.text = RawJSON()

    def __lt__(self, other: _Ranked) -> bool:
        # Keys are unique (they end with namespace and name), so there are no ties to break.
        return self.key < other.key if self.descending else self.key > other.key


class ResourcesService:
    def __init__(self, kube: KubernetesPort):
        self._kube = kube

    # ---- kinds -----------------------------------------------------------------------------

    def resolve(self, context: Any, kind: str, api_version: str | None = None) -> Any:
        """The kind by name, plural or short name, optionally group-qualified (`deployments.apps`).

        Several groups may serve one kind name (Event, CRDs); a manifest's apiVersion picks among them.
        """
        if "." in kind:
            name, group = kind.split(".", 1)
            found = _qualified(self._kube.resource_types(context), name, group) or _qualified(
                self._kube.resource_types(context, max_age=DISCOVERY_REFRESH_SECONDS), name, group
            )
            if found:
                return found
        rtype = self._kube.resource_type(context, kind)  # 400 invalid_resource_kind when unknown
        if api_version and api_version != rtype.api_version:
            same_kind = (
                t
                for t in self._kube.resource_types(context)
                if t.api_version == api_version and t.matches(kind)
            )
            rtype = next(same_kind, rtype)
        return rtype

    @staticmethod
    def _require_verb(rtype: Any, verb: str) -> None:
        if verb not in rtype.verbs:
            raise KubiliticsError(
                f"{rtype.kind} does not support {verb}",
                code="method_not_allowed",
                details={"kind": rtype.kind, "supported_verbs": list(rtype.verbs)},
            )

    # ---- list ------------------------------------------------------------------------------

    def list_page(self, context: Any, kind: str, query: ListQuery) -> dict[str, Any]:
        if not 0 <= query.offset <= MAX_OFFSET:
            raise _invalid_parameter(
                "offset",
                f"offset must be between 0 and {MAX_OFFSET}; narrow the list with a namespace or selectors",
                value=query.offset,
                max_offset=MAX_OFFSET,
            )
        rtype = self.resolve(context, kind)
        self._require_verb(rtype, "list")
        # Like kubectl, a namespace given for a cluster-scoped kind is ignored; `namespace=` is all.
        namespace = (query.namespace or None) if rtype.namespaced else None
        if namespace is not None:
            self._check_namespace("namespace", namespace)
        labels = validate_label_selector(query.label_selector)
        fields = validate_field_selector(query.field_selector)
        lister = self._lister(context, rtype, namespace, labels, fields)
        try:
            # sort_order=asc alone is the API server's order already; desc alone reverses it.
            if query.sort_by or query.sort_order == "desc":
                page = self._sorted(lister, query)
            else:
                page = self._paged(lister, query.limit, query.offset, selective=bool(labels or fields))
        except KubiliticsError as exc:
            raise self._selector_error(exc, labels, fields) from exc
        if page.total == 0 and namespace is not None:
            self._require_namespace(context, namespace)
        return {
            "kind": rtype.kind,
            "api_version": rtype.api_version,
            "total_count": page.total,
            "page": {
                "limit": query.limit,
                "offset": query.offset,
                "returned": len(page.items),
                "has_more": query.offset + len(page.items) < page.total,
            },
            "items": page.items
            if query.show_managed_fields
            else [without_managed_fields(i) for i in page.items],
        }

    def _lister(
        self, context: Any, rtype: Any, namespace: str | None, labels: str | None, fields: str | None
    ) -> Callable[..., dict[str, Any]]:
        def lister(*, limit: int, continue_token: str | None, rows_only: bool = False) -> dict[str, Any]:
            return self._kube.list_objects(
                context,
                rtype,
                namespace=namespace,
                label_selector=labels,
                field_selector=fields,
                limit=limit,
                continue_token=continue_token,
                rows_only=rows_only,
                raw_items=not rows_only,  # objects pass through as the API server's JSON text, typed
            )

        return lister

    @staticmethod
    def _paged(lister: Callable[..., dict[str, Any]], limit: int, offset: int, selective: bool) -> Page:
        """API server order. Skipping continues the first call's snapshot, so offsets are exact.

        Counting: without selectors the API server counts what follows a page (remainingItemCount).
        With selectors it does not, so every matching row is listed, while the page is read, in one
        call the server answers from its watch cache (a table without objects, ~100 bytes a row).
        Continuing the page's snapshot instead would be read from etcd: ~10x slower on a big
        namespace. That count is of the same moment as the page, not of the same snapshot.
        """
        counting = _COUNTING.submit(_count_all, lister) if selective and offset == 0 else None
        try:
            skipped, token = _walk_rows(lister, None, most=offset) if offset else (0, "")
            items: list[RawJSON] = []
            remaining: int | None = None
            # A server may answer with fewer objects than asked for and a continue token: ask again.
            while len(items) < limit and token is not None:
                page = lister(limit=limit - len(items), continue_token=token or None)
                items.extend(page["items"])
                token = page["metadata"].get("continue") or None
                remaining = page["metadata"].get("remainingItemCount")
            if token is None:
                total = skipped + len(items)
            elif remaining is not None:
                total = skipped + len(items) + int(remaining)
            elif counting is not None:  # more follow (a continue token): at least one more
                total = max(counting.result(), len(items) + 1)
            else:
                total = skipped + len(items) + _walk_rows(lister, token)[0]
        finally:
            if counting is not None:
                counting.cancel()  # a count nobody needs (the page was all) is not waited for
        return Page(items, total)

    @staticmethod
    def _sorted(lister: Callable[..., dict[str, Any]], query: ListQuery) -> Page:
        # "age" ascending is the youngest first.
        descending = (query.sort_order == "desc") != (query.sort_by == "age")
        key = sort_key(query.sort_by)
        keep = query.offset + query.limit
        # Only the best offset+limit objects are held, never the whole list, and as JSON text: a
        # parsed pod takes ~5x the memory, and a deep offset keeps thousands of them. Of each object
        # only name, namespace and creation time are read.
        best: list[_Ranked] = []  # a heap, the worst kept object on top
        seen = 0
        token: str | None = None
        while True:
            page = lister(limit=SORT_PAGE, continue_token=token)
            for item in page["items"]:
                ranked = _Ranked(key(rawjson.identity(item)), descending)
                if len(best) < keep:
                    ranked.text = item
                    heapq.heappush(best, ranked)
                elif best[0] < ranked:
                    ranked.text = item
                    heapq.heapreplace(best, ranked)
            seen += len(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                break
        ordered = sorted(best, reverse=True)[query.offset :]
        return Page([ranked.text for ranked in ordered], seen)

    @staticmethod
    def _selector_error(exc: KubiliticsError, labels: str | None, fields: str | None) -> KubiliticsError:
        """A 400 on a list we built ourselves can only be about a selector the server refused.

        Our syntax check mirrors the server's, so in practice this is a field the kind does not
        support (`field label not supported: ...`).
        """
        if exc.code != "validation_failed" or not (labels or fields):
            return exc
        code, selector = ("invalid_field_selector", fields) if fields else ("invalid_label_selector", labels)
        return KubiliticsError(
            f"The API server refused the selector {selector!r}: {exc.message}",
            code=code,
            details={"selector": selector, "problem": exc.message},
        )

    def _require_namespace(self, context: Any, namespace: str) -> None:
        """An empty list from a namespace that does not exist is a typo worth a 404."""
        try:
            self._kube.get(context, self._kube.resource_type(context, "Namespace"), None, namespace)
        except KubiliticsError as exc:
            if exc.code == "not_found":
                raise KubiliticsError(
                    f"Namespace {namespace} not found",
                    code="not_found",
                    details={"namespace": namespace},
                    extra={"resource_kind": "Namespace"},
                ) from exc
            # Not allowed to read namespaces (RBAC): an empty list is all that can be said.

    # ---- writes ----------------------------------------------------------------------------

    def create(
        self, context: Any, kind: str, manifest: dict[str, Any], *, default_namespace: str, dry_run: bool
    ) -> dict[str, Any]:
        rtype = self.resolve(context, kind, _api_version(manifest))
        self._require_verb(rtype, "create")
        body = self._typed(rtype, manifest)
        metadata = body["metadata"]
        name = metadata.get("name")
        if name is None and not metadata.get("generateName"):
            raise KubiliticsError(
                "Required field missing: metadata.name",
                code="missing_required_field",
                details={"field": "metadata.name"},
            )
        if name is not None and not (isinstance(name, str) and is_dns1123_subdomain(name)):
            raise _violation(
                "metadata.name",
                "invalid_dns1123",
                f"Name {name!r} must be a valid DNS-1123 subdomain: lowercase alphanumerics, '-' or '.', "
                "starting and ending with an alphanumeric, at most 253 characters",
            )
        namespace = None
        if rtype.namespaced:
            namespace = metadata.get("namespace") or default_namespace
            if not (isinstance(namespace, str) and is_dns1123_label(namespace)):
                raise _violation(
                    "metadata.namespace",
                    "invalid_dns1123_label",
                    f"Namespace {namespace!r} is not a valid name",
                )
            metadata["namespace"] = namespace
        try:
            return self._kube.create(context, rtype, namespace, body, dry_run)
        except KubiliticsError as exc:
            if exc.code == "not_found" and namespace is not None:
                raise KubiliticsError(
                    f"Namespace {namespace} not found",
                    code="not_found",
                    details={"namespace": namespace},
                    extra={"resource_kind": "Namespace"},
                ) from exc
            raise

    def update(
        self,
        context: Any,
        kind: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        strategy: str = "replace",
    ) -> dict[str, Any]:
        replacing = strategy == "replace"
        rtype = self.resolve(context, kind, _api_version(body) if replacing else None)
        self._require_verb(rtype, "update" if replacing else "patch")
        target = self._target(rtype, namespace, name)
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise _violation("metadata", "invalid_type", "metadata must be an object")
        for field, expected in (("name", name), ("namespace", target)):
            given = (metadata or {}).get(field)
            if given is not None and expected is not None and given != expected:
                raise _violation(
                    f"metadata.{field}",
                    "path_mismatch",
                    f"metadata.{field} {given!r} does not match {expected!r} in the path",
                )
        if not replacing and "kind" in body and body["kind"] != rtype.kind:
            raise self._kind_mismatch(rtype, body["kind"])
        typed = self._typed(rtype, body) if replacing else body
        if replacing:
            typed["metadata"]["name"] = name
            if target is not None:
                typed["metadata"]["namespace"] = target
        try:
            if replacing:
                return self._kube.replace(context, rtype, target, name, typed)
            return self._kube.patch(context, rtype, target, name, body, PATCH_TYPES[strategy])
        except KubernetesApiError as exc:
            if exc.details.get("status") == 415:  # custom resources take no strategic merge patch
                raise _invalid_parameter(
                    "patch_strategy",
                    f"{rtype.kind} does not support strategic_merge_patch (custom resources do not); "
                    "use merge_patch",
                    kind=rtype.kind,
                ) from exc
            raise
        except KubiliticsError as exc:
            if exc.code == "not_found":
                raise self._not_found(rtype, target, name) from exc
            raise

    def delete(
        self,
        context: Any,
        kind: str,
        namespace: str,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        rtype = self.resolve(context, kind)
        self._require_verb(rtype, "delete")
        target = self._target(rtype, namespace, name)
        grace = 0 if force else grace_period_seconds
        try:
            return self._kube.delete(context, rtype, target, name, grace_period_seconds=grace)
        except KubiliticsError as exc:
            if exc.code == "not_found":
                raise self._not_found(rtype, target, name) from exc
            raise

    # ---- checks ----------------------------------------------------------------------------

    def _typed(self, rtype: Any, manifest: dict[str, Any]) -> dict[str, Any]:
        """A copy with kind and apiVersion filled in; the kind must be the path's."""
        kind = manifest.get("kind")
        if kind is not None and kind != rtype.kind:
            raise self._kind_mismatch(rtype, kind)
        api_version = manifest.get("apiVersion")
        if api_version is not None and api_version != rtype.api_version:
            raise _violation(
                "apiVersion",
                "api_version_mismatch",
                f"{rtype.kind} is served as {rtype.api_version!r}, not {api_version!r}",
            )
        metadata = manifest.get("metadata", {})
        if not isinstance(metadata, dict):
            raise _violation("metadata", "invalid_type", "metadata must be an object")
        return {**manifest, "apiVersion": rtype.api_version, "kind": rtype.kind, "metadata": dict(metadata)}

    @staticmethod
    def _kind_mismatch(rtype: Any, kind: Any) -> KubiliticsError:
        return _violation(
            "kind", "kind_mismatch", f"The body's kind {kind!r} does not match {rtype.kind!r} in the path"
        )

    def _target(self, rtype: Any, namespace: str, name: str) -> str | None:
        """The namespace to address (None for cluster-scoped kinds), with both path segments checked."""
        # "." and ".." would be resolved as relative paths on the way to the API server.
        if not name or name in (".", "..") or any(c in name for c in "/%"):
            raise _invalid_parameter("name", f"{name!r} is not a valid object name")
        if not rtype.namespaced:
            if namespace != CLUSTER_SCOPED_NAMESPACE:
                raise _invalid_parameter(
                    "namespace",
                    f"{rtype.kind} is cluster-scoped: use '{CLUSTER_SCOPED_NAMESPACE}' as the namespace "
                    f"segment, not {namespace!r}",
                    kind=rtype.kind,
                )
            return None
        self._check_namespace("namespace", namespace)
        return namespace

    @staticmethod
    def _check_namespace(parameter: str, namespace: str) -> None:
        if not is_dns1123_label(namespace):
            raise _invalid_parameter(
                parameter,
                f"{namespace!r} is not a valid namespace name (a lowercase DNS-1123 label)",
                namespace=namespace,
            )

    @staticmethod
    def _not_found(rtype: Any, namespace: str | None, name: str) -> KubiliticsError:
        where = f"{namespace}/{name}" if namespace else name
        return KubiliticsError(
            f"{rtype.kind} {where} not found",
            code="not_found",
            details={"kind": rtype.kind, "namespace": namespace, "name": name},
            extra={"resource_kind": rtype.kind},
        )


def _qualified(types: list[Any], name: str, group: str) -> Any:
    return next((t for t in types if t.group == group and t.matches(name)), None)


def _api_version(manifest: dict[str, Any]) -> str | None:
    value = manifest.get("apiVersion")
    return value if isinstance(value, str) else None
