"""Kubernetes objects kept as the JSON text the API server sent.

A page of 50 pods is ~280 KB of JSON. Parsing it into Python objects only to encode it again costs
~1.5 ms, as much as a third of the API server's own time for the list. `split_list` instead finds
each item's text (msgspec scans it in C without building objects), and orjson writes the texts back
out as they are (`RawJSON`, see api/responses.py). `identity` reads an object's name, namespace
and creation time and skips the rest (sorting needs no more).

msgspec is imported on first use: functions that never list pay nothing at cold start.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

# A built-in object in a typed list comes without its type: TypeMeta is empty, so the API server's
# encoder writes metadata first. Custom resources (unstructured) keep apiVersion and kind.
_TYPELESS_START = b'{"metadata":'


class RawJSON(bytes):
    """Serialized JSON, written into a response as it is (orjson.loads wants `bytes(raw)`)."""

    __slots__ = ()


@functools.cache
def _decoders() -> tuple[Any, Any, Any, Any]:
    import msgspec

    # Fields not named here (kind, apiVersion, spec, status, managedFields...) are skipped, not built.
    envelope = msgspec.defstruct(
        "ListEnvelope", [("metadata", dict, {}), ("items", list[msgspec.Raw] | None, None)]
    )
    identity = msgspec.defstruct(
        "Identity",
        [("name", str | None, ""), ("namespace", str | None, ""), ("creationTimestamp", str | None, "")],
    )
    with_identity = msgspec.defstruct(
        "WithIdentity", [("metadata", identity, msgspec.field(default_factory=identity))]
    )
    # An object's metadata as its text, then that text's managedFields as theirs.
    metadata = msgspec.defstruct("MetadataText", [("metadata", msgspec.Raw, msgspec.Raw())])
    managed = msgspec.defstruct("ManagedText", [("managedFields", msgspec.Raw, msgspec.Raw())])
    return (
        msgspec.json.Decoder(envelope),
        msgspec.json.Decoder(with_identity),
        msgspec.json.Decoder(metadata),
        msgspec.json.Decoder(managed),
    )


def split_list(data: bytes, api_version: str, kind: str) -> dict[str, Any]:
    """A list response as {"metadata": parsed, "items": [RawJSON]}, each item a whole object
    (apiVersion and kind included, as a client needs them to send it back)."""
    envelope = _decoders()[0].decode(data)
    type_prefix = orjson.dumps({"apiVersion": api_version, "kind": kind})[:-1] + b","
    items = []
    for raw in envelope.items or ():
        text = bytes(raw)
        if text.startswith(_TYPELESS_START):
            text = type_prefix + text[1:]
        elif not text.startswith(b'{"apiVersion":'):  # neither shape: complete it the slow way
            obj = orjson.loads(text)
            if isinstance(obj, dict):
                obj.setdefault("apiVersion", api_version)
                obj.setdefault("kind", kind)
            text = orjson.dumps(obj)
        items.append(RawJSON(text))
    return {"metadata": envelope.metadata, "items": items}


def identity(item: bytes) -> dict[str, str]:
    """The object's name, namespace and creationTimestamp ("" when absent), the rest of its text
    skipped: ~15x faster than parsing its whole metadata (managedFields are most of it)."""
    meta = _decoders()[1].decode(item).metadata
    return {
        "name": meta.name or "",
        "namespace": meta.namespace or "",
        "creationTimestamp": meta.creationTimestamp or "",  # Kubernetes writes null for "not set"
    }


_METADATA_KEY = b'"metadata":'
_MANAGED_KEY = b'"managedFields":'


def without_managed_fields(item: bytes) -> RawJSON:
    """The object's text without `metadata.managedFields` (server-side apply's bookkeeping, most of a
    small object's metadata; kubectl hides it too), cut out of the text: nothing is re-encoded.

    msgspec gives the exact text of `metadata` and of its `managedFields`. The first `"metadata":`
    of an object the API server wrote is its own (apiVersion and kind, if any, come first and hold
    no quotes); within metadata the key with exactly that value follows a comma or opens it. Where
    the text is laid out otherwise, the object is re-encoded instead.
    """
    if _MANAGED_KEY not in item:
        return RawJSON(item)
    meta = bytes(_decoders()[2].decode(item).metadata)
    at = item.find(_METADATA_KEY) + len(_METADATA_KEY)
    if not meta or at < len(_METADATA_KEY) or item[at : at + len(meta)] != meta:
        return _reencoded(item)
    value = bytes(_decoders()[3].decode(meta).managedFields)
    if not value:  # the key was elsewhere (a string, another field): nothing to leave out
        return RawJSON(item)
    inner = meta.find(b"," + _MANAGED_KEY + value)
    if inner >= 0:
        cut = meta[:inner] + meta[inner + 1 + len(_MANAGED_KEY) + len(value) :]
    elif meta.startswith(b"{" + _MANAGED_KEY + value):
        rest = meta[1 + len(_MANAGED_KEY) + len(value) :]
        cut = b"{" + (rest[1:] if rest.startswith(b",") else rest)
    else:
        return _reencoded(item)
    return RawJSON(item[:at] + cut + item[at + len(meta) :])


def _reencoded(item: bytes) -> RawJSON:
    return RawJSON(orjson.dumps(strip_managed_fields(orjson.loads(item))))


def strip_managed_fields(obj: Any) -> Any:
    """`obj` (a parsed object) without `metadata.managedFields`, in place."""
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
        obj["metadata"].pop("managedFields", None)
    return obj
