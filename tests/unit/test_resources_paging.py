"""List paging over a fake gateway: exact totals and pages whatever the API server's page sizes.

The fake serves limit/continue like the API server, including its licence to answer with fewer objects
than asked for, gives remainingItemCount only without selectors, and sends objects as the gateway
does (JSON text, split by kubilitics.rawjson). Pages are read as a client reads the response. The
integration tests check the same against the real API server.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubilitics.api.responses import dumps
from kubilitics.errors import KubiliticsError
from kubilitics.rawjson import split_list
from kubilitics.services.resources import MAX_LIMIT, MAX_OFFSET, SORT_PAGE, ListQuery, ResourcesService


@dataclass(frozen=True)
class FakeType:
    kind: str = "ConfigMap"
    plural: str = "configmaps"
    group: str = ""
    version: str = "v1"
    namespaced: bool = True
    verbs: tuple[str, ...] = ("list", "get", "create", "update", "patch", "delete")

    @property
    def api_version(self) -> str:
        return self.version

    def matches(self, text: str) -> bool:
        return text.lower() in (self.kind.lower(), self.plural)


@dataclass
class FakeKube:
    objects: list[dict[str, Any]]
    short_pages: bool = False  # answer with one object less than asked for, when more than one is asked
    calls: list[dict[str, Any]] = field(default_factory=list)
    timeout: float = 1.0

    def resource_type(self, context: Any, kind: str) -> FakeType:
        return FakeType()

    def resource_types(self, context: Any, *, max_age: float = 0) -> list[FakeType]:
        return [FakeType()]

    def get(self, context: Any, rtype: Any, namespace: str | None, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name}}  # the namespace exists

    def list_objects(self, context: Any, rtype: Any, **kw: Any) -> dict[str, Any]:
        self.calls.append(kw)
        selected = [
            o for o in self.objects if not kw["label_selector"] or o["metadata"]["labels"]["odd"] == "1"
        ]
        start = int(kw["continue_token"] or 0)
        size = kw["limit"] or len(selected)  # no limit: everything, in one answer
        if self.short_pages and kw["limit"] and size > 1:
            size -= 1
        chunk = selected[start : start + size]
        metadata: dict[str, Any] = {"resourceVersion": "7"}
        if start + size < len(selected):
            metadata["continue"] = str(start + size)
            if not kw["label_selector"]:
                metadata["remainingItemCount"] = len(selected) - start - size
        if kw.get("rows_only"):
            return {
                "kind": "Table",
                "metadata": metadata,
                "rows": [{"cells": [o["metadata"]["name"]]} for o in chunk],
            }
        listed = {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": metadata, "items": chunk}
        return split_list(orjson.dumps(listed), "v1", "ConfigMap") if kw.get("raw_items") else listed


def list_page(kube: FakeKube, query: ListQuery) -> dict[str, Any]:
    """The page as a client reads it (the response's JSON)."""
    result: dict[str, Any] = orjson.loads(dumps(ResourcesService(kube).list_page(None, "ConfigMap", query)))
    return result


def objects(count: int) -> list[dict[str, Any]]:
    # API server order is by name; creation times run the other way round so the sorts differ.
    return [
        {
            "metadata": {
                "name": f"cm-{i:04d}",
                "namespace": "ns",
                "labels": {"odd": str(i % 2)},
                "creationTimestamp": f"2026-01-01T00:{59 - i % 60:02d}:{i // 60:02d}Z",
            }
        }
        for i in range(count)
    ]


def names(body: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in body["items"]]


@settings(max_examples=300, deadline=None)
@given(
    count=st.integers(0, 40),
    limit=st.integers(1, 12),
    offset=st.integers(0, 45),
    selector=st.booleans(),
    short_pages=st.booleans(),
    sort=st.sampled_from(
        [
            None,
            ("name", "asc"),
            ("name", "desc"),
            ("created", "asc"),
            ("age", "asc"),
            (None, "desc"),
            (None, "asc"),
        ]
    ),
)
def test_every_page_is_the_slice_of_the_whole_list(count, limit, offset, selector, short_pages, sort):
    everything = objects(count)
    kube = FakeKube(everything, short_pages=short_pages)
    query = ListQuery(
        namespace="ns",
        label_selector="odd=1" if selector else None,
        limit=limit,
        offset=offset,
        sort_by=sort[0] if sort else None,
        sort_order=sort[1] if sort else None,
    )
    body = list_page(kube, query)

    expected = [o for o in everything if not selector or o["metadata"]["labels"]["odd"] == "1"]
    if sort and sort[0] is None:  # sort_order alone: the API server's order (one namespace: by name)
        expected.sort(key=lambda o: o["metadata"]["name"], reverse=sort[1] == "desc")
    elif sort:
        by_time = sort[0] in ("created", "age")
        reverse = (sort[1] == "desc") != (sort[0] == "age")
        expected.sort(
            key=lambda o: (
                (o["metadata"]["creationTimestamp"], o["metadata"]["name"])
                if by_time
                else o["metadata"]["name"]
            ),
            reverse=reverse,
        )
    window = expected[offset : offset + limit]
    assert names(body) == [o["metadata"]["name"] for o in window]
    assert body["total_count"] == len(expected)
    assert body["page"] == {
        "limit": limit,
        "offset": offset,
        "returned": len(window),
        "has_more": offset + len(window) < len(expected),
    }
    assert all(item["kind"] == "ConfigMap" and item["apiVersion"] == "v1" for item in body["items"])


def test_skipping_and_counting_use_rows_not_objects():
    kube = FakeKube(objects(30))
    body = list_page(kube, ListQuery(namespace="ns", label_selector="odd=1", limit=5, offset=4))
    assert names(body) == ["cm-0009", "cm-0011", "cm-0013", "cm-0015", "cm-0017"]
    assert body["total_count"] == 15
    assert [(c["rows_only"], c["limit"]) for c in kube.calls] == [(True, 4), (False, 5), (True, 5000)]


def test_with_a_selector_the_first_page_is_counted_by_one_unpaged_rows_call():
    kube = FakeKube(objects(30))
    body = list_page(kube, ListQuery(namespace="ns", label_selector="odd=1", limit=5))
    assert names(body) == ["cm-0001", "cm-0003", "cm-0005", "cm-0007", "cm-0009"]
    assert (body["total_count"], body["page"]["has_more"]) == (15, True)
    # The page and the count run at the same time: their order is not fixed.
    assert sorted((c["rows_only"], c["limit"] or 0) for c in kube.calls) == [(False, 5), (True, 0)]


def test_without_selectors_the_remaining_count_saves_the_counting_call():
    kube = FakeKube(objects(30))
    body = list_page(kube, ListQuery(namespace="ns", limit=5))
    assert body["total_count"] == 30 and body["page"]["has_more"] is True
    assert len(kube.calls) == 1
    # sort_order=asc without sort_by is the API server's order: no full read for it.
    list_page(kube, ListQuery(namespace="ns", limit=5, sort_order="asc"))
    assert len(kube.calls) == 2


def test_sorting_reads_every_page_but_returns_one():
    kube = FakeKube(objects(1200))
    body = list_page(kube, ListQuery(namespace="ns", limit=3, sort_by="name", sort_order="desc"))
    assert names(body) == ["cm-1199", "cm-1198", "cm-1197"]
    assert body["total_count"] == 1200
    assert [c["limit"] for c in kube.calls] == [500, 500, 500]


def padded(count: int) -> list[dict[str, Any]]:
    """Objects of about 1 KB each (as JSON), like small real ones."""
    return [{**o, "data": {"payload": "x" * 1000}} for o in objects(count)]


@pytest.mark.parametrize("offset", [MAX_OFFSET, 3 * MAX_OFFSET])
def test_a_sorted_list_holds_at_most_max_offset_plus_limit_objects(offset):
    """Review L9: a sorted list keeps the best offset + limit objects; offset is capped, so memory is
    bounded whatever the client asks (deeper offsets are a 400, before anything is read)."""
    kube = FakeKube(padded(3 * MAX_OFFSET + MAX_LIMIT))
    query = ListQuery(namespace="ns", limit=MAX_LIMIT, offset=offset, sort_by="name", sort_order="desc")
    tracemalloc.start()
    try:
        body = list_page(kube, query)
        peak = tracemalloc.get_traced_memory()[1]
    except KubiliticsError as exc:
        peak = tracemalloc.get_traced_memory()[1]
        assert offset > MAX_OFFSET and exc.code == "invalid_parameter" and exc.status == 400
        assert exc.details == {"parameter": "offset", "value": offset, "max_offset": MAX_OFFSET}
        assert kube.calls == []
    else:
        assert offset <= MAX_OFFSET and body["page"]["returned"] == MAX_LIMIT
    finally:
        tracemalloc.stop()
    # ~1.2 KB of JSON text (and its bookkeeping) per object kept, plus a page being read
    assert peak < (MAX_OFFSET + MAX_LIMIT + SORT_PAGE) * 2_000


def test_offset_beyond_the_maximum_is_a_400_on_the_route(aws, mint):
    from fastapi.testclient import TestClient
    from kubilitics.api.app import create_app
    from kubilitics.api.deps import kube_context
    from kubilitics.api.routers import resources
    from kubilitics.container import get_container

    get_container().__dict__["resources"] = ResourcesService(FakeKube(objects(3)))
    app = create_app(resources.router)
    app.dependency_overrides[kube_context] = lambda: None
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {mint(scopes='read')}"
    assert client.get("/api/v1/resources/ConfigMap", params={"offset": MAX_OFFSET}).status_code == 200
    refused = client.get("/api/v1/resources/ConfigMap", params={"offset": MAX_OFFSET + 1})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_parameter"
    assert refused.json()["details"]["parameter"] == "offset"
