"""The safety policy for AI-proposed changes, and the pure risk assessment actions rely on.

`assess(operation, resource, policy)` decides, without I/O, whether a proposed change may ever be
executed and whether a human must approve it first:

- autonomy `0_observe_only` and `1_suggest`: nothing is executable (findings, or suggestions a
  human carries out by hand);
- `2_review_before_apply`: executable after a human approves, always;
- `3_auto_apply_safe_operations`: low-risk operations that the `require_human_approval` map does
  not flag may run without approval; everything else still needs one.

Whatever the level: a protected namespace (kube-system, kube-node-lease and kube-public always, plus
the configured ones) is never changed, a forbidden operation is never executable, and an operation
deleting more than `max_resource_deletion_count` objects is refused. There is no switch that turns
these checks off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

AutonomyLevel = Literal[
    "0_observe_only", "1_suggest", "2_review_before_apply", "3_auto_apply_safe_operations"
]
AUTONOMY_LEVELS: tuple[str, ...] = (
    "0_observe_only",
    "1_suggest",
    "2_review_before_apply",
    "3_auto_apply_safe_operations",
)
ALWAYS_PROTECTED = ("kube-system", "kube-node-lease", "kube-public")
RISK_LEVELS = ("low", "medium", "high", "critical")

VERBS = ("scale", "patch", "rollout_restart", "rollback", "delete", "create")
# Short names used in operation names (`delete_pvc`), besides the lower-cased kind (`delete_pod`).
KIND_ALIASES = {
    "persistentvolumeclaim": "pvc",
    "persistentvolume": "pv",
    "horizontalpodautoscaler": "hpa",
    "poddisruptionbudget": "pdb",
    "customresourcedefinition": "crd",
}
RBAC_KINDS = frozenset({"role", "rolebinding", "clusterrole", "clusterrolebinding", "serviceaccount"})
STATEFUL_KINDS = frozenset({"statefulset", "persistentvolumeclaim", "persistentvolume"})
# Deleting these loses data or access; never low risk.
DESTRUCTIVE_KINDS = frozenset(
    {
        "persistentvolumeclaim",
        "persistentvolume",
        "secret",
        "namespace",
        "statefulset",
        "customresourcedefinition",
    }
)


class SafetyPolicy(BaseModel):
    """The `safety_policy` section of the AI configuration (reference section 9)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    autonomy_level: AutonomyLevel = "2_review_before_apply"
    max_resource_deletion_count: int = Field(default=10, ge=0)
    protected_namespaces: list[str] = Field(default_factory=lambda: list(ALWAYS_PROTECTED))
    forbidden_operations: list[str] = Field(default_factory=lambda: ["delete_pvc", "delete_secret"])
    require_human_approval: dict[str, bool] = Field(
        default_factory=lambda: {"delete_pod": True, "modify_rbac": True, "scale_to_zero": True}
    )

    @field_validator("protected_namespaces")
    @classmethod
    def _always_protected(cls, value: list[str]) -> list[str]:
        # The system namespaces stay protected even when a client sends a list without them.
        extra = [ns for ns in value if ns not in ALWAYS_PROTECTED]
        return list(ALWAYS_PROTECTED) + list(dict.fromkeys(extra))

    @field_validator("forbidden_operations")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


@dataclass(frozen=True)
class ResourceRef:
    kind: str
    name: str
    namespace: str | None = None
    owner_kind: str | None = None  # the controller that owns it (ReplicaSet, StatefulSet, ...)


@dataclass(frozen=True)
class Operation:
    """A proposed change. `verb` is one of VERBS; `action_type` the name shown to users."""

    verb: str
    action_type: str | None = None
    current_replicas: int | None = None
    proposed_replicas: int | None = None
    deletion_count: int = 0  # objects the change deletes (a pod delete is 1)

    def __post_init__(self) -> None:
        if self.verb not in VERBS:
            raise ValueError(f"verb must be one of {', '.join(VERBS)}")


@dataclass(frozen=True)
class RiskAssessment:
    risk_level: str
    potential_issues: list[str]
    requires_approval: bool
    approval_reason: str | None
    allowed: bool
    blocked_reasons: list[str] = field(default_factory=list)
    operation_names: list[str] = field(default_factory=list)

    @property
    def auto_apply(self) -> bool:
        """May run without a human (autonomy level 3, low risk, nothing flagged)."""
        return self.allowed and not self.requires_approval

    def to_dict(self) -> dict[str, object]:
        """The reference's `risk_assessment` object, plus `allowed` and `blocked_reasons`."""
        return {
            "risk_level": self.risk_level,
            "potential_issues": list(self.potential_issues),
            "requires_approval": self.requires_approval,
            "approval_reason": self.approval_reason,
            "allowed": self.allowed,
            "blocked_reasons": list(self.blocked_reasons),
        }


def kind_key(kind: str) -> str:
    return kind.lower()


def operation_names(operation: Operation, resource: ResourceRef) -> list[str]:
    """Every name the policy may list this operation under: `delete`, `delete_pod`, `scale_to_zero`,
    `modify_rbac`, the action type..."""
    kind = kind_key(resource.kind)
    names = [operation.verb, f"{operation.verb}_{kind}"]
    if kind in KIND_ALIASES:
        names.append(f"{operation.verb}_{KIND_ALIASES[kind]}")
    if operation.action_type:
        names.append(operation.action_type)
    if operation.verb == "scale" and operation.proposed_replicas == 0:
        names.append("scale_to_zero")
    if operation.verb == "delete" and kind == "pod":
        names.append("restart_pod")
    if kind in RBAC_KINDS:
        names.append("modify_rbac")
    return list(dict.fromkeys(names))


def assess(operation: Operation, resource: ResourceRef, policy: SafetyPolicy) -> RiskAssessment:
    names = operation_names(operation, resource)
    risk, issues = _base_risk(operation, resource)
    blocked: list[str] = []

    protected = set(ALWAYS_PROTECTED) | set(policy.protected_namespaces)
    if resource.namespace in protected:
        blocked.append(f"namespace {resource.namespace!r} is protected")
    forbidden = [name for name in names if name in set(policy.forbidden_operations)]
    if forbidden:
        blocked.append(f"operation {forbidden[0]!r} is forbidden by the safety policy")
    if operation.deletion_count > policy.max_resource_deletion_count:
        blocked.append(
            f"deletes {operation.deletion_count} resources; the limit is {policy.max_resource_deletion_count}"
        )
    level = policy.autonomy_level
    if level == "0_observe_only":
        blocked.append("autonomy level 0_observe_only: AI actions are never executed")
    elif level == "1_suggest":
        blocked.append("autonomy level 1_suggest: AI actions are suggestions for a human to carry out")

    flagged = [name for name in names if policy.require_human_approval.get(name)]
    reasons: list[str] = []
    if flagged:
        reasons.append(f"the safety policy requires approval for {flagged[0]}")
    if level != "3_auto_apply_safe_operations":
        reasons.append(f"autonomy level {level} requires a human to review every change")
    elif risk != "low":
        reasons.append(f"{risk} risk: only low-risk operations are applied automatically")
    if blocked:
        reasons = ["not executable: " + "; ".join(blocked)]
    return RiskAssessment(
        risk_level=risk,
        potential_issues=issues,
        requires_approval=bool(reasons),
        approval_reason="; ".join(reasons) or None,
        allowed=not blocked,
        blocked_reasons=blocked,
        operation_names=names,
    )


def _base_risk(operation: Operation, resource: ResourceRef) -> tuple[str, list[str]]:
    kind = kind_key(resource.kind)
    owner = kind_key(resource.owner_kind or "")
    issues: list[str] = []
    risk = "medium"
    if operation.verb == "scale":
        current, proposed = operation.current_replicas, operation.proposed_replicas
        if proposed == 0:
            risk = "high"
            issues.append("Scaling to zero stops the workload entirely")
        elif current is not None and proposed is not None and proposed >= current:
            risk = "low"
            if proposed > current:
                issues.append("More replicas use more of the namespace's quota and the nodes' capacity")
        else:
            issues.append("Fewer replicas reduce capacity and availability")
    elif operation.verb == "rollout_restart":
        risk = "low"
        issues.append("Pods are replaced one by one; connections to old pods are closed")
    elif operation.verb == "rollback":
        issues.append("The previous revision's configuration and image come back")
    elif operation.verb == "patch":
        issues.append("The change triggers a rollout if it touches the pod template")
    elif operation.verb == "create":
        issues.append("A new object is added to the cluster")
    elif operation.verb == "delete":
        if kind == "pod" and owner:
            issues.append(f"The pod is recreated by its {resource.owner_kind}; brief interruption")
        elif kind == "pod":
            risk = "high"
            issues.append("The pod has no controller: it is not recreated")
        else:
            risk = "high"
            issues.append(f"The {resource.kind} is removed from the cluster")
        if kind in DESTRUCTIVE_KINDS:
            risk = "critical"
            issues.append("Data or credentials may be lost for good")
    if kind in STATEFUL_KINDS or owner == "statefulset":
        risk = _at_least(risk, "medium")
        issues.append("Stateful workload: possible data impact")
    if kind in RBAC_KINDS:
        risk = _at_least(risk, "high")
        issues.append("Changes who may do what in the cluster")
    if resource.namespace is None:
        risk = _at_least(risk, "high")
        issues.append("Cluster-scoped object: the change affects every namespace")
    return risk, issues


def _at_least(risk: str, floor: str) -> str:
    return risk if RISK_LEVELS.index(risk) >= RISK_LEVELS.index(floor) else floor
