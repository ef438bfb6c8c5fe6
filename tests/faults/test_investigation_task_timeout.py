"""The investigation task Lambda timing out mid-run: the real state machine on moto's interpreter, its
task function routed as on Lambda with a 2 s Timeout (kubilitics.local.workflows: an invocation that
outlives it is a `Sandbox.Timedout` function error, as Lambda reports it to Step Functions).

A step that hangs (here: frozen until the test ends, as a process Lambda stopped; it then dies without
another write) is retried by the state machine, then the investigation ends `failed`, with the step and
the timeout named, and the requester's concurrency slots are given back; never `in_progress` forever.
The LLM step timing out instead falls back to the rules' answer, which says so.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.test_ai_investigations_function import (  # noqa: F401
    body_for,
    crashing,
    handler,
    shared_slots_held,
    slots_held,
    start,
)
from tests.investigations_testbed import find, wait_finished

pytestmark = pytest.mark.cluster

LAMBDA_TIMEOUT = 2.0


class Killed(Exception):
    """Raised in a frozen invocation when the test ends: it stops without writing anything more (an
    invocation still within its timeout then ends as a function error, as a killed process's does)."""


class Hang:
    """Wraps the task handler: invocations of the `tasks` freeze (every one, or the first `times`)."""

    def __init__(self, tasks_handler, tasks: str, times: int | None = None):
        self.handler, self.tasks, self.times = tasks_handler, tasks.split(","), times
        self.frozen = 0
        self.released = threading.Event()

    def __call__(self, event, context):
        frozen = self.times is None or self.frozen < self.times
        if event.get("task") in self.tasks and frozen and not self.released.is_set():
            self.frozen += 1
            self.released.wait()
            raise Killed()
        return self.handler(event, context)


@pytest.fixture()
def hang(investigation_machine, settings_env) -> Iterator[callable]:
    """hang(task, times=None): route the task function with a 2 s timeout and freeze that task."""
    from kubilitics.local import workflows

    tasks = importlib.import_module("functions.investigation_tasks.app").handler
    made: list[Hang] = []

    def install(task: str, times: int | None = None) -> Hang:
        wrapped = Hang(tasks, task, times)  # task: one, or several comma-separated
        workflows.route_lambda_tasks(
            {workflows.TASKS_FUNCTION: wrapped}, patch=settings_env.setattr, timeout_seconds=LAMBDA_TIMEOUT
        )
        made.append(wrapped)
        return wrapped

    yield install
    for wrapped in made:
        wrapped.released.set()


def test_a_step_that_times_out_ends_the_investigation_failed_and_gives_the_slots_back(
    handler,  # noqa: F811
    hang,
    mint,
    crashing,  # noqa: F811
):
    frozen = hang("analyze")  # mid-run: the evidence is gathered, then the analysis never answers
    token = mint(sub="tim", scopes="read,write")
    began = time.monotonic()
    started = start(handler, token, body_for(crashing, investigation_scope="quick"))
    assert slots_held("tim") == 1
    item = wait_finished(handler, token, started["investigation_id"], crashing, timeout=60)
    took = time.monotonic() - began

    assert item["status"] == "failed", item
    assert frozen.frozen == 3  # the first invocation and the state machine's two retries
    error = item["error"]
    assert error["error"] == "investigation_failed"
    assert error["details"] == {"step": "analyze", "error_type": "Sandbox.Timedout"}
    assert "Task timed out after 2.00 seconds" in error["message"], error
    assert slots_held("tim") == 0 and shared_slots_held() == 0
    assert took < 45  # three 2 s timeouts and the retry intervals (2 s, 4 s with jitter)

    # The user can start again at once (the slot is back) and it completes when nothing hangs.
    frozen.released.set()
    again = start(handler, token, body_for(crashing, investigation_scope="quick"))
    hang("nothing")
    assert wait_finished(handler, token, again["investigation_id"], crashing)["status"] == "completed"
    assert slots_held("tim") == 0


def test_the_llm_step_timing_out_falls_back_to_the_rules_answer(
    handler,  # noqa: F811
    hang,
    mint,
    crashing,  # noqa: F811
):
    hang("reason")
    token = mint(sub="rita", scopes="read,write")
    started = start(handler, token, body_for(crashing, investigation_scope="quick"))
    item = wait_finished(handler, token, started["investigation_id"], crashing, timeout=60)
    assert item["status"] == "completed", item
    assert item["root_cause"]["category"] == "app_crash"
    assert item["analysis"]["mode"] == "rules"
    assert item["analysis"]["llm_fallback"]["error"] == "Sandbox.Timedout"
    assert "Task timed out" in item["analysis"]["llm_fallback"]["message"]
    assert slots_held("rita") == 0


def test_an_investigation_whose_failure_cannot_be_recorded_either_is_failed_after_the_run_limit(
    handler,  # noqa: F811
    hang,
    mint,
    crashing,  # noqa: F811
    settings_env,
):
    """The analysis and the MarkFailed step both time out (the state machine's catch ends in its Fail
    state with nothing recorded; so does its own 1800 s TimeoutSeconds): the record would say
    `in_progress` forever. Listed after the run limit (here 15 s) it is failed, slots given back."""
    from kubilitics import container

    settings_env.setenv("KUBILITICS_INVESTIGATION_RUN_LIMIT_SECONDS", "15")
    container.reset()
    hang("analyze,mark_failed")
    token = mint(sub="olga", scopes="read,write")
    began = time.monotonic()
    started = start(handler, token, body_for(crashing, investigation_scope="quick"))
    deadline = time.monotonic() + 60
    while (item := find(handler, token, started["investigation_id"], crashing))["status"] == "in_progress":
        assert time.monotonic() < deadline, item
        time.sleep(1)  # a user polling now and then (within the 100 reads a minute)
    assert item["status"] == "failed", item
    assert time.monotonic() - began >= 14
    assert item["error"]["error"] == "investigation_failed"
    assert item["error"]["message"] == "The investigation did not finish within 15 s"
    assert item["error"]["details"]["error_type"] == "States.Timeout"
    assert item["completion_time"] is not None
    assert slots_held("olga") == 0 and shared_slots_held() == 0
