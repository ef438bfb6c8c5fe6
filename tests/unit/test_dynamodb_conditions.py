"""The DynamoDB stores' conditional writes (moto) and the DatabaseError each store call raises on failure."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from kubilitics.adapters import dynamodb as ddb
from kubilitics.errors import DatabaseError, KubiliticsError, NotFound
from kubilitics.services.realtime_model import Pointer

STATE = "kubilitics-state"
LIMITS = "kubilitics-rate-limits"
CONNECTIONS = "kubilitics-connections"


# ---- a condition that does not hold is an answer, not an error ---------------------------------


def test_rate_limit_slots(aws):
    store = ddb.DynamoRateLimitStore(LIMITS)
    assert store.acquire_slot("slots", limit=1, lease_until=100) is True
    assert store.acquire_slot("slots", limit=1, lease_until=100) is False
    assert store.reset_stale_slots("slots", now=50, lease_until=200) is False
    assert store.reset_stale_slots("slots", now=150, lease_until=200) is True
    store.release_slot("slots")
    store.release_slot("slots")  # already at zero: nothing to give back, no error
    assert store.slot_count("slots") == 0


def test_lease_store(aws):
    store = ddb.DynamoLeaseStore(LIMITS)
    assert store.acquire("job", "a", lease_until=130.0, now=100.0) is True
    assert store.acquire("job", "b", lease_until=140.0, now=110.0) is False
    store.release("job", "b")  # not b's: left alone
    assert store.acquire("job", "b", lease_until=140.0, now=110.0) is False
    store.release("job", "a")
    assert store.acquire("job", "b", lease_until=140.0, now=110.0) is True
    assert store.acquire("job", "c", lease_until=200.0, now=150.0) is True  # b's ran out


def test_budget_release_alert_and_settlement_of_a_released_reservation(aws):
    store = ddb.DynamoBudgetStore(STATE)
    reserve = {
        "cost": 10,
        "tokens": 5,
        "max_committed_cost": 100,
        "max_committed_tokens": 100,
        "created_at": 1.0,
        "expires_at": 2,
    }
    assert store.release("2026-02", "r0", cost=10, tokens=5) is False
    assert store.reserve("2026-02", "r1", **reserve) is True
    assert store.release("2026-02", "r1", cost=10, tokens=5) is True
    assert store.release("2026-02", "r1", cost=10, tokens=5) is False
    totals = store.settle(
        "2026-02",
        "r1",
        reserved_cost=10,
        reserved_tokens=5,
        cost=7,
        tokens=3,
        success=True,
        at=5.0,
        expires_at=2,
    )
    assert (totals["committed_cost"], totals["used_cost"], totals["calls"]) == (7, 7, 1)
    assert store.mark_alert("2026-02", 50, at=1.0) is True
    assert store.mark_alert("2026-02", 50, at=2.0) is False


def test_ai_config_optimistic_lock(aws):
    store = ddb.DynamoAiConfigStore(STATE)
    assert store.save({"a": 1}, 0, "alice", 1.0) is True
    assert store.save({"b": 2}, 0, "bob", 2.0) is False
    assert store.load() == ({"a": 1}, 1)
    assert store.save({"b": 2}, 1, "bob", 3.0) is True
    assert store.load() == ({"b": 2}, 2)


def test_realtime_checkpoint_and_set_delete(aws):
    store = ddb.DynamoRealtimeStore(CONNECTIONS)
    assert store.checkpoint("k", "5", at=1.0, epoch=1) is False  # no such set
    aws.put_item(
        TableName=CONNECTIONS,
        Item={"pk": {"S": "set#k"}, "sk": {"S": "meta"}, "generation": {"N": "1"}},
    )
    assert store.checkpoint("k", "5", at=1.0, epoch=2) is True
    assert store.checkpoint("k", "6", at=2.0, epoch=1) is False  # an older relay
    assert store.delete_set_if_unused("k", generation=2) is False
    assert store.delete_set_if_unused("k", generation=1) is True
    assert store.get_set("k") is None


def test_realtime_relay_lease(aws):
    store = ddb.DynamoRealtimeStore(CONNECTIONS)
    assert store.acquire_lease("a", now=100.0, lease_until=130.0, ends_at=200.0) == 1
    assert store.acquire_lease("b", now=110.0, lease_until=140.0, ends_at=200.0) is None
    assert store.renew_lease("b", 150.0) is False
    assert store.renew_lease("a", 150.0) is True
    store.release_lease("b")  # not b's: no error, a keeps it
    assert store.read_lease()["owner"] == "a"
    store.release_lease("a")
    assert store.acquire_lease("b", now=111.0, lease_until=140.0, ends_at=200.0) == 2


def test_realtime_pointer_already_open(aws):
    store = ddb.DynamoRealtimeStore(CONNECTIONS)
    pointer = Pointer(name="sub#logs-1", stream="logs", session_id="s1")
    store.put_pointer("c1", pointer, expires_at=2_000_000_000)
    with pytest.raises(KubiliticsError) as raised:
        store.put_pointer("c1", pointer, expires_at=2_000_000_000)
    assert (raised.value.code, raised.value.details) == ("already_exists", {"name": "logs-1"})
    assert store.get_pointer("c1", "sub#logs-1") == pointer


def test_session_queue_refuses_input_for_a_session_that_is_not_open(aws):
    queue = ddb.DynamoSessionQueue(CONNECTIONS)
    with pytest.raises(NotFound):
        queue.append("s1", {"type": "input"})
    queue.open("s1", "c1", expires_at=2_000_000_000)
    assert [queue.append("s1", {"n": n}) for n in range(2)] == [1, 2]
    assert queue.read("s1", after=0) == [(1, {"n": 0}), (2, {"n": 1})]
    queue.finish("s1")
    with pytest.raises(NotFound) as raised:
        queue.append("s1", {"type": "input"})
    assert raised.value.details == {"session_id": "s1"}


def test_insight_resolve_and_dismiss(aws):
    store = ddb.DynamoInsightStore(STATE)
    assert store.resolve("i1", at=1.0, expires_at=2) is False
    assert store.dismiss("i1", "alice", "noise", None, at=1.0) is None
    store.put({"insight_id": "i1", "context": "ctx", "status": "active", "title": "t"}, first_detected=1.0)
    assert store.resolve("i1", at=2.0, expires_at=3) is True
    assert store.resolve("i1", at=2.0, expires_at=3) is False
    dismissed = store.dismiss("i1", "alice", "noise", "fine", at=4.0)
    assert dismissed is not None
    assert (dismissed["dismissed_by"], dismissed["dismissed_notes"]) == ("alice", "fine")
    assert store.dismiss("i1", "bob", "noise", None, at=5.0) is None


def test_state_records_conditional_updates(aws):
    investigations = ddb.DynamoInvestigationStore(STATE)
    investigations.update("gone", {"status": "failed"})  # not recreated, no error
    assert investigations.get("gone") is None
    assert investigations.claim_slot_release("gone") is False
    record = {"investigation_id": "inv1", "status": "queued", "start_time": 1.0}
    investigations.create(record)
    with pytest.raises(DatabaseError) as raised:  # an id is created once
        investigations.create(record)
    assert str(raised.value) == "Investigation store write failed"
    assert investigations.claim_slot_release("inv1") is True
    assert investigations.claim_slot_release("inv1") is False
    investigations.update("inv1", {"status": "running"})
    assert [r["investigation_id"] for r in investigations.list(["running"])] == ["inv1"]

    actions = ddb.DynamoActionStore(STATE)
    actions.put({"action_id": "a1", "status": "proposed", "proposed_at": 1.0, "approval_expires_at": 10.0})
    assert actions.transition("a1", "proposed", "approved", {}, open_until_after=20.0) is False  # expired
    assert actions.transition("a1", "proposed", "approved", {"by": "alice"}, open_until_after=5.0) is True
    assert actions.transition("a1", "proposed", "rejected", {}) is False
    assert actions.get("a1")["status"] == "approved"


# ---- any other failure is a DatabaseError naming what failed ---------------------------------------


class _Failing:
    """A DynamoDB client whose every call fails with a (non-conditional, not transient) service error."""

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        from botocore.exceptions import ClientError

        def call(**_: Any) -> Any:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "boom"}}, operation)

        return call


_CONNECTION = SimpleNamespace(
    connection_id="c1",
    sub="alice",
    jti="j1",
    scopes=frozenset({"read"}),
    token_type="user",
    context="ctx",
    connected_at=1.0,
    expires_at=2,
    cluster_id=None,
    namespace=None,
    groups=("oncall",),
    issued_at=1,
)
_RESERVE = {
    "cost": 1,
    "tokens": 1,
    "max_committed_cost": 1,
    "max_committed_tokens": 1,
    "created_at": 1.0,
    "expires_at": 2,
}
_SETTLE = {
    "reserved_cost": 1,
    "reserved_tokens": 1,
    "cost": 1,
    "tokens": 1,
    "success": True,
    "at": 1.0,
    "expires_at": 2,
}

_CALLS: list[tuple[str, Callable[[], Any]]] = [
    ("Rate-limit counter update failed", lambda: ddb.DynamoRateLimitStore(LIMITS).increment_window("k", 1)),
    ("Concurrency slot update failed", lambda: ddb.DynamoRateLimitStore(LIMITS).acquire_slot("k", 1, 1)),
    ("Concurrency slot release failed", lambda: ddb.DynamoRateLimitStore(LIMITS).release_slot("k")),
    ("Concurrency slot reset failed", lambda: ddb.DynamoRateLimitStore(LIMITS).reset_stale_slots("k", 1, 2)),
    ("Token revocation lookup failed", lambda: ddb.DynamoRevocationStore(LIMITS).is_revoked("j")),
    ("Token revocation write failed", lambda: ddb.DynamoRevocationStore(LIMITS).revoke("j", 1, "a")),
    ("Token revocation lookup failed", lambda: ddb.DynamoRevocationStore(LIMITS).subject_revoked_before("s")),
    ("Token revocation write failed", lambda: ddb.DynamoRevocationStore(LIMITS).revoke_subject("s", 1, "a")),
    ("Lease acquisition failed", lambda: ddb.DynamoLeaseStore(LIMITS).acquire("n", "o", 2.0, 1.0)),
    ("Lease release failed", lambda: ddb.DynamoLeaseStore(LIMITS).release("n", "o")),
    ("AI budget reservation failed", lambda: ddb.DynamoBudgetStore(STATE).reserve("m", "r", **_RESERVE)),
    ("AI budget settlement failed", lambda: ddb.DynamoBudgetStore(STATE).settle("m", "r", **_SETTLE)),
    ("AI budget read failed", lambda: ddb.DynamoBudgetStore(STATE).totals("m")),
    ("AI budget release failed", lambda: ddb.DynamoBudgetStore(STATE).release("m", "r", cost=1, tokens=1)),
    ("AI budget alert write failed", lambda: ddb.DynamoBudgetStore(STATE).mark_alert("m", 50, 1.0)),
    (
        "AI usage record write failed",
        lambda: ddb.DynamoBudgetStore(STATE).put_usage("m", {"timestamp": 1.0, "id": "x"}, 2),
    ),
    ("AI usage query failed", lambda: ddb.DynamoBudgetStore(STATE).usage("m", 0.0, 1.0)),
    ("AI configuration read failed", lambda: ddb.DynamoAiConfigStore(STATE).load()),
    ("AI configuration write failed", lambda: ddb.DynamoAiConfigStore(STATE).save({}, 0, "a", 1.0)),
    ("Connection write failed", lambda: ddb.DynamoRealtimeStore(CONNECTIONS).put_connection(_CONNECTION)),
    ("Connections read failed", lambda: ddb.DynamoRealtimeStore(CONNECTIONS).get_connections(["c1"])),
    ("Connections table read failed", lambda: ddb.DynamoRealtimeStore(CONNECTIONS).get_connection("c1")),
    ("Connections table query failed", lambda: ddb.DynamoRealtimeStore(CONNECTIONS).list_sets()),
    (
        "Connections table delete failed",
        lambda: ddb.DynamoRealtimeStore(CONNECTIONS)._delete_keys([{"pk": {"S": "x"}, "sk": {"S": "y"}}]),
    ),
    (
        "Pointer write failed",
        lambda: ddb.DynamoRealtimeStore(CONNECTIONS).put_pointer("c1", Pointer("sub#s", "logs"), 2),
    ),
    ("Pointer delete failed", lambda: ddb.DynamoRealtimeStore(CONNECTIONS).delete_pointer("c1", "sub#s")),
    ("Checkpoint write failed", lambda: ddb.DynamoRealtimeStore(CONNECTIONS).checkpoint("k", "1", 1.0, 1)),
    ("Watch set delete failed", lambda: ddb.DynamoRealtimeStore(CONNECTIONS).delete_set_if_unused("k", 1)),
    (
        "Relay lease acquire failed",
        lambda: ddb.DynamoRealtimeStore(CONNECTIONS).acquire_lease("o", 1.0, 2.0, 3.0),
    ),
    ("Relay lease renew failed", lambda: ddb.DynamoRealtimeStore(CONNECTIONS).renew_lease("o", 2.0)),
    ("Relay lease release failed", lambda: ddb.DynamoRealtimeStore(CONNECTIONS).release_lease("o")),
    ("Session write failed", lambda: ddb.DynamoSessionQueue(CONNECTIONS).open("s", "c", 1)),
    ("Session input write failed", lambda: ddb.DynamoSessionQueue(CONNECTIONS).append("s", {})),
    ("Session input read failed", lambda: ddb.DynamoSessionQueue(CONNECTIONS).read("s", 0)),
    ("Session close failed", lambda: ddb.DynamoSessionQueue(CONNECTIONS).finish("s")),
    ("Insight query failed", lambda: ddb.DynamoInsightStore(STATE).list()),
    ("Insight read failed", lambda: ddb.DynamoInsightStore(STATE).get("i")),
    (
        "Insight write failed",
        lambda: ddb.DynamoInsightStore(STATE).put({"insight_id": "i", "context": "c"}, 1.0),
    ),
    ("Insight update failed", lambda: ddb.DynamoInsightStore(STATE).resolve("i", 1.0, 2)),
    ("Insight dismissal failed", lambda: ddb.DynamoInsightStore(STATE).dismiss("i", "a", "r", None, 1.0)),
    ("Insight scan record failed", lambda: ddb.DynamoInsightStore(STATE).put_scan("c", {})),
    ("Insight scan read failed", lambda: ddb.DynamoInsightStore(STATE).get_scan("c")),
    (
        "Chat history write failed",
        lambda: ddb.DynamoChatHistory(STATE).append("s", {"at": 1.0, "message_id": "m"}, 2),
    ),
    ("Chat history read failed", lambda: ddb.DynamoChatHistory(STATE).recent("s", 1)),
    ("Engagement query failed", lambda: ddb.DynamoEngagementStore(LIMITS).windows(0.0, 1.0)),
    (
        "Investigation store write failed",
        lambda: ddb.DynamoInvestigationStore(STATE).create(
            {"investigation_id": "i", "status": "queued", "start_time": 1.0}
        ),
    ),
    ("Investigation store read failed", lambda: ddb.DynamoInvestigationStore(STATE).get("i")),
    ("Investigation store write failed", lambda: ddb.DynamoInvestigationStore(STATE).update("i", {"x": 1})),
    ("Investigation store write failed", lambda: ddb.DynamoInvestigationStore(STATE).claim_slot_release("i")),
    ("Investigation store query failed", lambda: ddb.DynamoInvestigationStore(STATE).list(["queued"])),
    ("Investigation store count failed", lambda: ddb.DynamoInvestigationStore(STATE).count("queued")),
    ("Investigation store write failed", lambda: ddb.DynamoInvestigationStore(STATE).put_detail("i", {}, 1)),
    ("Investigation store read failed", lambda: ddb.DynamoInvestigationStore(STATE).details(["i"])),
    (
        "Investigation store write failed",
        lambda: ddb.DynamoInvestigationStore(STATE).put_document("i", "n", {}, 1),
    ),
    ("Investigation store query failed", lambda: ddb.DynamoInvestigationStore(STATE).get_document("i", "n")),
    (
        "Action store write failed",
        lambda: ddb.DynamoActionStore(STATE).put(
            {"action_id": "a", "status": "proposed", "proposed_at": 1.0}
        ),
    ),
    ("Action store read failed", lambda: ddb.DynamoActionStore(STATE).get("a")),
    ("Action store write failed", lambda: ddb.DynamoActionStore(STATE).transition("a", "x", "y", {})),
    ("Action store write failed", lambda: ddb.DynamoActionStore(STATE).update("a", {"x": 1})),
    ("Action store query failed", lambda: ddb.DynamoActionStore(STATE).list_status("proposed")),
    ("Action store audit write failed", lambda: ddb.DynamoActionStore(STATE).add_audit("a", {"at": 1.0}, 2)),
    ("Action store query failed", lambda: ddb.DynamoActionStore(STATE).audit("a")),
]


@pytest.mark.parametrize(("message", "call"), _CALLS, ids=[f"{i}-{m}" for i, (m, _) in enumerate(_CALLS)])
def test_a_failed_call_is_a_database_error_naming_what_failed(monkeypatch, message, call):
    from botocore.exceptions import ClientError

    monkeypatch.setattr(ddb, "client", lambda service: _Failing())
    with pytest.raises(DatabaseError) as raised:
        call()
    assert (raised.value.message, raised.value.details) == (message, {"reason": "ClientError"})
    assert isinstance(raised.value.__cause__, ClientError)


def test_a_failed_settlement_retry_is_a_database_error(monkeypatch):
    """The reservation was released meanwhile (the condition fails) and the retry without it fails too."""
    from botocore.exceptions import ClientError

    calls: list[dict[str, Any]] = []

    class Client:
        def update_item(self, **request: Any) -> Any:
            calls.append(request)
            code = "ConditionalCheckFailedException" if len(calls) == 1 else "ValidationException"
            raise ClientError({"Error": {"Code": code, "Message": "no"}}, "UpdateItem")

    monkeypatch.setattr(ddb, "client", lambda service: Client())
    with pytest.raises(DatabaseError) as raised:
        ddb.DynamoBudgetStore(STATE).settle("m", "r", **_SETTLE)
    assert (raised.value.message, raised.value.details) == (
        "AI budget settlement failed",
        {"reason": "ClientError"},
    )
    assert ["ConditionExpression" in request for request in calls] == [True, False]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("RequestLimitExceeded", 400),
        ("InternalServerError", 500),
        ("ServiceUnavailable", 503),
    ],
)
def test_throttling_and_server_errors_are_a_503_to_retry(monkeypatch, code, status):
    """Still failing after botocore's retries: the caller may try again shortly (Retry-After)."""
    from botocore.exceptions import ClientError

    class Client:
        def get_item(self, **_: Any) -> Any:
            raise ClientError(
                {"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                "GetItem",
            )

    monkeypatch.setattr(ddb, "client", lambda service: Client())
    with pytest.raises(DatabaseError) as raised:
        ddb.DynamoActionStore(STATE).get("a")
    assert raised.value.code == "service_unavailable" and raised.value.headers == {"Retry-After": "1"}
    assert raised.value.details == {"reason": "ClientError", "aws_error": code}
