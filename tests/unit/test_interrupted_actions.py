"""An approved action whose execution stopped dead (its process was killed): the next decision on it,
after the execution limit, reads the target, records `execution_interrupted` once with whether the
change was made, and never runs it again (tests/faults/test_approval_interrupted.py does it on the
test cluster; here the pod-delete and scale cases with in-memory fakes)."""

from __future__ import annotations

from typing import Any

import pytest
from kubilitics.auth.tokens import Principal
from kubilitics.errors import KubiliticsError
from kubilitics.services.actions import ActionService

from tests.unit.test_actions_policy import SCALE_UP, MemoryActions, propose, restart_pod_action, service

DELETER = Principal("oncall", frozenset({"read", "write", "delete"}), "user", "j", 0)


class Actions(MemoryActions):
    def transition(
        self, action_id, from_status, to_status, fields, *, open_until_after=None, execution_status=None
    ):
        item = self.items.get(action_id)
        if execution_status is not None and (not item or item.get("execution_status") != execution_status):
            return False
        return super().transition(
            action_id, from_status, to_status, fields, open_until_after=open_until_after
        )


def interrupted_service() -> tuple[ActionService, Any, Actions]:
    svc, kube, _ = service({})
    store = Actions()
    svc._store = store  # type: ignore[assignment]
    return svc, kube, store


def die_after_approval(svc: ActionService, store: Actions, action_id: str, seconds_ago: float) -> None:
    """What a killed approval leaves: approved, `executing`, the approval `seconds_ago`."""
    now = svc._clock.now()
    store.transition(
        action_id,
        "pending",
        "approved",
        {"approved_by": "oncall", "approved_at": now - seconds_ago, "execution_status": "executing"},
    )


def decide_again(svc: ActionService, action_id: str) -> dict[str, Any]:
    with pytest.raises(KubiliticsError) as refused:
        svc.approve(DELETER, action_id, None, True)
    assert (refused.value.code, refused.value.status) == ("resource_conflict", 409)
    return refused.value.details


def events(store: Actions, action_id: str) -> list[tuple[str, Any]]:
    return [(r["event"], r["details"].get("applied")) for r in store.audit(action_id)]


@pytest.mark.parametrize("deleted", [True, False])
def test_an_interrupted_pod_restart_says_whether_the_pod_was_deleted(deleted):
    svc, kube, store = interrupted_service()
    action = restart_pod_action(svc, kube)
    die_after_approval(svc, store, action["action_id"], seconds_ago=121)
    if deleted:  # the delete went out before the process died
        kube.objects.pop(("Pod", "web-1"))
    details = decide_again(svc, action["action_id"])
    assert details["execution_status"] == ("succeeded" if deleted else "failed")
    assert details["execution_message"].startswith("Applied" if deleted else "Not applied")
    assert events(store, action["action_id"]) == [("execution_interrupted", deleted)]
    assert kube.applied == []  # nothing deleted by the decision itself
    decide_again(svc, action["action_id"])
    assert len(store.audit(action["action_id"])) == 1


def test_a_scale_interrupted_after_the_patch_is_applied_once():
    svc, kube, store = interrupted_service()
    [action] = propose(svc, [SCALE_UP])
    die_after_approval(svc, store, action["action_id"], seconds_ago=121)
    kube.patch(
        None, kube.resource_type(None, "Deployment"), "shop", "web", {"spec": {"replicas": 5}}, "merge"
    )
    details = decide_again(svc, action["action_id"])
    assert details["execution_status"] == "succeeded"
    assert events(store, action["action_id"]) == [("execution_interrupted", True)]
    assert len(kube.applied) == 1 and kube.objects[("Deployment", "web")]["metadata"]["generation"] == 2


def test_a_target_changed_otherwise_is_unknown_and_failed():
    svc, kube, store = interrupted_service()
    [action] = propose(svc, [SCALE_UP])
    die_after_approval(svc, store, action["action_id"], seconds_ago=121)
    kube.objects[("Deployment", "web")]["spec"]["replicas"] = 4  # someone else scaled it
    details = decide_again(svc, action["action_id"])
    assert details["execution_status"] == "failed" and "unknown" in details["execution_message"]
    assert events(store, action["action_id"]) == [("execution_interrupted", None)]


def test_within_the_limit_nothing_is_concluded():
    svc, kube, store = interrupted_service()
    [action] = propose(svc, [SCALE_UP])
    die_after_approval(svc, store, action["action_id"], seconds_ago=5)
    details = decide_again(svc, action["action_id"])
    assert details["execution_status"] == "executing" and "execution_message" not in details
    assert store.audit(action["action_id"]) == [] and kube.applied == []


def test_of_two_decisions_that_find_it_at_once_one_records_the_outcome():
    svc, _, store = interrupted_service()
    [action] = propose(svc, [SCALE_UP])
    die_after_approval(svc, store, action["action_id"], seconds_ago=121)
    stale = store.get(action["action_id"])
    now = svc._clock.now()
    first = svc._settle_interrupted(DELETER, stale, now)
    second = svc._settle_interrupted(DELETER, stale, now)  # read before the first wrote
    assert first["execution_status"] == second["execution_status"] == "failed"
    assert events(store, action["action_id"]) == [("execution_interrupted", False)]
