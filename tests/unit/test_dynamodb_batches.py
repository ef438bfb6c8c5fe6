"""Batch reads and writes against moto with DynamoDB's throttling injected through botocore's event
system: the part of a batch that DynamoDB "did not process" is held back from moto and reported in
UnprocessedKeys / UnprocessedItems, as DynamoDB does under load. Leftovers are retried with backoff;
what is still left after the last attempt is a 503, never a silently partial result (review, issue 17).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from kubilitics.adapters import dynamodb as ddb
from kubilitics.errors import DatabaseError

STATE = "kubilitics-state"
CONNECTIONS = "kubilitics-connections"


class Throttle:
    """Holds back the first `per_call` keys (or write requests) of each batch call, `calls` times."""

    def __init__(self, dynamodb: Any, operation: str, *, per_call: int, calls: int):
        self.operation, self.per_call, self.calls = operation, per_call, calls
        self.held: list[Any] = []
        self.all_held = False
        self.requests: list[int] = []  # size of every batch sent
        self._handlers = [
            (f"before-parameter-build.dynamodb.{operation}", self._hold_back),
            (f"before-call.dynamodb.{operation}", self._answer_for_moto),
            (f"after-call.dynamodb.{operation}", self._report),
        ]
        for event, handler in self._handlers:
            dynamodb.meta.events.register(event, handler)
        self._events = dynamodb.meta.events

    def close(self) -> None:
        for event, handler in self._handlers:
            self._events.unregister(event, handler)

    def _hold_back(self, params: dict[str, Any], **_: Any) -> None:
        # Our own code's request is never changed: moto gets a copy, without the held-back part.
        params["RequestItems"] = items = json.loads(json.dumps(params["RequestItems"]))
        ((self.table, batch),) = items.items()
        entries = batch["Keys"] if self.operation == "BatchGetItem" else batch
        self.requests.append(len(entries))
        self.held, self.all_held = [], False
        if self.calls > 0:
            self.calls -= 1
            self.held = entries[: self.per_call]
            self.all_held = len(self.held) == len(entries)
            if not self.all_held:
                del entries[: self.per_call]

    def _answer_for_moto(self, **_: Any) -> Any:
        # Nothing processed at all: DynamoDB would not even look (moto refuses an empty batch).
        if self.all_held:
            return SimpleNamespace(status_code=200, headers={}), {}
        return None

    def _report(self, parsed: dict[str, Any], **_: Any) -> None:
        if not self.held:
            return
        if self.operation == "BatchGetItem":
            parsed["UnprocessedKeys"] = {self.table: {"Keys": self.held, "ConsistentRead": True}}
        else:
            parsed["UnprocessedItems"] = {self.table: self.held}


@pytest.fixture()
def pauses(monkeypatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(ddb, "_sleep", slept.append)
    return slept


def put_details(count: int) -> list[str]:
    store = ddb.DynamoInvestigationStore(STATE)
    ids = [f"inv-{i:03d}" for i in range(count)]
    for i in ids:
        store.put_detail(i, {"id": i}, expires_at=2_000_000_000)
    return ids


def test_leftover_keys_are_read_again_with_growing_jittered_pauses(aws, pauses):
    ids = put_details(150)
    throttle = Throttle(aws, "BatchGetItem", per_call=30, calls=5)
    try:
        found = ddb.DynamoInvestigationStore(STATE).details(ids)
    finally:
        throttle.close()
    assert found == {i: {"id": i} for i in ids}  # everything, nothing silently missing
    # The first 100 keys: 30 held back five times (the sixth attempt gets them); then the other 50.
    assert throttle.requests == [100, 30, 30, 30, 30, 30, 50]
    assert len(pauses) == 5
    for retry, pause in zip(range(5), pauses, strict=True):
        ceiling = min(ddb.BATCH_MAX_PAUSE_SECONDS, ddb.BATCH_FIRST_PAUSE_SECONDS * 2**retry)
        assert ceiling / 2 <= pause <= ceiling


def test_keys_still_unprocessed_after_the_last_attempt_are_a_503(aws, pauses):
    ids = put_details(10)
    throttle = Throttle(aws, "BatchGetItem", per_call=3, calls=100)
    try:
        with pytest.raises(DatabaseError) as raised:
            ddb.DynamoInvestigationStore(STATE).details(ids)
    finally:
        throttle.close()
    error = raised.value
    assert (error.status, error.code) == (503, "service_unavailable")
    assert error.details == {"reason": "unprocessed_items", "unprocessed": 3}
    assert error.headers == {"Retry-After": "1"}
    assert len(throttle.requests) == ddb.BATCH_ATTEMPTS
    assert sum(pauses) <= sum(
        min(ddb.BATCH_MAX_PAUSE_SECONDS, ddb.BATCH_FIRST_PAUSE_SECONDS * 2**r)
        for r in range(ddb.BATCH_ATTEMPTS - 1)
    )  # bounded: ~3.5 s at most


def test_connections_read_by_the_relay_are_all_found_or_an_error(aws, pauses):
    from kubilitics.services.realtime_model import Connection

    store = ddb.DynamoRealtimeStore(CONNECTIONS)
    ids = [f"c{i}" for i in range(40)]
    for c in ids:
        store.put_connection(Connection(c, "alice", "j", frozenset({"read"}), "user", 2_000_000_000, "ctx"))
    throttle = Throttle(aws, "BatchGetItem", per_call=15, calls=2)
    try:
        assert sorted(c.connection_id for c in store.get_connections(ids)) == sorted(ids)
    finally:
        throttle.close()
    throttle = Throttle(aws, "BatchGetItem", per_call=15, calls=100)
    try:
        with pytest.raises(DatabaseError) as raised:
            store.get_connections(ids)
    finally:
        throttle.close()
    assert raised.value.status == 503 and raised.value.message.startswith("Connections read failed")


def test_unprocessed_deletes_are_sent_again_then_a_503(aws, pauses):
    from kubilitics.services.realtime_model import Connection, Pointer

    store = ddb.DynamoRealtimeStore(CONNECTIONS)
    store.put_connection(Connection("c1", "alice", "j", frozenset({"read"}), "user", 2_000_000_000, "ctx"))
    for i in range(30):
        store.put_pointer("c1", Pointer(f"sub#s{i}", "logs", session_id=f"lg-{i}"), 2_000_000_000)
    throttle = Throttle(aws, "BatchWriteItem", per_call=10, calls=2)
    try:
        store.delete_connection("c1")
    finally:
        throttle.close()
    assert (
        aws.query(
            TableName=CONNECTIONS,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "conn#c1"}},
        )["Items"]
        == []
    )
    assert throttle.requests == [25, 10, 10, 6] and len(pauses) == 2

    store.put_connection(Connection("c2", "alice", "j", frozenset({"read"}), "user", 2_000_000_000, "ctx"))
    throttle = Throttle(aws, "BatchWriteItem", per_call=1, calls=100)
    try:
        with pytest.raises(DatabaseError) as raised:
            store.delete_connection("c2")
    finally:
        throttle.close()
    assert (raised.value.status, raised.value.details["unprocessed"]) == (503, 1)
