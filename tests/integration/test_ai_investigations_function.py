"""The AI investigations function (POST /api/v1/ai/investigate, GET /api/v1/ai/investigations) through
its Lambda handler with events/ payloads. Each investigation runs on moto's Step Functions interpreter
executing statemachine/investigation.asl.json, whose tasks run functions/investigation_tasks/app.py
in this process, against the real test cluster. The LLM is the fake Messages API server."""

from __future__ import annotations

import importlib
import json
import re
import time

import pytest

from tests.investigations_testbed import (
    CRASHING_POD,
    LIST,
    START,
    find,
    invoke,
    list_event,
    start_event,
    wait_finished,
    wait_for,
)
from tests.support import expect_error, load_event, revoke

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
CONTEXT = "kubilitics-testbed"
CANARY = "canary-Zq8v-7Hn2-hunter2-do-not-leak"


@pytest.fixture()
def handler(on_cluster, investigation_machine):
    return importlib.import_module("functions.ai_investigations.app").handler


@pytest.fixture()
def llm(settings_env, fake_messages_api, handler):
    """Claude configured (the fake Messages API): investigations take the LLM path."""
    from kubilitics import container

    settings_env.setenv("KUBILITICS_ANTHROPIC_API_KEY", fake_messages_api.api_key)
    settings_env.setenv("KUBILITICS_ANTHROPIC_BASE_URL", fake_messages_api.url)
    container.reset()
    return fake_messages_api


@pytest.fixture(scope="module")
def crashing(k8s_cluster):
    """A namespace with a pod in CrashLoopBackOff (its program panics at start, exit 1), and a Secret
    holding a canary value that must never reach an LLM."""
    from tests.pods_testbed import create_namespace, delete_namespace

    ns = create_namespace(k8s_cluster, "inv-crash")
    k8s_cluster.kubectl("apply", "-n", ns, "-f", "-", input=CRASHING_POD)
    k8s_cluster.kubectl(
        "create", "secret", "generic", "orders-db", "-n", ns, f"--from-literal=password={CANARY}"
    )
    # Crash-looping, as a user would see it: exited with 1 and now in CrashLoopBackOff.
    status = (
        "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        "/{.status.containerStatuses[0].state.waiting.reason}"
    )
    wait_for(
        lambda: (
            k8s_cluster.kubectl(
                "get", "pod", "orders", "-n", ns, "-o", f"jsonpath={status}", check=False
            ).stdout
            == "1/CrashLoopBackOff"
        ),
        timeout=120,
        what="the orders pod to crash-loop",
    )
    yield ns
    delete_namespace(k8s_cluster, ns)


def body_for(namespace: str, **overrides) -> dict:
    return {
        "resource_kind": "Pod",
        "namespace": namespace,
        "resource_name": "orders",
        "symptoms": ["Pod repeatedly crashing", "CrashLoopBackOff status"],
        "investigation_scope": "deep",
        "search_window_minutes": 120,
        **overrides,
    }


def start(handler, token, body) -> dict:
    status, _, started = invoke(handler, start_event(token, body))
    assert status == 202, started
    return started


def stored(investigation_id: str) -> dict:
    from kubilitics.container import get_container

    record = get_container().investigation_store.get(investigation_id)
    assert record is not None
    return record


def slots_held(sub: str) -> int:
    from kubilitics.adapters.dynamodb import DynamoRateLimitStore
    from kubilitics.container import get_container

    store = DynamoRateLimitStore(get_container().settings.rate_limit_table)
    return store.slot_count(f"cc#{sub}#investigations")


def shared_slots_held() -> int:
    from kubilitics.adapters.dynamodb import DynamoRateLimitStore
    from kubilitics.container import get_container

    store = DynamoRateLimitStore(get_container().settings.rate_limit_table)
    return store.slot_count("cc-all#investigations")


# -- a whole investigation ----------------------------------------------------------------------


def test_a_crashlooping_pod_is_diagnosed_as_an_app_crash_with_moving_progress(handler, mint, crashing):
    token = mint(sub="alice", scopes="read,write")
    started = start(handler, token, body_for(crashing))
    assert re.fullmatch(r"inv-\d{8}-[0-9a-f]{6}", started["investigation_id"])
    assert started["status"] == "in_progress"
    assert started["resource"] == {"kind": "Pod", "namespace": crashing, "name": "orders"}
    assert RFC3339.match(started["start_time"]) and RFC3339.match(started["estimated_completion_time"])
    assert started["estimated_completion_time"] > started["start_time"]
    assert started["progress_percent"] == 10

    seen: list[int] = []
    item = wait_finished(handler, token, started["investigation_id"], crashing, seen=seen)
    assert item["status"] == "completed", item
    assert item["root_cause"]["category"] == "app_crash"
    assert item["root_cause"]["confidence"] >= 0.9
    assert "exits with code 1" in item["root_cause"]["summary"]
    assert item["severity"] in ("critical", "high")  # critical while no run of the pod is ready
    assert item["progress_percent"] == 100
    assert RFC3339.match(item["completion_time"]) and item["completion_time"] >= item["start_time"]
    assert "panic: runtime error" in item["findings_summary"]
    assert item["recommendations"][0]["priority"] == 1
    assert item["recommendations"][0]["action"] == "fix_application_error"
    # Evidence cites where each fact comes from: the pod's status field, the event, the log line.
    sources = {
        (e["source"], e.get("field") or e.get("reason") or e.get("container")) for e in item["evidence"]
    }
    assert ("object", "status.containerStatuses[orders].lastState.terminated.exitCode") in sources
    assert ("event", "BackOff") in sources
    log_lines = [e for e in item["evidence"] if e["source"] == "log"]
    assert log_lines and log_lines[0]["previous"] is True and "panic" in log_lines[0]["value"]
    assert item["analysis"]["mode"] == "rules"
    assert "Most likely cause" in item["explanation"]
    # Progress moved step by step, as the poll saw it and as every step recorded it.
    assert seen == sorted(seen) and seen[0] < 100 and seen[-1] == 100
    steps = stored(started["investigation_id"])["steps"]
    assert [(s["step"], s["progress"]) for s in steps] == [
        ("gather", 35),
        ("analyze", 55),
        ("reason", 80),
        ("propose_actions", 90),
        ("complete", 100),
    ]
    assert slots_held("alice") == 0  # the complete step gave the concurrency slot back


def test_the_target_must_exist(handler, mint, crashing):
    token = mint(sub="alice", scopes="read,write")
    body = expect_error(
        handler,
        start_event(token, body_for(crashing, resource_name="crash-loop-pod-abc123")),
        400,
        "invalid_investigation_request",
    )
    assert body["message"] == "Pod not found"
    assert body["details"]["namespace"] == crashing
    assert body["details"]["resource_name"] == "crash-loop-pod-abc123"
    missing_ns = expect_error(
        handler, start_event(token, body_for("no-such-namespace-x1")), 400, "invalid_investigation_request"
    )
    assert missing_ns["details"]["namespace"] == "no-such-namespace-x1"
    kind = expect_error(
        handler, start_event(token, body_for(crashing, resource_kind="Gizmo")), 400, "invalid_resource_kind"
    )
    assert "Pod" in kind["details"]["valid_kinds"]
    assert slots_held("alice") == 0
    _, _, listed = invoke(handler, list_event(token))
    assert listed["total_count"] == 0


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"resource_name": None}, "missing_required_field", "resource_name"),
        ({"resource_kind": None}, "missing_required_field", "resource_kind"),
        ({"search_window_minutes": 0}, "validation_failed", "search_window_minutes"),
        ({"search_window_minutes": 1441}, "validation_failed", "search_window_minutes"),
        ({"investigation_scope": "everything"}, "validation_failed", "investigation_scope"),
        ({"symptoms": ["x"] * 21}, "validation_failed", "symptoms"),
        ({"symptoms": "crashing"}, "validation_failed", "symptoms"),
        ({"priority": "high"}, "validation_failed", "priority"),
    ],
)
def test_the_body_is_validated(handler, mint, crashing, change, code, field):
    body = {k: v for k, v in {**body_for(crashing), **change}.items() if v is not None}
    error = expect_error(handler, start_event(mint(scopes="write"), body), 400, code)
    fields = [v["field"] for v in error["details"]["violations"]]
    assert any(f.startswith(field) for f in fields), error


def test_five_running_investigations_per_user_at_most(handler, mint, crashing):
    from kubilitics.container import get_container

    services = get_container()
    token = mint(sub="bob", scopes="read,write")
    principal = services.token_codec.decode(token, now=time.time())
    for _ in range(5):
        services.rate_limiter.acquire_slot(principal, "investigations")
    error = expect_error(handler, start_event(token, body_for(crashing)), 429, "rate_limit_exceeded")
    assert error["details"] == {"category": "investigations", "concurrent_limit": 5}
    services.rate_limiter.release_slot("bob", "investigations")
    started = start(handler, token, body_for(crashing, investigation_scope="quick"))
    assert wait_finished(handler, token, started["investigation_id"], crashing)["status"] == "completed"
    assert slots_held("bob") == 4


def test_the_ai_config_caps_investigations_running_for_all_users_at_once(handler, mint, crashing):
    from kubilitics.container import get_container

    services = get_container()
    config = services.ai_config
    for _ in range(5):  # five in progress for other users: the default cap of 5 is reached
        services.rate_limiter.acquire_shared_slot("investigations", 5)
    try:
        token = mint(sub="dave", scopes="read,write")
        error = expect_error(handler, start_event(token, body_for(crashing)), 429, "rate_limit_exceeded")
        assert error["details"] == {"category": "investigations", "concurrent_limit": 5, "scope": "all_users"}
        assert slots_held("dave") == 0  # the user's own slot was given back

        # PUT /api/v1/ai/config applies to the next request.
        config.update({"investigation_settings": {"max_concurrent_investigations": 6}}, lambda: None, "admin")
        started = start(handler, token, body_for(crashing, investigation_scope="quick"))
        assert wait_finished(handler, token, started["investigation_id"], crashing)["status"] == "completed"
        assert shared_slots_held() == 5 and slots_held("dave") == 0
    finally:
        for _ in range(5):
            services.rate_limiter.release_shared_slot("investigations")
        config.update({"investigation_settings": {"max_concurrent_investigations": 5}}, lambda: None, "admin")


def test_a_failing_step_marks_the_investigation_failed_and_frees_the_slot(
    handler, mint, crashing, settings_env
):
    from kubilitics.services.investigation_tasks import InvestigationTasks

    def broken(self, investigation_id, state, event):
        raise RuntimeError("analyzer exploded")

    settings_env.setattr(InvestigationTasks, "_analyze", broken)
    token = mint(sub="carol", scopes="read,write")
    started = start(handler, token, body_for(crashing, investigation_scope="quick"))
    item = wait_finished(handler, token, started["investigation_id"], crashing, timeout=60)
    assert item["status"] == "failed"
    assert item["error"]["error"] == "investigation_failed"
    assert item["error"]["details"] == {"step": "analyze", "error_type": "RuntimeError"}
    assert "analyzer exploded" in item["error"]["message"]
    assert item["progress_percent"] == 35  # gather was done
    assert item["completion_time"] is not None
    assert slots_held("carol") == 0


# -- the LLM path ---------------------------------------------------------------------------------


def test_the_llm_explains_with_read_only_tools_and_never_sees_secret_values(handler, llm, mint, crashing):
    llm.reply_tool_use("get_object", {"kind": "Secret", "namespace": crashing, "name": "orders-db"})
    llm.reply_tool_use(
        "read_logs", {"namespace": crashing, "pod": "orders", "previous": True, "tail_lines": 20}
    )
    verdict = {"category": "app_crash", "confidence": 0.9, "summary": "orders 2.3.1 panics on a nil config."}
    llm.reply_text("The pod crashes because loadConfig dereferences nil.\n" + json.dumps(verdict))
    token = mint(sub="dave", scopes="read,write")
    started = start(handler, token, body_for(crashing))
    item = wait_finished(handler, token, started["investigation_id"], crashing)
    assert item["status"] == "completed", item
    assert item["root_cause"]["category"] == "app_crash"
    assert item["root_cause"]["summary"] == "orders 2.3.1 panics on a nil config."
    assert item["explanation"] == "The pod crashes because loadConfig dereferences nil."
    assert item["analysis"]["mode"] == "rules+llm", stored(started["investigation_id"])["steps"]
    assert item["analysis"]["llm_outcome"]["outcome"] == "agreed"
    assert item["analysis"]["tool_calls"] == ["get_object", "read_logs"]
    requests = llm.message_requests
    assert len(requests) == 3
    first = requests[0].body["messages"][0]["content"]
    assert "Rule-based analyzers" in first and '"app_crash"' in first
    assert {t["name"] for t in requests[0].body["tools"]} >= {"get_object", "read_logs", "list_events"}
    tool_result = requests[1].body["messages"][-1]["content"][0]
    assert tool_result["type"] == "tool_result" and "password" in tool_result["content"]  # key names only
    assert "panic: runtime error" in requests[2].body["messages"][-1]["content"][0]["content"]
    assert CANARY not in llm.received_text()
    # The calls were metered: reserved, then settled with the fake's usage counts.
    from kubilitics.container import get_container

    records = get_container().budget_ledger.records(time.time() - 600, time.time() + 5)
    mine = [r for r in records if r.user == "dave"]
    assert len(mine) == 3 and all(r.operation == "investigation" and r.success for r in mine)


def test_the_llm_does_not_overrule_strong_rule_evidence(handler, llm, mint, crashing):
    verdict = {"category": "oom_killed", "confidence": 0.95, "summary": "It runs out of memory."}
    llm.reply_text("I think it is memory.\n" + json.dumps(verdict))
    token = mint(sub="erin", scopes="read,write")
    started = start(handler, token, body_for(crashing, investigation_scope="quick"))
    item = wait_finished(handler, token, started["investigation_id"], crashing)
    assert item["root_cause"]["category"] == "app_crash"
    assert item["analysis"]["llm_outcome"]["outcome"] == "overruled_by_rules"
    assert item["analysis"]["llm_outcome"]["verdict"]["category"] == "oom_killed"


def test_an_overloaded_llm_degrades_to_the_rule_result(handler, llm, mint, crashing):
    llm.fail(529, times=3)  # the SDK's two retries included
    token = mint(sub="frank", scopes="read,write")
    started = start(handler, token, body_for(crashing, investigation_scope="quick"))
    item = wait_finished(handler, token, started["investigation_id"], crashing)
    assert item["status"] == "completed"
    assert item["root_cause"]["category"] == "app_crash"
    assert item["analysis"]["mode"] == "rules"
    assert item["analysis"]["llm_fallback"]["error"] == "LlmApiError"
    assert "overloaded" in item["analysis"]["llm_fallback"]["message"]
    assert len(llm.message_requests) == 3
    assert "Most likely cause" in item["explanation"]  # the rules' own explanation


def test_an_exhausted_budget_falls_back_without_calling_the_llm(handler, llm, mint, crashing):
    from kubilitics.container import get_container

    get_container().ai_config.update({"budget": {"monthly_limit_tokens": 100}}, lambda: llm.api_key, "admin")
    token = mint(sub="gina", scopes="read,write")
    started = start(handler, token, body_for(crashing, investigation_scope="quick"))
    item = wait_finished(handler, token, started["investigation_id"], crashing)
    assert item["status"] == "completed"
    assert item["root_cause"]["category"] == "app_crash"
    assert item["analysis"]["llm_fallback"]["error"] == "TokenBudgetExhausted"
    assert llm.message_requests == []


# -- listing ----------------------------------------------------------------------------------------


def seed(records: list[dict]) -> None:
    from kubilitics.container import get_container

    store = get_container().investigation_store
    for r in records:
        record = {
            "resource": {
                "kind": "Deployment",
                "namespace": r.pop("ns", "shop"),
                "name": r["investigation_id"],
            },
            "context": r.pop("context", CONTEXT),
            "symptoms": [],
            "progress_percent": 100 if r["status"] in ("completed", "failed") else 35,
            "expires_at": int(time.time()) + 3600,
            **r,
        }
        store.create(record)
        if r.get("root_cause"):
            store.put_detail(
                r["investigation_id"],
                {
                    "evidence": [{"source": "absent", "object": {"kind": "ConfigMap", "name": "cfg"}}],
                    "findings": [],
                },
                int(time.time()) + 3600,
            )


@pytest.fixture()
def seeded(handler):
    t = time.time() - 1000
    seed(
        [
            {
                "investigation_id": "inv-a",
                "status": "completed",
                "start_time": t + 1,
                "completion_time": t + 50,
                "severity": "low",
                "root_cause": {"category": "healthy", "summary": "fine", "confidence": 0.9},
            },
            {
                "investigation_id": "inv-b",
                "status": "completed",
                "start_time": t + 2,
                "completion_time": t + 10,
                "severity": "critical",
                "root_cause": {"category": "missing_configmap", "summary": "x", "confidence": 0.9},
            },
            {
                "investigation_id": "inv-c",
                "status": "failed",
                "start_time": t + 3,
                "completion_time": t + 30,
                "error": {"error": "investigation_failed", "message": "boom"},
            },
            {"investigation_id": "inv-d", "status": "in_progress", "start_time": t + 4},
            {
                "investigation_id": "inv-e",
                "status": "completed",
                "start_time": t + 5,
                "completion_time": t + 40,
                "severity": "high",
                "ns": "payments",
                "root_cause": {"category": "oom_killed", "summary": "y", "confidence": 0.9},
            },
            {"investigation_id": "inv-f", "status": "in_progress", "start_time": t + 6},
            {
                "investigation_id": "inv-other",
                "status": "completed",
                "start_time": t + 7,
                "completion_time": t + 8,
                "severity": "low",
                "context": "another-cluster",
            },
        ]
    )


def ids(body: dict) -> list[str]:
    return [i["investigation_id"] for i in body["items"]]


def test_listing_filters_sorts_and_pages_with_an_exact_total(handler, mint, seeded):
    token = mint(scopes="read")

    def get(**query):
        status, _, body = invoke(handler, list_event(token, **query))
        assert status == 200, body
        return body

    everything = get()
    assert everything["total_count"] == 6  # another cluster's investigation is not listed
    assert ids(everything) == ["inv-f", "inv-e", "inv-d", "inv-c", "inv-b", "inv-a"]  # newest first
    assert "root_cause" not in everything["items"][0] and "evidence" not in everything["items"][0]
    assert get(status="completed")["total_count"] == 3
    assert ids(get(status="in_progress")) == ["inv-f", "inv-d"]
    assert ids(get(namespace="payments")) == ["inv-e"]
    assert get(status="pending")["total_count"] == 0
    page = get(limit=2, offset=2)
    assert page["total_count"] == 6 and ids(page) == ["inv-d", "inv-c"]
    assert ids(get(offset=6)) == []
    assert ids(get(sort_by="severity"))[:3] == ["inv-b", "inv-e", "inv-a"]
    assert ids(get(sort_by="completion_time")) == ["inv-a", "inv-e", "inv-c", "inv-b", "inv-f", "inv-d"]
    failed = get(status="failed")["items"][0]
    assert failed["error"]["message"] == "boom" and failed["completion_time"] is not None
    detailed = get(include_findings=True, status="completed", sort_by="severity")["items"][0]
    assert detailed["root_cause"] == {"category": "missing_configmap", "summary": "x", "confidence": 0.9}
    assert detailed["evidence"] == [{"source": "absent", "object": {"kind": "ConfigMap", "name": "cfg"}}]
    other = get_container_queue()
    assert other == {"pending": 0, "in_progress": 2}


def get_container_queue() -> dict:
    from kubilitics.container import get_container

    return get_container().investigations.queue_counts()


@pytest.mark.parametrize(
    "query",
    [
        {"status": "done"},
        {"limit": 0},
        {"limit": 501},
        {"offset": -1},
        {"sort_by": "name"},
        {"include_findings": "maybe"},
    ],
)
def test_bad_query_parameters_are_refused(handler, mint, query):
    error = expect_error(handler, list_event(mint(scopes="read"), **query), 400, "invalid_parameter")
    assert error["details"]["parameter"] == next(iter(query))


# -- authentication ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", [START, LIST])
def test_every_endpoint_needs_a_valid_token(handler, mint, sample):

    expect_error(handler, load_event(sample, token=None), 401, "unauthorized")
    expect_error(handler, load_event(sample, token="abc.def.ghi"), 401, "unauthorized")
    expired = mint(scopes="admin", now=time.time() - 7200, ttl_seconds=3600)
    expect_error(handler, load_event(sample, token=expired), 401, "token_expired")
    revoked = mint(scopes="admin")
    revoke(revoked)
    expect_error(handler, load_event(sample, token=revoked), 401, "token_revoked")


def test_starting_needs_the_write_scope_and_listing_the_read_scope(handler, mint, crashing):
    error = expect_error(
        handler, start_event(mint(scopes="read"), body_for(crashing)), 403, "insufficient_scope"
    )
    assert error["details"]["required_scope"] == "write"
    error = expect_error(handler, list_event(mint(scopes="exec")), 403, "insufficient_scope")
    assert error["details"]["required_scope"] == "read"


def test_a_token_bound_to_another_cluster_cannot_start_one(handler, mint, crashing):
    token = mint(scopes="read,write", cluster_id="another-cluster")
    expect_error(handler, start_event(token, body_for(crashing)), 401, "invalid_context")
    assert find(handler, mint(scopes="read"), "inv-x", crashing) is None


# -- the task handler on its own ----------------------------------------------------------------------


def test_the_task_handler_runs_each_step_from_its_event_payload(on_cluster, aws, crashing):
    """functions/investigation_tasks/app.py as the state machine calls it: each events/ payload, the
    whole updated state back; mark_failed records the failure the Catch passed on."""
    from kubilitics.container import get_container

    from tests.support import EVENTS, LambdaContext

    tasks = importlib.import_module("functions.investigation_tasks.app").handler
    store = get_container().investigation_store
    resource = {"kind": "Pod", "namespace": crashing, "name": "orders"}

    def event(name: str, state: dict | None = None) -> dict:
        payload = json.loads((EVENTS / "investigation_tasks" / f"{name}.json").read_text())
        payload["state"] = {**payload["state"], **(state or {}), "resource": resource, "context": None}
        return payload

    investigation_id = json.loads((EVENTS / "investigation_tasks" / "gather.json").read_text())[
        "investigation_id"
    ]
    store.create(
        {
            "investigation_id": investigation_id,
            "status": "in_progress",
            "resource": resource,
            "start_time": time.time(),
            "progress_percent": 10,
            "requested_by": "alice",
            "context": CONTEXT,
        }
    )
    state = tasks(event("gather"), LambdaContext())
    assert state["progress_percent"] == 35 and state["evidence"]["objects"] >= 1
    assert state["symptoms"] == [
        "Pod repeatedly crashing",
        "CrashLoopBackOff status",
    ]  # the state goes on whole
    for name, progress in (("analyze", 55), ("reason", 80), ("propose_actions", 90), ("complete", 100)):
        state = tasks({**event(name), "state": state}, LambdaContext())
        assert state["progress_percent"] == progress
    assert state["diagnosis"]["category"] == "app_crash" and state["llm"] == {
        "used": False,
        "reason": "not_configured",
    }
    record = store.get(investigation_id)
    assert record["status"] == "completed" and record["root_cause"]["category"] == "app_crash"

    # mark_failed as the Catch of the gather step calls it (no step done yet).
    store.update(investigation_id, {"status": "in_progress"})
    failed = tasks(event("mark_failed"), LambdaContext())
    assert failed["status"] == "failed"
    error = store.get(investigation_id)["error"]
    assert error["message"] == "The gather step failed: kube-apiserver timed out"
    assert error["details"] == {"step": "gather", "error_type": "KubernetesApiError"}


def test_an_ai_key_that_cannot_be_read_holds_no_slot(handler, mint, settings_env):
    """Secrets Manager refusing the AI key (a role without the grant) answers 503 and takes nothing:
    more refused starts than a user has slots, then a start that works (review H1)."""
    import uuid

    from botocore.exceptions import ClientError
    from kubilitics import container
    from kubilitics.adapters.aws import client

    arn = client("secretsmanager").create_secret(Name=f"ai-key-{uuid.uuid4().hex[:6]}")["ARN"]
    settings_env.setenv("KUBILITICS_AI_SECRET_ARN", arn)
    container.reset()
    secrets = client("secretsmanager")

    def access_denied(**_: object) -> None:
        error = {"Code": "AccessDeniedException", "Message": "not authorized to perform GetSecretValue"}
        raise ClientError({"Error": error}, "GetSecretValue")

    secrets.meta.events.register("before-call.secrets-manager.GetSecretValue", access_denied)
    token = mint(sub=f"h1-{uuid.uuid4().hex[:6]}", scopes="read,write")
    body = {"resource_kind": "Namespace", "resource_name": "default", "investigation_scope": "quick"}
    try:
        for _ in range(6):  # a user holds 5 investigation slots
            refused = expect_error(handler, start_event(token, body), 503, "service_unavailable")
            assert refused["details"] == {"reason": "AccessDeniedException"}
    finally:
        secrets.meta.events.unregister("before-call.secrets-manager.GetSecretValue", access_denied)
    status, _, started = invoke(handler, start_event(token, body))
    assert status == 202, started
