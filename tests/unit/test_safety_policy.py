"""The safety policy model and `assess`: what may run, what needs a human, what never runs."""

from __future__ import annotations

import pytest
from kubilitics.ai.safety import (
    AUTONOMY_LEVELS,
    Operation,
    ResourceRef,
    SafetyPolicy,
    assess,
    operation_names,
)
from pydantic import ValidationError

DEPLOYMENT = ResourceRef("Deployment", "web", "shop")
POD = ResourceRef("Pod", "web-7d9f8c6b5-x2x4z", "shop", owner_kind="ReplicaSet")


def policy(level: str = "3_auto_apply_safe_operations", **changes) -> SafetyPolicy:
    return SafetyPolicy(autonomy_level=level, **changes)


def test_defaults_match_the_reference_and_protect_the_system_namespaces():
    p = SafetyPolicy()
    assert p.autonomy_level == "2_review_before_apply"
    assert p.max_resource_deletion_count == 10
    assert p.protected_namespaces == ["kube-system", "kube-node-lease", "kube-public"]
    assert p.forbidden_operations == ["delete_pvc", "delete_secret"]
    assert p.require_human_approval == {"delete_pod": True, "modify_rbac": True, "scale_to_zero": True}


def test_a_configured_list_keeps_the_system_namespaces():
    p = SafetyPolicy(protected_namespaces=["prod-pii", "kube-system"])
    assert p.protected_namespaces == ["kube-system", "kube-node-lease", "kube-public", "prod-pii"]


@pytest.mark.parametrize(
    "bad",
    [
        {"autonomy_level": "4_do_anything"},
        {"max_resource_deletion_count": -1},
        {"protected_namespaces": "kube-system"},
        {"require_human_approval": {"delete_pod": "yes"}},
        {"allow_everything": True},
    ],
)
def test_invalid_policies_are_refused(bad):
    with pytest.raises(ValidationError):
        SafetyPolicy(**bad)


def test_scaling_up_at_level_3_is_low_risk_and_applied_without_approval():
    result = assess(
        Operation("scale", "scale_deployment", current_replicas=3, proposed_replicas=5), DEPLOYMENT, policy()
    )
    assert (result.risk_level, result.allowed, result.requires_approval, result.auto_apply) == (
        "low",
        True,
        False,
        True,
    )
    assert result.approval_reason is None
    assert result.potential_issues == [
        "More replicas use more of the namespace's quota and the nodes' capacity"
    ]


def test_level_2_reviews_every_change():
    result = assess(
        Operation("scale", current_replicas=3, proposed_replicas=5),
        DEPLOYMENT,
        policy("2_review_before_apply"),
    )
    assert result.allowed and result.requires_approval and not result.auto_apply
    assert (
        result.approval_reason
        == "autonomy level 2_review_before_apply requires a human to review every change"
    )


@pytest.mark.parametrize("level", ["0_observe_only", "1_suggest"])
def test_levels_0_and_1_never_execute(level):
    result = assess(Operation("rollout_restart"), DEPLOYMENT, policy(level))
    assert not result.allowed and result.requires_approval
    assert result.blocked_reasons == [
        "autonomy level 0_observe_only: AI actions are never executed"
        if level == "0_observe_only"
        else "autonomy level 1_suggest: AI actions are suggestions for a human to carry out"
    ]


@pytest.mark.parametrize("level", AUTONOMY_LEVELS)
@pytest.mark.parametrize("namespace", ["kube-system", "kube-node-lease", "kube-public", "prod-pii"])
def test_protected_namespaces_are_never_changed_at_any_level(level, namespace):
    p = policy(level, protected_namespaces=["prod-pii"])
    result = assess(Operation("rollout_restart"), ResourceRef("Deployment", "coredns", namespace), p)
    assert not result.allowed and not result.auto_apply
    assert f"namespace {namespace!r} is protected" in result.blocked_reasons


@pytest.mark.parametrize(
    ("operation", "resource", "name"),
    [
        (Operation("delete"), ResourceRef("PersistentVolumeClaim", "data-db-0", "shop"), "delete_pvc"),
        (Operation("delete"), ResourceRef("Secret", "db-credentials", "shop"), "delete_secret"),
        (Operation("delete"), ResourceRef("StatefulSet", "db", "shop"), "delete_statefulset"),
    ],
)
def test_forbidden_operations_are_never_executable(operation, resource, name):
    p = policy(forbidden_operations=["delete_pvc", "delete_secret", "delete_statefulset"])
    result = assess(operation, resource, p)
    assert not result.allowed
    assert result.blocked_reasons == [f"operation {name!r} is forbidden by the safety policy"]
    assert result.risk_level == "critical"


def test_the_deletion_count_limit_holds():
    p = policy(max_resource_deletion_count=2)
    assert assess(Operation("delete", deletion_count=2), POD, p).allowed
    too_many = assess(Operation("delete", deletion_count=3), POD, p)
    assert not too_many.allowed
    assert too_many.blocked_reasons == ["deletes 3 resources; the limit is 2"]


def test_the_approval_map_flags_operations_even_at_level_3():
    delete_pod = assess(Operation("delete", "restart_pod", deletion_count=1), POD, policy())
    assert delete_pod.allowed and delete_pod.requires_approval
    assert delete_pod.approval_reason.startswith("the safety policy requires approval for delete_pod")
    assert delete_pod.risk_level == "medium"
    assert delete_pod.potential_issues[0] == "The pod is recreated by its ReplicaSet; brief interruption"

    to_zero = assess(Operation("scale", current_replicas=3, proposed_replicas=0), DEPLOYMENT, policy())
    assert to_zero.requires_approval and to_zero.risk_level == "high"
    assert "scale_to_zero" in to_zero.operation_names

    relaxed = policy(require_human_approval={"delete_pod": False, "modify_rbac": True, "scale_to_zero": True})
    # Not flagged any more, but a pod delete is medium risk: still not applied on its own.
    still = assess(Operation("delete", deletion_count=1), POD, relaxed)
    assert (
        still.requires_approval
        and still.approval_reason == "medium risk: only low-risk operations are applied automatically"
    )


def test_rbac_and_cluster_scoped_changes_are_high_risk():
    rbac = assess(Operation("patch"), ResourceRef("RoleBinding", "ci", "shop"), policy())
    assert rbac.risk_level == "high" and "modify_rbac" in rbac.operation_names and rbac.requires_approval
    node = assess(Operation("patch", "cordon_node"), ResourceRef("Node", "worker-1"), policy())
    assert node.risk_level == "high" and node.allowed and node.requires_approval
    bare_pod = assess(Operation("delete", deletion_count=1), ResourceRef("Pod", "debug", "shop"), policy())
    assert bare_pod.risk_level == "high"


def test_operation_names_cover_verb_kind_alias_and_action_type():
    names = operation_names(
        Operation("delete", "cleanup_volume"), ResourceRef("PersistentVolumeClaim", "d", "ns")
    )
    assert names == ["delete", "delete_persistentvolumeclaim", "delete_pvc", "cleanup_volume"]
    with pytest.raises(ValueError):
        Operation("drop_table")


def test_risk_assessment_renders_the_reference_shape():
    result = assess(
        Operation("scale", current_replicas=3, proposed_replicas=5),
        DEPLOYMENT,
        policy("2_review_before_apply"),
    )
    assert result.to_dict() == {
        "risk_level": "low",
        "potential_issues": ["More replicas use more of the namespace's quota and the nodes' capacity"],
        "requires_approval": True,
        "approval_reason": "autonomy level 2_review_before_apply requires a human to review every change",
        "allowed": True,
        "blocked_reasons": [],
    }
