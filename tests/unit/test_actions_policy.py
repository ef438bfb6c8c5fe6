"""Which proposals run by themselves, which wait for a human and which never run: the action service
with in-memory fakes of the cluster and the store (the integration tests do the same for real)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubilitics.ai.configuration import AiConfig
from kubilitics.auth.tokens import Principal
from kubilitics.services.actions import ActionService, ActionSettings

NS = "shop"


class Clock:
    def __init__(self) -> None:
        self.t = 1_770_733_425.0

    def now(self) -> float:
        self.t += 0.01
        return self.t


class RType:
    def __init__(self, kind: str, namespaced: bool = True):
        self.kind, self.namespaced = kind, namespaced


class FakeKube:
    """One Deployment `web` (3 replicas) and its pods; merge patches, dry runs, deletes."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {
            ("Deployment", "web"): {
                "kind": "Deployment",
                "metadata": {
                    "name": "web",
                    "namespace": NS,
                    "uid": "d-1",
                    "resourceVersion": "10",
                    "generation": 1,
                },
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {}},
            },
            ("Pod", "web-1"): {
                "kind": "Pod",
                "metadata": {
                    "name": "web-1",
                    "namespace": NS,
                    "uid": "p-1",
                    "resourceVersion": "11",
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "web-x", "controller": True}],
                },
                "spec": {"nodeName": "n1"},
            },
        }
        self.applied: list[tuple[str, str, Any]] = []
        self.deleted_uids: list[str] = []

    def resource_type(self, context: Any, kind: str) -> RType:
        return RType(kind)

    def get(self, context: Any, rtype: RType, namespace: str | None, name: str) -> dict[str, Any]:
        if (rtype.kind, name) not in self.objects:
            from kubilitics.errors import NotFound

            raise NotFound(f"{rtype.kind} {name} not found")
        obj = copy.deepcopy(self.objects[(rtype.kind, name)])
        if rtype.kind == "Deployment":
            n = obj["spec"]["replicas"]
            obj["status"] = {
                "observedGeneration": obj["metadata"]["generation"],
                "replicas": n,
                "updatedReplicas": n,
                "availableReplicas": n,
            }
        return obj

    def patch(self, context, rtype, namespace, name, body, patch_type, dry_run=False):
        obj = copy.deepcopy(self.objects[(rtype.kind, name)])
        body = copy.deepcopy(body)
        rv = (body.get("metadata") or {}).pop("resourceVersion", None)
        if rv is not None and rv != obj["metadata"]["resourceVersion"]:
            from kubilitics.errors import KubiliticsError

            raise KubiliticsError("conflict", code="resource_conflict")
        _merge(obj, body)
        if not dry_run:
            obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
            obj["metadata"]["generation"] += 1
            self.objects[(rtype.kind, name)] = obj
            self.applied.append(("patch", name, body))
        return obj

    def delete(
        self, context, rtype, namespace, name, *, grace_period_seconds=None, dry_run=False, uid=None, **_
    ):
        current = self.objects[(rtype.kind, name)]["metadata"]["uid"]
        if uid is not None and uid != current:
            from kubilitics.errors import KubiliticsError

            message = f"Precondition failed: UID in precondition: {uid}, UID in object meta: {current}"
            raise KubiliticsError(message, code="resource_conflict")
        if not dry_run:
            self.objects.pop((rtype.kind, name))
            self.applied.append(("delete", name, grace_period_seconds))
            self.deleted_uids.append(current)
        return {}

    def list_objects(self, context, rtype, **kwargs):
        return {"items": [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == rtype.kind]}


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class MemoryActions:
    """ports.ActionStore in memory."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.trail: dict[str, list[dict[str, Any]]] = {}

    def put(self, action):
        self.items[action["action_id"]] = copy.deepcopy(action)

    def get(self, action_id):
        return copy.deepcopy(self.items.get(action_id))

    def transition(self, action_id, from_status, to_status, fields, *, open_until_after=None):
        item = self.items.get(action_id)
        if not item or item["status"] != from_status:
            return False
        if open_until_after is not None and item["approval_expires_at"] <= open_until_after:
            return False
        item.update(fields, status=to_status)
        return True

    def update(self, action_id, fields):
        self.items[action_id].update(fields)

    def list_status(self, status):
        return [copy.deepcopy(a) for a in self.items.values() if a["status"] == status]

    def add_audit(self, action_id, record, expires_at):
        self.trail.setdefault(action_id, []).append(record)

    def audit(self, action_id):
        return list(self.trail.get(action_id, []))


def service(config: dict[str, Any]) -> tuple[ActionService, FakeKube, MemoryActions]:
    kube, store = FakeKube(), MemoryActions()
    effective = AiConfig.model_validate(config)
    settings = ActionSettings(
        approval_seconds=7200,
        verify_timeout_seconds=2,
        verify_settle_seconds=0,
        retention_seconds=86400,
        poll_seconds=0,
    )
    svc = ActionService(
        kube=kube,
        store=store,
        contexts=lambda name, acting_as=None: None,
        caller_context=lambda principal, name: None,
        access=None,
        config=lambda: effective,
        clock=Clock(),
        settings=settings,
        sleep=lambda s: None,
    )
    return svc, kube, store


SCALE_UP = {
    "action": "scale_deployment",
    "details": "Scale Deployment web from 3 to 5 replicas.",
    "target": {"kind": "Deployment", "name": "web", "namespace": NS},
    "patch": {"spec": {"replicas": 5}},
}
LEVEL_3 = {"safety_policy": {"autonomy_level": "3_auto_apply_safe_operations"}}
AUTO = {"investigation_settings": {"auto_remediation_enabled": True}}


def propose(svc: ActionService, recommendations: list[dict], category: str = "app_crash") -> list[dict]:
    diagnosis = {"severity": "high", "root_cause": {"category": category}, "recommendations": recommendations}
    return svc.propose({"investigation_id": "inv-1", "requested_by": "alice"}, diagnosis, None, None)


def test_a_safe_operation_is_applied_by_itself_at_level_3_with_auto_remediation_on():
    svc, kube, store = service({**LEVEL_3, **AUTO})
    [action] = propose(svc, [SCALE_UP])
    assert action["status"] == "approved" and action["execution_status"] == "succeeded"
    assert kube.objects[("Deployment", "web")]["spec"]["replicas"] == 5
    assert [r["event"] for r in store.audit(action["action_id"])] == [
        "auto_approved",
        "dry_run",
        "applied",
        "verified",
    ]
    assert store.items[action["action_id"]]["approved_by"].startswith("kubilitics (autonomy level 3")


@pytest.mark.parametrize(
    "config",
    [
        {},  # level 2: a human reviews every change
        LEVEL_3,  # auto-remediation is off
        {"safety_policy": {"autonomy_level": "2_review_before_apply"}, **AUTO},
        {
            "safety_policy": {
                "autonomy_level": "3_auto_apply_safe_operations",
                "require_human_approval": {"scale_deployment": True},
            },
            **AUTO,
        },
    ],
)
def test_otherwise_it_waits_for_a_human(config):
    svc, kube, _ = service(config)
    [action] = propose(svc, [SCALE_UP])
    assert action["status"] == "pending"
    assert kube.applied == []


def test_a_medium_risk_patch_waits_even_at_level_3():
    svc, kube, _ = service({**LEVEL_3, **AUTO})
    patch = {
        **SCALE_UP,
        "action": "set_resource_requests",
        "patch": {"spec": {"template": {"spec": {"x": 1}}}},
    }
    [action] = propose(svc, [patch])
    assert action["status"] == "pending" and kube.applied == []


@pytest.mark.parametrize(
    "policy",
    [
        {"protected_namespaces": [NS]},
        {"forbidden_operations": ["scale_deployment"]},
        {"autonomy_level": "1_suggest"},
        {"autonomy_level": "0_observe_only"},
    ],
)
def test_protected_namespaces_forbidden_operations_and_low_levels_are_never_executable(policy):
    svc, kube, store = service(
        {"safety_policy": {"autonomy_level": "3_auto_apply_safe_operations", **policy}, **AUTO}
    )
    [action] = propose(svc, [SCALE_UP])
    assert action["status"] == "blocked"
    assert kube.applied == []
    assert store.list_status("pending") == []
    principal = Principal("root", frozenset({"admin"}), "admin", "j", 0)
    from kubilitics.errors import KubiliticsError

    with pytest.raises(KubiliticsError) as refused:
        svc.approve(principal, action["action_id"], None, True)
    assert refused.value.code == "forbidden" and refused.value.details["blocked_reasons"]
    assert kube.applied == []


def test_a_pod_stranded_on_a_dead_node_gets_a_restart_proposal():
    from kubilitics.ai.evidence import Evidence, ObjectRef

    svc, kube, _ = service({})
    node = {
        "kind": "Node",
        "metadata": {"name": "n1"},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
    }
    evidence = Evidence.build(
        ObjectRef("Deployment", "web", NS), [node, kube.objects[("Pod", "web-1")]], collected_at=1.0
    )
    diagnosis = {"severity": "critical", "root_cause": {"category": "node_not_ready"}, "recommendations": []}
    [action] = svc.propose({"investigation_id": "inv-2"}, diagnosis, evidence, None)
    assert action["action_type"] == "restart_pod" and action["status"] == "pending"
    stored = svc._store.get(action["action_id"])  # type: ignore[attr-defined]
    assert stored["request"]["grace_period_seconds"] == 0
    assert stored["risk_assessment"]["requires_approval"] is True
    principal = Principal("oncall", frozenset({"write", "delete"}), "user", "j", 0)
    result = svc.approve(principal, action["action_id"], None, True)
    assert result["execution_status"] == "succeeded"
    assert ("delete", "web-1", 0) in kube.applied
    assert kube.deleted_uids == ["p-1"]


# ---- what approving needs: the change's own scope; deleting only the object that was proposed ----


def restart_pod_action(svc: ActionService, kube: FakeKube) -> dict[str, Any]:
    """A restart_pod proposal (a pod delete, grace 0) for web-1, stranded on a node that died."""
    from kubilitics.ai.evidence import Evidence, ObjectRef

    node = {
        "kind": "Node",
        "metadata": {"name": "n1"},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
    }
    evidence = Evidence.build(
        ObjectRef("Deployment", "web", NS), [node, kube.objects[("Pod", "web-1")]], collected_at=1.0
    )
    diagnosis = {"severity": "critical", "root_cause": {"category": "node_not_ready"}, "recommendations": []}
    [action] = svc.propose({"investigation_id": "inv-3"}, diagnosis, evidence, None)
    assert action["action_type"] == "restart_pod" and action["status"] == "pending"
    return action


def test_approving_a_pod_restart_needs_the_delete_scope_as_a_rest_delete_does():
    from kubilitics.errors import KubiliticsError

    svc, kube, store = service({})
    action = restart_pod_action(svc, kube)
    writer = Principal("oncall", frozenset({"read", "write"}), "user", "j", 0)
    with pytest.raises(KubiliticsError) as refused:
        svc.approve(writer, action["action_id"], None, True)
    assert (refused.value.code, refused.value.status) == ("insufficient_scope", 403)
    assert refused.value.details == {"required_scope": "delete", "granted_scopes": ["read", "write"]}
    # Nothing happened: the pod is there, the action still waits for someone who may delete.
    assert kube.applied == [] and ("Pod", "web-1") in kube.objects
    assert store.items[action["action_id"]]["status"] == "pending"
    assert store.audit(action["action_id"]) == []
    deleter = Principal("oncall", frozenset({"write", "delete"}), "user", "j", 0)
    assert svc.approve(deleter, action["action_id"], None, True)["execution_status"] == "succeeded"
    assert kube.deleted_uids == ["p-1"]


def test_approving_a_scale_needs_write_only():
    svc, kube, _ = service({})
    [action] = propose(svc, [SCALE_UP])
    writer = Principal("oncall", frozenset({"write"}), "user", "j", 0)
    assert svc.approve(writer, action["action_id"], None, True)["execution_status"] == "succeeded"
    assert kube.objects[("Deployment", "web")]["spec"]["replicas"] == 5


def test_every_verb_the_policy_knows_has_the_scope_of_its_rest_request():
    from kubilitics.ai.safety import VERBS
    from kubilitics.services.actions import VERB_SCOPES, required_scope

    assert set(VERB_SCOPES) == set(VERBS)
    assert {verb for verb in VERBS if required_scope({"verb": verb}) != "write"} == {"delete"}
    assert required_scope({"verb": "evict"}) == "admin"  # a verb nobody mapped: only admin


class RecreatingKube(FakeKube):
    """The pod is deleted and recreated under the same name (a new uid) right after the approval
    read it: between the check and the delete."""

    recreate = False

    def get(self, context: Any, rtype: RType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = super().get(context, rtype, namespace, name)
        if self.recreate and rtype.kind == "Pod":
            self.recreate = False
            fresh = copy.deepcopy(self.objects[("Pod", name)])
            fresh["metadata"].update(uid="p-2", resourceVersion="50")
            self.objects[("Pod", name)] = fresh
        return obj


def test_a_pod_recreated_under_the_same_name_is_not_deleted():
    from kubilitics.errors import KubiliticsError

    svc, _, store = service({})
    kube = RecreatingKube()
    svc._kube = kube  # type: ignore[assignment]
    action = restart_pod_action(svc, kube)
    kube.recreate = True
    deleter = Principal("oncall", frozenset({"write", "delete"}), "user", "j", 0)
    with pytest.raises(KubiliticsError) as conflict:
        svc.approve(deleter, action["action_id"], None, True)
    assert (conflict.value.code, conflict.value.status) == ("resource_conflict", 409)
    assert conflict.value.details["proposed_uid"] == "p-1"
    # The new pod is untouched; the refusal is audited and the action cannot be approved again.
    assert kube.applied == [] and kube.objects[("Pod", "web-1")]["metadata"]["uid"] == "p-2"
    trail = store.audit(action["action_id"])
    assert [r["event"] for r in trail] == ["approved", "conflict"]
    assert "UID in precondition: p-1" in trail[-1]["details"]["api_server_message"]
    assert store.items[action["action_id"]]["status"] == "superseded"
