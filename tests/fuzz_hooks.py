"""Schemathesis hooks of `make fuzz` (tests/fuzz.py loads them with SCHEMATHESIS_HOOKS).

Safety: every request that can change the cluster (any method but GET) is pinned to the run's scratch
namespace just before it is sent: a namespace the server would accept, in the path or in the body
(`metadata.namespace`, an investigation's `namespace`), becomes the scratch one. The run's token is
also confined by RBAC (tests/fuzz.py): cluster-wide reads, writes only in the scratch namespace, so a
write these hooks did not pin is refused by the cluster (403), never carried out.

Positive cases are made to respect what the schema cannot say (README, API notes):
- `{kind}` names a kind the cluster serves (the set is the cluster's discovery, not a static enum);
  a cluster-scoped kind goes with the `_` namespace and a namespaced kind with a real one;
- a created object is one the API server accepts: its kind and apiVersion are the path's, its
  metadata a valid name in the scratch namespace (a Kubernetes object's schema is the cluster's);
  a PUT body is the metadata of the path's object (replacing only kinds an object of which may be
  just metadata, else a merge patch);
- selectors parse, and a field selector uses fields every kind has;
- an investigation targets something that exists;
- `since_time` is not after `until_time` (a rule across two parameters).
Negative cases are left as generated.

PUT /ai/config never sets an LLM API key (the real Messages API is out of reach of the run).

Each response is counted by status in the file named by KUBILITICS_FUZZ_STATS, written at exit.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import threading
from collections import Counter
from typing import Any

import schemathesis

SCRATCH = os.environ.get("KUBILITICS_FUZZ_NAMESPACE", "")
STATS_PATH = os.environ.get("KUBILITICS_FUZZ_STATS")
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}

# (path value, namespaced): kinds the test cluster serves, by kind name, plural, short name or group.
KINDS: tuple[tuple[str, bool], ...] = (
    ("Pod", True),
    ("pods", True),
    ("po", True),
    ("ConfigMap", True),
    ("configmaps", True),
    ("Secret", True),
    ("Service", True),
    ("svc", True),
    ("ServiceAccount", True),
    ("Deployment", True),
    ("deployments.apps", True),
    ("ReplicaSet", True),
    ("StatefulSet", True),
    ("DaemonSet", True),
    ("Job", True),
    ("CronJob", True),
    ("Event", True),
    ("Endpoints", True),
    ("Role", True),
    ("RoleBinding", True),
    ("NetworkPolicy", True),
    ("PersistentVolumeClaim", True),
    ("ResourceQuota", True),
    ("LimitRange", True),
    ("Node", False),
    ("nodes", False),
    ("Namespace", False),
    ("ClusterRole", False),
    ("ClusterRoleBinding", False),
    ("PersistentVolume", False),
    ("StorageClass", False),
)
# Kinds a positive create builds a valid object of: (path value, kind, apiVersion, namespaced).
CREATABLE: tuple[tuple[str, str, str, bool], ...] = (
    ("ConfigMap", "ConfigMap", "v1", True),
    ("configmaps", "ConfigMap", "v1", True),
    ("Secret", "Secret", "v1", True),
    ("ServiceAccount", "ServiceAccount", "v1", True),
    ("ClusterRole", "ClusterRole", "rbac.authorization.k8s.io/v1", False),  # refused by RBAC: 403
)

# What a positive investigation looks at: something that exists (the reference answers 400 for a
# resource that is not there), in the scratch namespace, or the whole cluster.
INVESTIGATED: tuple[dict[str, Any], ...] = (
    {"resource_kind": "ConfigMap", "resource_name": "kube-root-ca.crt", "namespace": SCRATCH},
    {"resource_kind": "ServiceAccount", "resource_name": "default", "namespace": SCRATCH},
    {"resource_kind": "Namespace", "resource_name": SCRATCH, "namespace": None},
    {"resource_kind": None, "resource_name": None, "namespace": None},
)

# Kinds whose object may be just its metadata: a positive PUT replaces only these (others are patched
# with the metadata, which any existing object accepts; a replace body is a whole object of its kind).
METADATA_ONLY = {"ConfigMap", "configmaps", "Secret", "ServiceAccount"}

_lock = threading.Lock()
_statuses: Counter[str] = Counter()


def _pick(options: tuple[Any, ...], seed: object) -> Any:
    digest = hashlib.sha256(repr(seed).encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def _dns_name(seed: object) -> str:
    return "fuzz-" + hashlib.sha256(repr(seed).encode()).hexdigest()[:10]


def _is_positive(case: Any) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _shape_positive(case: Any) -> None:
    path_parameters = case.path_parameters or {}
    method, path = case.method.upper(), case.operation.path
    if "kind" in path_parameters:
        if method == "POST":
            kind, real, api_version, namespaced = _pick(CREATABLE, path_parameters["kind"])
            case.path_parameters = {**path_parameters, "kind": kind}
            case.body = _valid_object(case.body, real, api_version, namespaced)
        else:
            kind, namespaced = _pick(KINDS, path_parameters["kind"])
            updated = {**path_parameters, "kind": kind}
            if "namespace" in path_parameters:
                updated["namespace"] = (SCRATCH or "default") if namespaced else "_"
            case.path_parameters = updated
            if method == "PUT" and isinstance(case.body, dict):
                case.body = _matching_path(case.body, updated)
                if (
                    kind not in METADATA_ONLY
                    and (case.query or {}).get("patch_strategy", "replace") == "replace"
                ):
                    case.query = {**(case.query or {}), "patch_strategy": "merge_patch"}
    if path == "/api/v1/ai/investigate" and isinstance(case.body, dict):
        case.body = {**case.body, **_pick(INVESTIGATED, case.body.get("resource_kind"))}
    query = case.query or {}
    if isinstance(query.get("resource_kind"), str):  # GET /events
        query = {**query, "resource_kind": _pick(KINDS, query["resource_kind"])[0]}
    if isinstance(query.get("label_selector"), str):
        query = {**query, "label_selector": _valid_selector(query["label_selector"], _labels_ok, "app=web")}
    if isinstance(query.get("field_selector"), str):
        query = {
            **query,
            "field_selector": _valid_selector(query["field_selector"], _fields_ok, "metadata.name!=x"),
        }
    since, until = query.get("since_time"), query.get("until_time")
    if isinstance(since, str) and isinstance(until, str) and since > until:
        query = {**query, "since_time": until, "until_time": since}
    if case.query is not None and query != case.query:
        case.query = query


def _matching_path(body: dict[str, Any], path_parameters: dict[str, Any]) -> dict[str, Any]:
    """A PUT body is an object of the path's kind named as in the path: other fields are the kind's
    schema (the cluster's; the API server decodes strictly), kind and apiVersion the server fills in."""
    metadata: dict[str, Any] = {"name": path_parameters["name"]}
    if path_parameters.get("namespace") not in (None, "_"):
        metadata["namespace"] = path_parameters["namespace"]
    return {"metadata": metadata}


def _valid_selector(selector: str, check: Any, fallback: str) -> str:
    try:
        return selector if check(selector) else fallback
    except Exception:  # the server's own parser refuses it (400)
        return fallback


def _labels_ok(selector: str) -> bool:
    from kubilitics.services.selectors import validate_label_selector

    validate_label_selector(selector)
    return True


def _fields_ok(selector: str) -> bool:
    """Valid syntax, and only fields every kind supports (the others: only the API server knows)."""
    from kubilitics.services.selectors import validate_field_selector

    normalized = validate_field_selector(selector)
    keys = [re.split(r"!?=", term, maxsplit=1)[0] for term in (normalized or "").split(",") if term]
    return all(key in ("metadata.name", "metadata.namespace") for key in keys)


def _valid_object(body: Any, kind: str, api_version: str, namespaced: bool) -> dict[str, Any]:
    generated = body if isinstance(body, dict) else {}
    metadata: dict[str, Any] = {"name": _dns_name(generated)}
    if namespaced:
        metadata["namespace"] = SCRATCH or "default"
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """The last word before a request is sent (every phase): shape positive cases, then pin writes to
    the scratch namespace. Schemathesis revalidates a case a hook changed (positive or negative)."""
    if _is_positive(case):
        _shape_positive(case)
    _keep_the_model_offline(case)
    if case.method.upper() not in WRITES or not SCRATCH:
        return
    path_parameters = case.path_parameters or {}
    namespace = path_parameters.get("namespace")
    if isinstance(namespace, str) and _acceptable(namespace):
        case.path_parameters = {**path_parameters, "namespace": SCRATCH}
    body = case.body
    if isinstance(body, dict):
        metadata = body.get("metadata")
        given = metadata.get("namespace") if isinstance(metadata, dict) else None
        if isinstance(metadata, dict) and isinstance(given, str) and (_acceptable(given) or given == ""):
            case.body = {**body, "metadata": {**metadata, "namespace": SCRATCH}}
        if case.operation.path == "/api/v1/ai/investigate" and isinstance(body.get("namespace"), str):
            case.body = {**case.body, "namespace": SCRATCH}


def _keep_the_model_offline(case: Any) -> None:
    """PUT /ai/config never sets an API key: the server would then call the real Messages API, which
    the run cannot reach (GET /ai/status would answer 503 `ai_service_unavailable`, as documented)."""
    body = case.body
    if case.operation.path != "/api/v1/ai/config" or not isinstance(body, dict):
        return
    llm = body.get("llm_configuration")
    if isinstance(llm, dict) and isinstance(llm.get("api_key"), str):
        case.body = {**body, "llm_configuration": {k: v for k, v in llm.items() if k != "api_key"}}


def _acceptable(namespace: str) -> bool:
    """A namespace value the server may act on (`_` stays: cluster-scoped writes are RBAC-refused)."""
    return namespace != "_" and len(namespace) <= 63 and LABEL.match(namespace) is not None


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    with _lock:
        _statuses[str(response.status_code)] += 1


def _write_stats() -> None:
    if STATS_PATH:
        with _lock, open(STATS_PATH, "w") as out:
            json.dump(dict(_statuses), out)


atexit.register(_write_stats)
