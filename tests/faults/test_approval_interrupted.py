"""The process making an approved change dies halfway (POST /api/v1/ai/actions/{id}/approve): either
before the change reaches the API server, or after the API server applied it but before anything more
was recorded. The action is executed once or not at all, and says which: the next approve (or reject)
after the execution limit (here 3 s; 120 s by default, well over the approving Lambda's 29 s timeout) reads
the target, records `execution_interrupted` with `details.applied` in the audit trail, finishes the
action (`succeeded`: applied, not verified; `failed`: not applied) and answers 409 with what it found.
Approving again never executes it a second time.

Here the approving thread is frozen at the chosen point for good (a killed process writes nothing
more; it is ended, without another write, when the test finishes) while the store and the cluster go
on, which also shows the answer while the execution may still be running;
test_local_server_killed.py kills the local server itself (SIGKILL) and starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_ai_actions_function import approve, audit, handler, investigations, proposed  # noqa: F401
from tests.investigations_testbed import (
    APPROVE,
    REJECT,
    decision_event,
    ooming_namespace,
)
from tests.support import expect_error

pytestmark = pytest.mark.cluster

LIMIT = 3.0  # action_execution_limit_seconds here


class Killed(BaseException):
    """Ends a frozen approval when the test finishes (no handler catches it: nothing more is written)."""


class DyingKube:
    """The Kubernetes port, with a process that dies at the real (not dry-run) change: `before` the
    request is sent, or `after` the API server answered it."""

    def __init__(self, kube: Any):
        self._kube = kube
        self.point: str | None = None
        self.dead = threading.Event()
        self.buried = threading.Event()
        self.changes_sent = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kube, name)

    def patch(self, *args: Any, dry_run: bool = False, **kwargs: Any) -> Any:
        if dry_run or self.point is None:
            return self._kube.patch(*args, dry_run=dry_run, **kwargs)
        if self.point == "before":
            self._die()
        self.changes_sent += 1
        result = self._kube.patch(*args, dry_run=dry_run, **kwargs)
        self._die()
        return result

    def _die(self) -> None:
        self.dead.set()
        self.buried.wait()
        raise Killed()


@pytest.fixture(scope="module")
def oom(k8s_cluster) -> Iterator[str]:
    limits = {name: "256Mi" for name in ("cut-before", "cut-after")}
    with ooming_namespace(k8s_cluster, "cut", limits) as ns:
        yield ns


@pytest.fixture()
def dying(investigations, settings_env) -> Iterator[DyingKube]:  # noqa: F811
    from kubilitics import container

    settings_env.setenv("KUBILITICS_ACTION_EXECUTION_LIMIT_SECONDS", str(LIMIT))
    container.reset()
    services = container.get_container()
    kube = DyingKube(services.kube)
    services.__dict__["kube"] = kube  # before the action service is built
    yield kube
    kube.buried.set()


def deployment(cluster, ns: str, name: str) -> tuple[str, int]:
    """(the worker's memory limit, metadata.generation)"""
    out = cluster.kubectl(
        "get",
        "deployment",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].resources.limits.memory} {.metadata.generation}",
    ).stdout.split()
    return out[0], int(out[1])


def approve_in_background(handler, token: str, action_id: str) -> threading.Thread:  # noqa: F811
    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())  # Mangum runs the app on this thread's loop
        # Killed, however the app's layers hand it on: the process is gone.
        with contextlib.suppress(BaseException):
            approve(handler, token, action_id, require_verification=True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def decide_again(handler, token: str, action_id: str, sample: str = APPROVE) -> dict:  # noqa: F811
    return expect_error(handler, decision_event(sample, token, action_id), 409, "resource_conflict")


def interrupted_records(action_id: str) -> list[dict]:
    from kubilitics.container import get_container

    trail = get_container().actions.audit_trail(action_id)
    return [r for r in trail if r["event"] == "execution_interrupted"]


@pytest.mark.parametrize("point", ["before", "after"])
def test_an_approval_killed_midway_is_executed_once_or_not_at_all_and_says_which(
    investigations,  # noqa: F811
    handler,  # noqa: F811
    dying,
    mint,
    oom,
    k8s_cluster,
    point,
):
    token = mint(sub="oncall", scopes="read,write")
    name = f"cut-{point}"
    _, action = proposed(investigations, token, oom, name)
    action_id = action["action_id"]
    limit_before, generation_before = deployment(k8s_cluster, oom, name)

    dying.point = point
    approve_in_background(handler, token, action_id)
    assert dying.dead.wait(60), "the approval never reached the change"
    approved_at = time.monotonic()
    applied = point == "after"
    limit_now, generation_now = deployment(k8s_cluster, oom, name)
    assert (limit_now != limit_before) is applied
    assert generation_now == generation_before + (1 if applied else 0)

    # While it may still be running: the action is taken, nothing runs twice, nothing is concluded.
    early = decide_again(handler, token, action_id)
    assert early["details"]["status"] == "approved"
    assert early["details"]["execution_status"] == "executing"
    assert interrupted_records(action_id) == []

    # After the execution limit: the cluster says what happened, and so do the action and its audit.
    time.sleep(max(0.0, LIMIT + 0.2 - (time.monotonic() - approved_at)))
    settled = decide_again(handler, token, action_id)
    details = settled["details"]
    assert details["status"] == "approved"
    if applied:
        assert details["execution_status"] == "succeeded"
        assert details["execution_message"] == "Applied; the execution was interrupted before verification"
    else:
        assert details["execution_status"] == "failed"
        assert details["execution_message"] == "Not applied: the execution was interrupted before the change"
    assert audit(action_id) == ["approved", "dry_run", "execution_interrupted"]
    (record,) = interrupted_records(action_id)
    assert record["details"]["applied"] is applied
    assert record["details"]["execution_status_found"] == "executing"
    assert record["actor"].startswith("kubilitics")

    # Approving (or rejecting) again changes nothing: one change at most, one record of the outcome.
    again = decide_again(handler, token, action_id)
    assert again["details"]["execution_status"] == details["execution_status"]
    decide_again(handler, token, action_id, REJECT)
    assert len(interrupted_records(action_id)) == 1
    assert dying.changes_sent == (1 if applied else 0)
    assert deployment(k8s_cluster, oom, name) == (limit_now, generation_now)
