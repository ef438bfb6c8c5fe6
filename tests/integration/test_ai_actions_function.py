"""The AI actions function (GET /api/v1/ai/actions/pending, POST .../approve, POST .../reject) through
its Lambda handler with events/ payloads. The actions come from real investigations (the
investigations function, moto's Step Functions interpreter running the state machine) of workloads
on the test cluster that are OOMKilled; approving one changes the cluster for real."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import threading
import time
import uuid

import pytest

from tests.investigations_testbed import (
    APPROVE,
    PENDING,
    REJECT,
    decision_event,
    invoke,
    ooming_namespace,
    pending_event,
    start_event,
    wait_finished,
)
from tests.support import expect_error, load_event, revoke

LIMIT_PATH = "spec.template.spec.containers[worker].resources.limits.memory"
# queue-worker grows to ~700Mi: 400Mi doubled is enough, 256Mi doubled is not.
WORKLOADS = {
    "fixable": "400Mi",
    "unfixable": "256Mi",
    "stale": "256Mi",
    "twice": "256Mi",
    "racing": "256Mi",
    "late": "256Mi",
    "refused": "256Mi",
    "guarded": "256Mi",
    "unguarded": "256Mi",
    "viewers": "256Mi",
}


@pytest.fixture(scope="module")
def ooming(k8s_cluster):
    """A namespace of Deployments whose worker is OOMKilled (each test acts on its own one)."""
    with ooming_namespace(k8s_cluster, "actions", WORKLOADS) as ns:
        yield ns


@pytest.fixture()
def investigations(on_cluster, investigation_machine):
    return importlib.import_module("functions.ai_investigations.app").handler


@pytest.fixture()
def handler(investigations):
    return importlib.import_module("functions.ai_actions.app").handler


def investigate(investigations, token: str, namespace: str, name: str) -> dict:
    body = {
        "resource_kind": "Deployment",
        "namespace": namespace,
        "resource_name": name,
        "symptoms": ["restarts"],
        "investigation_scope": "quick",
    }
    status, _, started = invoke(investigations, start_event(token, body))
    assert status == 202, started
    item = wait_finished(investigations, token, started["investigation_id"], namespace)
    assert item["status"] == "completed", item
    assert item["root_cause"]["category"] == "oom_killed", item
    return item


def proposed(investigations, token: str, namespace: str, name: str) -> tuple[dict, dict]:
    """(the investigation, its increase_memory_limit action)"""
    item = investigate(investigations, token, namespace, name)
    actions = [a for a in item["actions"] if a["action_type"] == "increase_memory_limit"]
    assert len(actions) == 1, item["actions"]
    return item, actions[0]


def memory_limit(cluster, namespace: str, name: str) -> str:
    return cluster.kubectl(
        "get",
        "deployment",
        name,
        "-n",
        namespace,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}",
    ).stdout


def audit(action_id: str) -> list[str]:
    from kubilitics.container import get_container

    return [r["event"] for r in get_container().actions.audit_trail(action_id)]


def approve(handler, token, action_id, **body):
    return invoke(handler, decision_event(APPROVE, token, action_id, body or None))


@pytest.fixture()
def token(mint):
    return mint(sub="oncall", scopes="read,write")


# -- the queue ------------------------------------------------------------------------------------


def test_an_oom_investigation_proposes_a_concrete_memory_limit_change(
    investigations, handler, token, ooming, k8s_cluster
):
    item, action = proposed(investigations, token, ooming, "fixable")
    assert action["status"] == "pending"
    rec = next(r for r in item["recommendations"] if r["action"] == "increase_memory_limit")
    assert rec["action_id"] == action["action_id"]

    status, _, body = invoke(handler, pending_event(token, investigation_id=item["investigation_id"]))
    assert status == 200, body
    assert body["total_count"] == 1
    listed = body["pending_actions"][0]
    assert re.fullmatch(r"act-\d{8}-[0-9a-f]{6}", listed["action_id"])
    assert listed["investigation_id"] == item["investigation_id"]
    assert listed["action_type"] == "increase_memory_limit"
    assert listed["severity"] == item["severity"]
    assert listed["resource"] == {"kind": "Deployment", "namespace": ooming, "name": "fixable"}
    assert listed["changes"] == {LIMIT_PATH: {"current": "400Mi", "proposed": "800Mi"}}
    assert "from 400Mi to 800Mi" in listed["description"]
    risk = listed["risk_assessment"]
    assert risk["risk_level"] == "medium" and risk["requires_approval"] is True and risk["allowed"] is True
    assert "2_review_before_apply" in risk["approval_reason"]
    proposed_at = time.strptime(listed["proposed_at"], "%Y-%m-%dT%H:%M:%SZ")
    expires_at = time.strptime(listed["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert time.mktime(expires_at) - time.mktime(proposed_at) == 7200

    other = "critical" if listed["severity"] != "critical" else "low"
    _, _, none = invoke(
        handler, pending_event(token, severity=other, investigation_id=item["investigation_id"])
    )
    assert none == {"total_count": 0, "pending_actions": []}
    _, _, limited = invoke(handler, pending_event(token, limit=1))
    assert len(limited["pending_actions"]) == 1 and limited["total_count"] >= 1
    assert memory_limit(k8s_cluster, ooming, "fixable") == "400Mi"  # nothing applied yet


# -- approving --------------------------------------------------------------------------------------


def test_approving_applies_the_change_and_verifies_it(investigations, handler, token, ooming, k8s_cluster):
    _, action = proposed(investigations, token, ooming, "fixable")
    status, _, body = approve(handler, token, action["action_id"], approval_notes="on-call ok")
    assert status == 200, body
    assert body["status"] == "approved" and body["approved_by"] == "oncall"
    assert body["execution_status"] == "succeeded", body
    assert body["verification"]["verified"] is True
    assert "the changed fields hold the proposed values" in body["verification"]["checks"]
    assert memory_limit(k8s_cluster, ooming, "fixable") == "800Mi"
    assert audit(action["action_id"]) == ["approved", "dry_run", "applied", "verified"]
    _, _, pending = invoke(handler, pending_event(token))
    assert action["action_id"] not in [a["action_id"] for a in pending["pending_actions"]]


def test_a_change_that_does_not_help_is_rolled_back(investigations, handler, token, ooming, k8s_cluster):
    _, action = proposed(investigations, token, ooming, "unfixable")
    status, _, body = approve(handler, token, action["action_id"])
    assert status == 200, body
    assert body["execution_status"] == "rolled_back", body
    assert body["verification"]["verified"] is False
    assert "OOMKilled" in body["verification"]["message"] or "restarted" in body["verification"]["message"]
    assert body["rollback"] == {"succeeded": True, "restored": {LIMIT_PATH: {"restored": "256Mi"}}}
    assert memory_limit(k8s_cluster, ooming, "unfixable") == "256Mi"
    assert audit(action["action_id"]) == [
        "approved",
        "dry_run",
        "applied",
        "verification_failed",
        "rolled_back",
    ]


def test_a_target_changed_since_the_proposal_is_not_touched(
    investigations, handler, token, ooming, k8s_cluster
):
    _, action = proposed(investigations, token, ooming, "stale")
    k8s_cluster.kubectl("set", "env", "deployment/stale", "-n", ooming, "QUEUE=urgent")
    error = expect_error(
        handler, decision_event(APPROVE, token, action["action_id"]), 409, "resource_conflict"
    )
    assert error["details"]["action_id"] == action["action_id"]
    assert error["details"]["current_resource_version"] != error["details"]["proposed_resource_version"]
    assert memory_limit(k8s_cluster, ooming, "stale") == "256Mi"
    assert audit(action["action_id"]) == ["approved", "conflict"]
    again = expect_error(
        handler, decision_event(APPROVE, token, action["action_id"]), 409, "resource_conflict"
    )
    assert again["details"]["status"] == "superseded"


def test_the_approvers_own_rbac_makes_the_change(investigations, handler, mint, ooming, k8s_cluster):
    # The proposal comes from an admin's investigation; who approves decides whether it applies.
    _, action = proposed(investigations, mint(sub="oncall", scopes="read,write"), ooming, "viewers")
    viewer, editor = f"viewer-{uuid.uuid4().hex[:6]}", f"editor-{uuid.uuid4().hex[:6]}"
    for user, role in ((viewer, "view"), (editor, "edit")):
        k8s_cluster.kubectl(
            "create", "rolebinding", f"{user}-{role}", "-n", ooming, f"--clusterrole={role}",
            f"--user=kubilitics:{user}",
        )  # fmt: skip
    # Both tokens hold `write`; only the cluster's RBAC tells them apart (no group: no cluster-admin).
    refused = expect_error(
        handler,
        decision_event(APPROVE, mint(sub=viewer, scopes="read,write", groups=()), action["action_id"], None),
        403,
        "forbidden",
    )
    assert refused["details"] == {"verb": "patch", "kind": "Deployment", "namespace": ooming}
    assert memory_limit(k8s_cluster, ooming, "viewers") == "256Mi"
    assert audit(action["action_id"]) == []  # still pending: another approver may take it
    status, _, body = approve(handler, mint(sub=editor, scopes="read,write", groups=()), action["action_id"])
    assert status == 200 and body["approved_by"] == editor, body
    assert body["execution_status"] in ("succeeded", "rolled_back"), body
    assert audit(action["action_id"])[:3] == ["approved", "dry_run", "applied"]


def test_approving_twice_executes_once(investigations, handler, token, ooming):
    _, action = proposed(investigations, token, ooming, "twice")
    status, _, first = approve(handler, token, action["action_id"], require_verification=False)
    assert (status, first["execution_status"]) == (200, "succeeded"), first
    second = expect_error(
        handler, decision_event(APPROVE, token, action["action_id"]), 409, "resource_conflict"
    )
    assert second["details"]["status"] == "approved" and second["details"]["decided_by"] == "oncall"
    expect_error(
        handler,
        decision_event(REJECT, token, action["action_id"], {"reason": "late"}),
        409,
        "resource_conflict",
    )
    assert audit(action["action_id"]).count("applied") == 1


def test_concurrent_approvals_execute_once(investigations, handler, mint, ooming):
    token = mint(sub="oncall", scopes="read,write")
    _, action = proposed(investigations, token, ooming, "racing")
    results: list[int] = []
    barrier = threading.Barrier(3)

    def race(sub: str) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())  # Mangum runs the app on this thread's loop
        event = decision_event(
            APPROVE, mint(sub=sub, scopes="write"), action["action_id"], {"require_verification": False}
        )
        barrier.wait()
        results.append(invoke(handler, event)[0])

    threads = [threading.Thread(target=race, args=(f"user{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [200, 409, 409]
    trail = audit(action["action_id"])
    assert trail.count("approved") == 1 and trail.count("applied") == 1


def test_an_expired_action_answers_410(investigations, handler, token, ooming, k8s_cluster):
    from kubilitics.container import get_container

    _, action = proposed(investigations, token, ooming, "late")
    get_container().action_store.update(action["action_id"], {"approval_expires_at": time.time() - 5})
    error = expect_error(handler, decision_event(APPROVE, token, action["action_id"]), 410, "action_expired")
    assert error["message"] == "Action approval window has expired"
    assert error["action_id"] == action["action_id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", error["expired_at"])
    assert error["details"] == {"action_id": action["action_id"], "expired_at": error["expired_at"]}
    expect_error(handler, decision_event(REJECT, token, action["action_id"]), 410, "action_expired")
    _, _, pending = invoke(handler, pending_event(token))
    assert action["action_id"] not in [a["action_id"] for a in pending["pending_actions"]]
    assert memory_limit(k8s_cluster, ooming, "late") == "256Mi"
    assert audit(action["action_id"]) == ["expired"]


def test_rejecting(investigations, handler, token, ooming, k8s_cluster):
    _, action = proposed(investigations, token, ooming, "refused")
    status, _, body = invoke(
        handler, decision_event(REJECT, token, action["action_id"], {"reason": "Not during business hours."})
    )
    assert status == 200, body
    assert body["status"] == "rejected" and body["rejected_by"] == "oncall"
    assert body["reason"] == "Not during business hours."
    _, _, pending = invoke(handler, pending_event(token))
    assert action["action_id"] not in [a["action_id"] for a in pending["pending_actions"]]
    expect_error(handler, decision_event(APPROVE, token, action["action_id"]), 409, "resource_conflict")
    assert memory_limit(k8s_cluster, ooming, "refused") == "256Mi"
    assert audit(action["action_id"]) == ["rejected"]


# -- the safety policy ------------------------------------------------------------------------------


def test_a_protected_namespace_is_never_changed_at_any_autonomy_level(
    investigations, handler, mint, ooming, k8s_cluster
):
    from kubilitics.container import get_container

    get_container().ai_config.update(
        {
            "safety_policy": {
                "autonomy_level": "3_auto_apply_safe_operations",
                "protected_namespaces": [ooming],
            },
            "investigation_settings": {"auto_remediation_enabled": True},
        },
        lambda: None,
        "admin",
    )
    token = mint(sub="oncall", scopes="read,write")
    _, action = proposed(investigations, token, ooming, "guarded")
    assert action["status"] == "blocked"
    _, _, pending = invoke(handler, pending_event(token))
    assert action["action_id"] not in [a["action_id"] for a in pending["pending_actions"]]
    error = expect_error(
        handler, decision_event(APPROVE, mint(scopes="admin"), action["action_id"]), 403, "forbidden"
    )
    assert f"namespace '{ooming}' is protected" in error["details"]["blocked_reasons"]
    assert memory_limit(k8s_cluster, ooming, "guarded") == "256Mi"
    assert audit(action["action_id"]) == ["blocked"]


def test_a_namespace_protected_after_the_proposal_is_not_changed(
    investigations, handler, token, ooming, k8s_cluster
):
    from kubilitics.container import get_container

    _, action = proposed(investigations, token, ooming, "unguarded")
    assert action["status"] == "pending"
    get_container().ai_config.update(
        {"safety_policy": {"protected_namespaces": [ooming]}}, lambda: None, "admin"
    )
    error = expect_error(handler, decision_event(APPROVE, token, action["action_id"]), 403, "forbidden")
    assert error["details"]["action_id"] == action["action_id"]
    assert memory_limit(k8s_cluster, ooming, "unguarded") == "256Mi"
    assert audit(action["action_id"]) == ["blocked"]


# -- errors and authentication ----------------------------------------------------------------------


def test_unknown_actions_are_404(handler, token):
    for sample in (APPROVE, REJECT):
        error = expect_error(handler, decision_event(sample, token, "act-20260210-000000"), 404, "not_found")
        assert error["details"] == {"action_id": "act-20260210-000000"}


def test_bad_parameters_are_refused(handler, token):
    expect_error(handler, pending_event(token, severity="urgent"), 400, "invalid_parameter")
    expect_error(handler, pending_event(token, limit=0), 400, "invalid_parameter")
    expect_error(
        handler,
        decision_event(APPROVE, token, "act-x", {"require_verification": "sometimes"}),
        400,
        "validation_failed",
    )
    expect_error(handler, decision_event(REJECT, token, "act-x", {"why": "no"}), 400, "validation_failed")


@pytest.mark.parametrize("sample", [PENDING, APPROVE, REJECT])
def test_every_endpoint_needs_a_valid_token(handler, mint, sample):

    expect_error(handler, load_event(sample, token=None), 401, "unauthorized")
    expect_error(handler, load_event(sample, token="abc.def.ghi"), 401, "unauthorized")
    expired = mint(scopes="admin", now=time.time() - 7200, ttl_seconds=3600)
    expect_error(handler, load_event(sample, token=expired), 401, "token_expired")
    revoked = mint(scopes="admin")
    revoke(revoked)
    expect_error(handler, load_event(sample, token=revoked), 401, "token_revoked")


def test_scopes(handler, mint):
    assert (
        expect_error(handler, pending_event(mint(scopes="exec")), 403, "insufficient_scope")["details"][
            "required_scope"
        ]
        == "read"
    )
    for sample in (APPROVE, REJECT):
        error = expect_error(
            handler, decision_event(sample, mint(scopes="read"), "act-x"), 403, "insufficient_scope"
        )
        assert error["details"]["required_scope"] == "write"
    body = json.loads(load_event(APPROVE, token="x")["body"])
    assert body == {"approval_notes": "Approved by on-call engineer.", "require_verification": True}


# -- what approving needs (no cluster: refused before the cluster is reached) ----------------------


@pytest.fixture()
def bare_handler(aws):
    return importlib.import_module("functions.ai_actions.app").handler


def stored_restart_pod(action_id: str) -> dict:
    """A pending restart_pod action as an investigation stores it (a pod delete with grace 0)."""
    from kubilitics.container import get_container

    now = time.time()
    action = {
        "action_id": action_id,
        "investigation_id": "inv-1",
        "verb": "delete",
        "action_type": "restart_pod",
        "title": "Restart pod web-1 away from node n1",
        "description": "Node n1 stopped reporting",
        "resource": {"kind": "Pod", "namespace": "shop", "name": "web-1"},
        "context": None,
        "severity": "critical",
        "status": "pending",
        "execution_status": "not_started",
        "risk_assessment": {"risk_level": "high", "allowed": True, "blocked_reasons": []},
        "request": {"patch": None, "patch_type": "strategic", "grace_period_seconds": 0},
        "baseline": {"uid": "p-1", "resource_version": "11", "generation": None, "fingerprint": "f"},
        "proposed_at": now,
        "approval_expires_at": now + 3600,
        "expires_at": int(now) + 86400,
    }
    get_container().action_store.put(action)
    return action


def test_approving_an_action_that_deletes_needs_the_delete_scope(bare_handler, mint):
    action = stored_restart_pod("act-20260210-restart")
    error = expect_error(
        bare_handler,
        decision_event(APPROVE, mint(sub="oncall", scopes="read,write"), action["action_id"]),
        403,
        "insufficient_scope",
    )
    assert error["details"] == {"required_scope": "delete", "granted_scopes": ["read", "write"]}
    from kubilitics.container import get_container

    assert (get_container().action_store.get(action["action_id"]) or {})["status"] == "pending"
    assert audit(action["action_id"]) == []
    # Rejecting changes nothing in the cluster: `write` is enough.
    status, _, body = invoke(
        bare_handler, decision_event(REJECT, mint(sub="oncall", scopes="write"), action["action_id"])
    )
    assert (status, body["status"]) == (200, "rejected"), body
