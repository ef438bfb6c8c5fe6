"""What the API server refuses, as the reference's codes: a terminating namespace or object, a used-up
quota; a plain RBAC denial stays `forbidden` (bodies as Kubernetes 1.34 sends them)."""

from __future__ import annotations

import json
from typing import Any

from kubilitics.adapters.kube_rest import api_error


def status(code: int, reason: str, message: str, **details: Any) -> bytes:
    return json.dumps(
        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
         "details": details, "code": code}
    ).encode()  # fmt: skip


def test_creating_in_a_terminating_namespace_is_resource_terminating():
    body = status(
        403,
        "Forbidden",
        'configmaps "x" is forbidden: unable to create new content in namespace ns because it is being '
        "terminated",
        name="x",
        kind="configmaps",
        causes=[
            {
                "reason": "NamespaceTerminating",
                "message": "namespace ns is being terminated",
                "field": "metadata.namespace",
            }
        ],
    )
    error = api_error(403, body, "ctx")
    assert (error.code, error.status) == ("resource_terminating", 409)
    assert error.details == {"kind": "configmaps", "name": "x", "reason": "NamespaceTerminating"}


def test_a_quota_refusal_is_quota_exceeded():
    message = (
        'configmaps "c2" is forbidden: exceeded quota: q, requested: configmaps=1, used: configmaps=2, '
        "limited: configmaps=2"
    )
    error = api_error(403, status(403, "Forbidden", message, name="c2", kind="configmaps"), "ctx")
    assert (error.code, error.status, error.message) == ("quota_exceeded", 429, message)
    assert error.details["reason"] == "ExceededQuota"


def test_a_name_held_by_an_object_being_deleted_is_resource_terminating():
    message = 'object is being deleted: configmaps "held" already exists'
    error = api_error(409, status(409, "AlreadyExists", message, name="held", kind="configmaps"), "ctx")
    assert (error.code, error.status) == ("resource_terminating", 409)
    plain = api_error(
        409, status(409, "AlreadyExists", 'configmaps "held" already exists', name="held"), "ctx"
    )
    assert plain.code == "already_exists"


def test_an_rbac_denial_stays_forbidden():
    message = (
        'configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the '
        'namespace "ns"'
    )
    error = api_error(403, status(403, "Forbidden", message, kind="configmaps"), "ctx")
    assert (error.code, error.status) == ("forbidden", 403)
