"""Lists split into raw objects: what a client reads back must be the API server's objects, typed
(and without managedFields unless asked for)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubilitics.api.responses import dumps
from kubilitics.rawjson import RawJSON, identity, split_list, without_managed_fields


def listed(items: list[dict], **list_metadata) -> bytes:
    return orjson.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": list_metadata, "items": items})


def test_built_in_items_get_their_type_and_keep_every_field():
    pod = {"metadata": {"name": "web-1", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}, "status": {}}
    result = split_list(listed([pod], resourceVersion="42", remainingItemCount=7), "v1", "Pod")

    assert result["metadata"] == {"resourceVersion": "42", "remainingItemCount": 7}
    (item,) = result["items"]
    assert isinstance(item, RawJSON)
    assert orjson.loads(bytes(item)) == {"apiVersion": "v1", "kind": "Pod", **pod}


def test_custom_resources_keep_their_own_type_and_other_shapes_are_completed():
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "blue"}}
    status_first = {"status": {"phase": "Running"}, "metadata": {"name": "odd"}}
    items = split_list(listed([widget, status_first]), "example.com/v1", "Widget")["items"]

    assert [orjson.loads(bytes(i)) for i in items] == [
        widget,
        {**status_first, "apiVersion": "example.com/v1", "kind": "Widget"},
    ]


def test_a_nested_object_that_looks_like_an_item_is_left_alone():
    # A StatefulSet's volumeClaimTemplates are objects with metadata inside the item.
    sts = {
        "metadata": {"name": "db"},
        "spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}, {"metadata": {"name": "logs"}}]},
    }
    (item,) = split_list(listed([sts]), "apps/v1", "StatefulSet")["items"]
    parsed = orjson.loads(bytes(item))
    assert parsed["kind"] == "StatefulSet"
    assert parsed["spec"]["volumeClaimTemplates"] == [
        {"metadata": {"name": "data"}},
        {"metadata": {"name": "logs"}},
    ]


def test_raw_items_are_written_into_a_response_as_they_are():
    items = split_list(listed([{"metadata": {"name": f"p{i}"}} for i in range(3)]), "v1", "Pod")["items"]
    body = orjson.loads(dumps({"total_count": 3, "items": items}))
    assert [i["metadata"]["name"] for i in body["items"]] == ["p0", "p1", "p2"]
    assert {i["kind"] for i in body["items"]} == {"Pod"}


def test_empty_and_null_item_lists():
    assert split_list(listed([]), "v1", "Pod")["items"] == []
    assert split_list(b'{"kind":"PodList","metadata":{},"items":null}', "v1", "Pod")["items"] == []


@pytest.mark.parametrize("data", [b"not json", b'{"items": {"a": 1}}', b'{"items": [1, 2'])
def test_an_answer_that_is_not_a_list_is_a_value_error(data):
    with pytest.raises(ValueError):
        split_list(data, "v1", "Pod")


def test_identity_reads_name_namespace_and_creation_time():
    text = RawJSON(
        orjson.dumps(
            {
                "metadata": {
                    "name": "a",
                    "namespace": "ns",
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                    "managedFields": [{"manager": "kubectl"}],
                },
                "spec": {},
            }
        )
    )
    assert identity(text) == {"name": "a", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"}
    # cluster-scoped objects have no namespace; Kubernetes writes null for a time not set
    assert identity(RawJSON(b'{"metadata":{"name":"x","creationTimestamp":null}}'))["creationTimestamp"] == ""
    assert identity(RawJSON(b'{"metadata":{"name":"n1"}}')) == {
        "name": "n1",
        "namespace": "",
        "creationTimestamp": "",
    }


# ---- managedFields left out (kubectl's default) ------------------------------------------------------

_MANAGED = [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:data": {".": {}, "f:k": {}}}}]


def _without(obj: dict) -> dict:
    copy = orjson.loads(orjson.dumps(obj))
    copy["metadata"].pop("managedFields", None)
    return copy


def test_managed_fields_are_cut_out_of_the_text_and_nothing_else_changes():
    obj = {
        "metadata": {"name": "a", "namespace": "n", "annotations": {"x": "y"}, "managedFields": _MANAGED},
        "data": {"k": "v"},
    }
    text = orjson.dumps(obj)
    assert without_managed_fields(text) == text.replace(b',"managedFields":' + orjson.dumps(_MANAGED), b"")
    assert orjson.loads(bytes(without_managed_fields(text))) == _without(obj)


def test_look_alikes_of_the_key_are_left_alone():
    tricky = {
        "metadata": {"name": "a", "annotations": {"managedFields": "mine"}, "managedFields": _MANAGED},
        "spec": {"x": {"managedFields": [1]}, "note": ',"managedFields":[]'},
    }
    assert orjson.loads(bytes(without_managed_fields(orjson.dumps(tricky)))) == _without(tricky)
    plain = orjson.dumps({"metadata": {"name": "b"}, "data": {"v": ',"managedFields":1'}})
    assert without_managed_fields(plain) == plain
    first = {"metadata": {"managedFields": _MANAGED, "name": "c"}, "data": {}}
    assert without_managed_fields(orjson.dumps(first)) == b'{"metadata":{"name":"c"},"data":{}}'


# Objects as the API server writes them: labels and annotations map strings to strings,
# managedFields is a list of entries; anything else anywhere else.
_strings = st.dictionaries(
    st.sampled_from(["app", "managedFields", "x"]) | st.text(max_size=8), st.text(max_size=12)
)
_entries = st.lists(
    st.fixed_dictionaries(
        {"manager": st.text(max_size=8), "fieldsV1": st.dictionaries(st.text(max_size=6), st.just({}))}
    ),
    max_size=3,
)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["managedFields", "metadata", "name"]) | st.text(max_size=8), inner, max_size=3
        )
    ),
    max_leaves=12,
)
_metadata = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=10),
        "labels": _strings,
        "annotations": _strings,
        "managedFields": _entries,
        "uid": st.text(max_size=10),
    },
)


@given(
    metadata=_metadata,
    rest=st.dictionaries(st.sampled_from(["managedFields", "spec", "data"]), _values, max_size=3),
)
def test_any_object_loses_exactly_its_managed_fields(metadata, rest):
    obj = {"metadata": metadata, **{k: v for k, v in rest.items() if k != "metadata"}}
    assert orjson.loads(bytes(without_managed_fields(orjson.dumps(obj)))) == _without(obj)
