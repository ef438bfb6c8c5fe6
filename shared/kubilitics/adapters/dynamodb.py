"""DynamoDB repositories. Key layouts live here and nowhere else."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from kubilitics.adapters.aws import client
from kubilitics.errors import DatabaseError, RateLimitExceeded

_T = TypeVar("_T")
log = logging.getLogger(__name__)


def _is_conditional_failure(exc: Exception) -> bool:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") == "ConditionalCheckFailedException"


# What DynamoDB answers when it is overloaded or failing (still so after botocore's own retries):
# the caller may try again shortly, so these are a 503 with Retry-After, not a 500.
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)
_TRANSIENT_TYPES = frozenset(
    {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}
)
DATABASE_RETRY_AFTER_SECONDS = 1


def _database_error(what: str, exc: Exception) -> DatabaseError:
    """`<what> failed`; the details name only the type of the error from DynamoDB (and its code)."""
    response = getattr(exc, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code") or "")
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    if code in _TRANSIENT_CODES or status >= 500 or type(exc).__name__ in _TRANSIENT_TYPES:
        return DatabaseError(
            f"{what} failed: DynamoDB is unavailable or throttling; try again shortly",
            code="service_unavailable",
            details={"reason": type(exc).__name__, **({"aws_error": code} if code else {})},
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    return DatabaseError(f"{what} failed", details={"reason": type(exc).__name__})


# Batch calls: what DynamoDB leaves unprocessed (UnprocessedKeys / UnprocessedItems: throttled, or over
# the response size) is sent again after a pause that doubles (0.05 s up to 1 s, jittered so that
# instances throttled together do not retry together); what is still left then is a 503, never a
# silently partial answer. At most ~3.5 s of pauses in all.
BATCH_ATTEMPTS = 8
BATCH_FIRST_PAUSE_SECONDS = 0.05
BATCH_MAX_PAUSE_SECONDS = 1.0
_sleep = time.sleep  # tests replace it


def _batch_pause(retry: int) -> None:
    ceiling = min(BATCH_MAX_PAUSE_SECONDS, BATCH_FIRST_PAUSE_SECONDS * 2**retry)
    _sleep(ceiling / 2 + random.uniform(0, ceiling / 2))  # jitter only: not a secret


def _unprocessed_error(what: str, left: int) -> DatabaseError:
    return DatabaseError(
        f"{what} failed: DynamoDB left {left} item(s) of a batch unprocessed after {BATCH_ATTEMPTS} attempts",
        code="service_unavailable",
        details={"reason": "unprocessed_items", "unprocessed": left},
        headers={"Retry-After": "1"},
    )


def _subscription_cap(scope: str, limit: int) -> RateLimitExceeded:
    """429 in the shape of the other concurrency caps (`details.concurrent_limit`)."""
    return RateLimitExceeded(
        f"At most {limit} watch subscriptions per {scope}; unsubscribe from one first",
        details={"category": "watch_subscriptions", "concurrent_limit": limit, "scope": scope},
    )


def _batch_get(table: str, request: dict[str, Any], what: str) -> list[dict[str, Any]]:
    """Every item of one batch_get_item request on `table` (at most 100 keys), leftovers retried."""
    found: list[dict[str, Any]] = []
    pending = {table: request}
    for attempt in range(BATCH_ATTEMPTS):
        if attempt:
            _batch_pause(attempt - 1)
        try:
            page = client("dynamodb").batch_get_item(RequestItems=pending)
        except Exception as exc:
            raise _database_error(what, exc) from exc
        found += page.get("Responses", {}).get(table, [])
        pending = page.get("UnprocessedKeys") or {}
        if not pending:
            return found
    raise _unprocessed_error(what, len(pending.get(table, {}).get("Keys", [])))


def _batch_write(table: str, requests: list[dict[str, Any]], what: str) -> None:
    """One batch_write_item of `requests` on `table` (at most 25), leftovers retried."""
    pending: dict[str, Any] = {table: requests}
    for attempt in range(BATCH_ATTEMPTS):
        if attempt:
            _batch_pause(attempt - 1)
        try:
            result = client("dynamodb").batch_write_item(RequestItems=pending)
        except Exception as exc:
            raise _database_error(what, exc) from exc
        pending = result.get("UnprocessedItems") or {}
        if not pending:
            return
    raise _unprocessed_error(what, len(pending.get(table, [])))


def _conditional(what: str, call: Callable[[], _T]) -> _T | None:
    """A write with a ConditionExpression: its result, or None if the condition did not hold.

    Any other failure is raised as `_database_error(what, ...)`.
    """
    try:
        return call()
    except Exception as exc:
        if _is_conditional_failure(exc):
            return None
        raise _database_error(what, exc) from exc


class DynamoRateLimitStore:
    def __init__(self, table: str):
        self._table = table

    def increment_window(self, key: str, expires_at: int, usage: Any = None) -> int:
        # The one write of every request, so in its plainest form: AttributeUpdates (ADD, PUT) rather
        # than an UpdateExpression. DynamoDB treats both alike; moto, the local mode's DynamoDB,
        # parses an expression in Python on every call (~1.5 ms of CPU beside the request).
        one = {"Action": "ADD", "Value": {"N": "1"}}
        updates: dict[str, Any] = {"n": one, "expires_at": {"Action": "PUT", "Value": {"N": str(expires_at)}}}
        if usage is not None and usage.operation:
            # Engagement analytics ride on this same write (see "user engagement" below).
            updates[f"op#{usage.operation}"] = one
        try:
            result = client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                AttributeUpdates=updates,
                ReturnValues="UPDATED_NEW",
            )
        except Exception as exc:
            raise _database_error("Rate-limit counter update", exc) from exc
        count = int(result["Attributes"]["n"]["N"])
        if usage is not None and count == 1:
            self._index_window(key, usage)
        return count

    def _index_window(self, key: str, usage: Any) -> None:
        """Once per window, by its first request: who and what it counts, and its engagement index
        keys. Written apart so that the per-request update never touches the index (a write that
        sets index keys costs more, and every request would rewrite the same values)."""
        from datetime import UTC, datetime

        day = datetime.fromtimestamp(usage.window_start, UTC).date().isoformat()
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET #sub = :sub, #cat = :cat, window_start = :w, "
                "gsi1pk = :gpk, gsi1sk = :gsk",
                ExpressionAttributeNames={"#sub": "sub", "#cat": "category"},
                ExpressionAttributeValues={
                    ":sub": {"S": usage.sub},
                    ":cat": {"S": usage.category},
                    ":w": {"N": str(usage.window_start)},
                    ":gpk": {"S": f"eng#{day}"},
                    ":gsk": {"S": f"{usage.window_start:012d}#{usage.sub}#{usage.category}"},
                },
            )
        except Exception as exc:
            # The count is right and was answered; analytics miss this one window.
            log.warning("engagement record of %s not indexed: %s", key, type(exc).__name__)

    def acquire_slot(self, key: str, limit: int, lease_until: int) -> bool:
        written = _conditional(
            "Concurrency slot update",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="ADD n :one SET lease_until = :lease",
                ConditionExpression="attribute_not_exists(n) OR n < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":lease": {"N": str(lease_until)},
                },
            ),
        )
        return written is not None

    def release_slot(self, key: str) -> None:
        # A count already at zero (e.g. reset after a stale lease) is left alone: nothing to give back.
        _conditional(
            "Concurrency slot release",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="ADD n :minus",
                ConditionExpression="n > :zero",
                ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
            ),
        )

    def reset_stale_slots(self, key: str, now: int, lease_until: int) -> bool:
        written = _conditional(
            "Concurrency slot reset",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET n = :one, lease_until = :lease",
                ConditionExpression="lease_until < :now",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":lease": {"N": str(lease_until)},
                    ":now": {"N": str(now)},
                },
            ),
        )
        return written is not None

    def slot_count(self, key: str) -> int:
        item = client("dynamodb").get_item(TableName=self._table, Key={"pk": {"S": key}}, ConsistentRead=True)
        return int(item.get("Item", {}).get("n", {}).get("N", "0"))


class DynamoRevocationStore:
    def __init__(self, table: str):
        self._table = table

    def is_revoked(self, jti: str) -> bool:
        try:
            item = client("dynamodb").get_item(
                TableName=self._table, Key={"pk": {"S": f"jti#{jti}"}}, ConsistentRead=True
            )
        except Exception as exc:
            raise _database_error("Token revocation lookup", exc) from exc
        return "Item" in item

    def revoke(self, jti: str, expires_at: int, revoked_by: str) -> None:
        try:
            client("dynamodb").put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": f"jti#{jti}"},
                    "revoked_by": {"S": revoked_by},
                    "revoked_at": {"N": str(int(time.time()))},
                    # kept until the token would have expired anyway; TTL removes it afterwards
                    "expires_at": {"N": str(expires_at)},
                },
            )
        except Exception as exc:
            raise _database_error("Token revocation write", exc) from exc

    def subject_revoked_before(self, sub: str) -> int:
        try:
            item = client("dynamodb").get_item(
                TableName=self._table, Key={"pk": {"S": f"sub#{sub}"}}, ConsistentRead=True
            )
        except Exception as exc:
            raise _database_error("Token revocation lookup", exc) from exc
        return int(item.get("Item", {}).get("revoked_before", {}).get("N", "0"))

    def revoke_subject(self, sub: str, before: int, revoked_by: str) -> None:
        # No `expires_at` (TTL): an identity provider's tokens may live longer than any lifetime known
        # here, so the record stays (one small item per revoked subject). The condition keeps the later
        # cutoff: revoking "before" an earlier time must not bring tokens back.
        _conditional(
            "Token revocation write",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": f"sub#{sub}"}},
                UpdateExpression="SET revoked_before = :before, revoked_by = :by, revoked_at = :at",
                ConditionExpression="attribute_not_exists(revoked_before) OR revoked_before < :before",
                ExpressionAttributeValues={
                    ":before": {"N": str(before)},
                    ":by": {"S": revoked_by},
                    ":at": {"N": str(int(time.time()))},
                },
            ),
        )


class DynamoLeaseStore:
    """Leases as items of the rate-limit table: `lease#<name>`, taken with a conditional put.

    `lease_until` decides (a holder that crashed frees the lease when it runs out); `expires_at` only
    lets DynamoDB's TTL sweep old items, which it does lazily.
    """

    def __init__(self, table: str):
        self._table = table

    def acquire(self, name: str, owner: str, lease_until: float, now: float) -> bool:
        written = _conditional(
            "Lease acquisition",
            lambda: client("dynamodb").put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": f"lease#{name}"},
                    "lease_owner": {"S": owner},
                    "lease_until": {"N": f"{lease_until:.3f}"},
                    "expires_at": {"N": str(int(lease_until) + 3600)},
                },
                ConditionExpression="attribute_not_exists(pk) OR lease_until < :now",
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
            ),
        )
        return written is not None

    def release(self, name: str, owner: str) -> None:
        # A lease that ran out and that someone else holds now is left alone: theirs to release.
        _conditional(
            "Lease release",
            lambda: client("dynamodb").delete_item(
                TableName=self._table,
                Key={"pk": {"S": f"lease#{name}"}},
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={":owner": {"S": owner}},
            ),
        )


def ping_table(table: str) -> dict[str, Any]:
    """A cheap real read used by /health."""
    description = client("dynamodb").describe_table(TableName=table)["Table"]
    return {"table": table, "status": description.get("TableStatus", "UNKNOWN")}


# -- AI budget ledger and usage records (StateTable) ----------------------------------------------
#   pk aibudget#<YYYY-MM>  sk ledger             the month's counters, open reservations (resv_<id>)
#                                                and alert marks (alert_<percent>)
#   pk aiusage#<YYYY-MM>   sk <epoch ms>#<id>    one record per LLM call


def _n(value: float | int) -> dict[str, str]:
    return {"N": str(value)}


def _plain(attribute: dict[str, Any]) -> Any:
    """A DynamoDB attribute value as a plain Python value (numbers as int or float)."""
    kind, value = next(iter(attribute.items()))
    if kind == "N":
        return int(value) if value.lstrip("-").isdigit() else float(value)
    if kind == "M":
        return {k: _plain(v) for k, v in value.items()}
    if kind == "NULL":
        return None
    return value


class DynamoBudgetStore:
    def __init__(self, table: str):
        self._table = table

    @staticmethod
    def _ledger_key(month: str) -> dict[str, Any]:
        return {"pk": {"S": f"aibudget#{month}"}, "sk": {"S": "ledger"}}

    def reserve(
        self,
        month: str,
        reservation_id: str,
        *,
        cost: int,
        tokens: int,
        max_committed_cost: int,
        max_committed_tokens: int,
        created_at: float,
        expires_at: int,
    ) -> bool:
        # One conditional write on one item: DynamoDB serialises these, so concurrent reservations
        # can never commit more than the limit between them.
        written = _conditional(
            "AI budget reservation",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key=self._ledger_key(month),
                UpdateExpression="ADD committed_cost :c, committed_tokens :t SET #r = :r, expires_at = :exp",
                ConditionExpression=(
                    "(attribute_not_exists(committed_cost) OR committed_cost <= :max_c) AND "
                    "(attribute_not_exists(committed_tokens) OR committed_tokens <= :max_t)"
                ),
                ExpressionAttributeNames={"#r": f"resv_{reservation_id}"},
                ExpressionAttributeValues={
                    ":c": _n(cost),
                    ":t": _n(tokens),
                    ":max_c": _n(max_committed_cost),
                    ":max_t": _n(max_committed_tokens),
                    ":r": {"M": {"cost": _n(cost), "tokens": _n(tokens), "created_at": _n(created_at)}},
                    ":exp": _n(expires_at),
                },
            ),
        )
        return written is not None

    def settle(
        self,
        month: str,
        reservation_id: str,
        *,
        reserved_cost: int,
        reserved_tokens: int,
        cost: int,
        tokens: int,
        success: bool,
        at: float,
        expires_at: int,
    ) -> dict[str, Any]:
        values = {
            ":used_c": _n(cost),
            ":used_t": _n(tokens),
            ":one": _n(1),
            ":failed": _n(0 if success else 1),
            ":exp": _n(expires_at),
        }
        set_clause = "SET expires_at = :exp" + (", last_success_at = :at" if success else "")
        if success:
            values[":at"] = _n(at)
        adds = "ADD used_cost :used_c, used_tokens :used_t, calls :one, failed_calls :failed"
        result = _conditional(
            "AI budget settlement",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key=self._ledger_key(month),
                UpdateExpression=f"{set_clause} REMOVE #r {adds}, committed_cost :dc, committed_tokens :dt",
                ConditionExpression="attribute_exists(#r)",
                ExpressionAttributeNames={"#r": f"resv_{reservation_id}"},
                ExpressionAttributeValues={
                    **values,
                    ":dc": _n(cost - reserved_cost),
                    ":dt": _n(tokens - reserved_tokens),
                },
                ReturnValues="ALL_NEW",
            ),
        )
        if result is None:
            # The reservation was released as stale meanwhile: add the whole usage instead.
            try:
                result = client("dynamodb").update_item(
                    TableName=self._table,
                    Key=self._ledger_key(month),
                    UpdateExpression=f"{set_clause} {adds}, committed_cost :used_c, committed_tokens :used_t",
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            except Exception as exc:
                raise _database_error("AI budget settlement", exc) from exc
        return {k: _plain(v) for k, v in result["Attributes"].items()}

    def totals(self, month: str) -> dict[str, Any]:
        try:
            item = client("dynamodb").get_item(
                TableName=self._table, Key=self._ledger_key(month), ConsistentRead=True
            )
        except Exception as exc:
            raise _database_error("AI budget read", exc) from exc
        return {k: _plain(v) for k, v in item.get("Item", {}).items()}

    def reservations(self, month: str) -> list[dict[str, Any]]:
        return [
            {"id": key.removeprefix("resv_"), **value}
            for key, value in self.totals(month).items()
            if key.startswith("resv_")
        ]

    def release(self, month: str, reservation_id: str, *, cost: int, tokens: int) -> bool:
        # Not written (False) when settled or released by someone else first.
        written = _conditional(
            "AI budget release",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key=self._ledger_key(month),
                UpdateExpression="REMOVE #r ADD committed_cost :c, committed_tokens :t",
                ConditionExpression="attribute_exists(#r)",
                ExpressionAttributeNames={"#r": f"resv_{reservation_id}"},
                ExpressionAttributeValues={":c": _n(-cost), ":t": _n(-tokens)},
            ),
        )
        return written is not None

    def mark_alert(self, month: str, threshold: int, at: float) -> bool:
        written = _conditional(
            "AI budget alert write",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key=self._ledger_key(month),
                UpdateExpression="SET #a = :at",
                ConditionExpression="attribute_not_exists(#a)",
                ExpressionAttributeNames={"#a": f"alert_{int(threshold)}"},
                ExpressionAttributeValues={":at": _n(at)},
            ),
        )
        return written is not None

    def put_usage(self, month: str, record: dict[str, Any], expires_at: int) -> None:
        item: dict[str, Any] = {
            "pk": {"S": f"aiusage#{month}"},
            "sk": {"S": f"{int(record['timestamp'] * 1000):013d}#{record['id']}"},
            "expires_at": _n(expires_at),
        }
        for key, value in record.items():
            if value is None:
                continue
            if isinstance(value, bool):
                item[key] = {"BOOL": value}
            elif isinstance(value, int | float):
                item[key] = _n(value)
            else:
                item[key] = {"S": str(value)}
        try:
            client("dynamodb").put_item(TableName=self._table, Item=item)
        except Exception as exc:
            raise _database_error("AI usage record write", exc) from exc

    def usage(self, month: str, start: float, end: float) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :from AND :to",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"aiusage#{month}"},
                ":from": {"S": f"{int(start * 1000):013d}"},
                ":to": {"S": f"{int(end * 1000):013d}~"},
            },
        }
        records: list[dict[str, Any]] = []
        try:
            while True:
                page = client("dynamodb").query(**request)
                for item in page.get("Items", []):
                    records.append(
                        {
                            k: v["BOOL"] if "BOOL" in v else _plain(v)
                            for k, v in item.items()
                            if k not in ("pk", "sk")
                        }
                    )
                if "LastEvaluatedKey" not in page:
                    return records
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:
            raise _database_error("AI usage query", exc) from exc


# -- AI configuration (StateTable) -----------------------------------------------------------------
#   pk aiconfig  sk current   the overrides an admin set (JSON), version, updated_by, updated_at


class DynamoAiConfigStore:
    _KEY = {"pk": {"S": "aiconfig"}, "sk": {"S": "current"}}

    def __init__(self, table: str):
        self._table = table

    def load(self) -> tuple[dict[str, Any], int]:
        try:
            item = client("dynamodb").get_item(TableName=self._table, Key=self._KEY, ConsistentRead=True)
        except Exception as exc:
            raise _database_error("AI configuration read", exc) from exc
        found = item.get("Item")
        if not found:
            return {}, 0
        return json.loads(found["config"]["S"]), int(found["version"]["N"])

    def save(self, overrides: dict[str, Any], expected_version: int, updated_by: str, at: float) -> bool:
        written = _conditional(
            "AI configuration write",
            lambda: client("dynamodb").put_item(
                TableName=self._table,
                Item={
                    **self._KEY,
                    "config": {"S": json.dumps(overrides, sort_keys=True)},
                    "version": _n(expected_version + 1),
                    "updated_by": {"S": updated_by},
                    "updated_at": _n(at),
                },
                # Optimistic lock: two admins saving at once cannot lose each other's fields.
                ConditionExpression="attribute_not_exists(pk) OR version = :v",
                ExpressionAttributeValues={":v": _n(expected_version)},
            ),
        )
        return written is not None


# ---- real time: the connections table -------------------------------------------------------
#   pk conn#<connection id>  sk meta               the connection: who, scopes, context, expires_at
#   pk conn#<connection id>  sk sub#<id> | shell    pointers: a watch subscription (-> its set), a
#                                                  live-log or shell session (-> its session id); a
#                                                  watch pointer has gsi1 subs#<user> / <conn>#<id>
#   pk user#<sub>            sk watch              n: the user's watch subscriptions (the per-user
#                                                  cap); the connection's own count is watch_count
#                                                  on its meta item. Both change in the subscription's
#                                                  transaction, so a cap holds however many arrive.
#   pk set#<watch set key>   sk meta               one watch set: kind, namespace, selector,
#                                                  checkpoint_rv, generation; gsi1 "sets" lists them
#   pk set#<watch set key>   sk sub#<conn>#<id>    a member: from_rv, expires_at (read consistently)
#   pk relay                 sk lease              the watch relay's lease: owner, epoch, ends_at
#   pk sess#<session id>     sk meta               a session's state and input sequence counter
#   pk sess#<session id>     sk in#<seq>           one client command for the session, in order
# Members live in their set's partition so the relay reads them with ConsistentRead (a GSI would be
# eventually consistent, and the handover relies on seeing every member written before a checkpoint).


def _rt_s(value: str) -> dict[str, str]:
    return {"S": value}


def _rt_n(value: float | int) -> dict[str, str]:
    return {"N": str(value)}


def _rt_str(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value and "S" in value else None


def _rt_num(item: dict[str, Any], name: str, default: float = 0) -> float:
    value = item.get(name)
    return float(value["N"]) if value and "N" in value else default


class DynamoRealtimeStore:
    """Connections, subscriptions, watch sets and the relay lease (ports.RealtimeStore)."""

    _LEASE = {"pk": _rt_s("relay"), "sk": _rt_s("lease")}

    def __init__(self, table: str):
        self._table = table

    # ---- connections ---------------------------------------------------------------------------

    def put_connection(self, connection: Any) -> None:
        item: dict[str, Any] = {
            "pk": _rt_s(f"conn#{connection.connection_id}"),
            "sk": _rt_s("meta"),
            "sub": _rt_s(connection.sub),
            "jti": _rt_s(connection.jti),
            "scopes": _rt_s(",".join(sorted(connection.scopes))),
            "token_type": _rt_s(connection.token_type),
            "context": _rt_s(connection.context),
            "connected_at": _rt_n(connection.connected_at),
            "expires_at": _rt_n(connection.expires_at),
        }
        if connection.cluster_id:
            item["cluster_id"] = _rt_s(connection.cluster_id)
        if connection.namespace:
            item["namespace"] = _rt_s(connection.namespace)
        if connection.groups:
            item["groups"] = {"L": [_rt_s(g) for g in connection.groups]}
        if connection.issued_at:
            item["issued_at"] = _rt_n(connection.issued_at)
        try:
            client("dynamodb").put_item(TableName=self._table, Item=item)
        except Exception as exc:
            raise _database_error("Connection write", exc) from exc

    def get_connection(self, connection_id: str) -> Any:
        item = self._get({"pk": _rt_s(f"conn#{connection_id}"), "sk": _rt_s("meta")})
        return self._connection(item) if item else None

    def get_connections(self, connection_ids: list[str]) -> list[Any]:
        found: list[Any] = []
        for start in range(0, len(connection_ids), 100):
            batch = connection_ids[start : start + 100]
            keys = [{"pk": _rt_s(f"conn#{c}"), "sk": _rt_s("meta")} for c in batch]
            items = _batch_get(self._table, {"Keys": keys, "ConsistentRead": True}, "Connections read")
            found += [self._connection(item) for item in items]
        return found

    @staticmethod
    def _connection(item: dict[str, Any]) -> Any:
        from kubilitics.services.realtime_model import Connection

        return Connection(
            connection_id=(_rt_str(item, "pk") or "").removeprefix("conn#"),
            sub=_rt_str(item, "sub") or "",
            jti=_rt_str(item, "jti") or "",
            scopes=frozenset(s for s in (_rt_str(item, "scopes") or "").split(",") if s),
            token_type=_rt_str(item, "token_type") or "user",
            expires_at=int(_rt_num(item, "expires_at")),
            context=_rt_str(item, "context") or "",
            cluster_id=_rt_str(item, "cluster_id"),
            namespace=_rt_str(item, "namespace"),
            connected_at=_rt_num(item, "connected_at"),
            groups=tuple(g["S"] for g in item.get("groups", {}).get("L", [])),
            issued_at=int(_rt_num(item, "issued_at")),
        )

    def delete_connection(self, connection_id: str) -> list[Any]:
        items = self._query(f"conn#{connection_id}")
        pointers = [self._pointer(item) for item in items if _rt_str(item, "sk") != "meta"]
        keys = [{"pk": item["pk"], "sk": item["sk"]} for item in items]
        owned: dict[str, int] = {}
        for pointer in pointers:
            if pointer.stream == "watch" and pointer.set_key:
                subscription_id = pointer.name.removeprefix("sub#")
                keys.append(self._member_key(pointer.set_key, connection_id, subscription_id))
                if pointer.sub:
                    owned[pointer.sub] = owned.get(pointer.sub, 0) + 1
        self._delete_keys(keys)
        for owner, count in owned.items():  # the connection's own count went with its meta item
            self._count_down(self._owner_key(owner), "n", count)
        return pointers

    # ---- subscriptions and pointers ------------------------------------------------------------

    def add_subscription(
        self,
        connection_id: str,
        subscription_id: str,
        watch_set: Any,
        initial_rv: Any,
        expires_at: int,
        *,
        owner: str = "",
        max_per_connection: int | None = None,
        max_per_user: int | None = None,
    ) -> str:
        from kubilitics.errors import KubiliticsError, Unauthorized

        connection_key = {"pk": _rt_s(f"conn#{connection_id}"), "sk": _rt_s("meta")}
        # The connection's count rides on its meta item (which must exist); the owner's on their own
        # item. A condition on each refuses the subscription that would go over its cap.
        connection_condition = "attribute_exists(pk)"
        if max_per_connection:
            connection_condition += " AND (attribute_not_exists(watch_count) OR watch_count < :max)"
        count_on_connection: dict[str, Any] = {
            "Update": {
                "TableName": self._table,
                "Key": connection_key,
                "UpdateExpression": "ADD watch_count :one",
                "ConditionExpression": connection_condition,
                "ExpressionAttributeValues": {
                    ":one": _rt_n(1),
                    **({":max": _rt_n(max_per_connection)} if max_per_connection else {}),
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",  # none: the connection is gone
            }
        }
        count_for_owner: dict[str, Any] = {
            "Update": {
                "TableName": self._table,
                "Key": self._owner_key(owner),
                "UpdateExpression": "ADD n :one",
                "ExpressionAttributeValues": {
                    ":one": _rt_n(1),
                    **({":max": _rt_n(max_per_user)} if max_per_user else {}),
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        if max_per_user:
            count_for_owner["Update"]["ConditionExpression"] = "attribute_not_exists(n) OR n < :max"
        key = watch_set.key
        set_item_key = {"pk": _rt_s(f"set#{key}"), "sk": _rt_s("meta")}
        for attempt in range(10):
            current = self._get(set_item_key)
            if current and _rt_str(current, "checkpoint_rv"):
                from_rv = _rt_str(current, "checkpoint_rv") or ""
                # The member is written only if the checkpoint is still the one read: a member with an
                # older from_rv than the stored checkpoint is then always visible to the relay that
                # wrote that checkpoint (its next read of the set's members comes after the write).
                set_op: dict[str, Any] = {
                    "Update": {
                        "TableName": self._table,
                        "Key": set_item_key,
                        "UpdateExpression": "ADD generation :one",
                        "ConditionExpression": "checkpoint_rv = :rv",
                        "ExpressionAttributeValues": {":one": _rt_n(1), ":rv": _rt_s(from_rv)},
                    }
                }
            else:
                # A new set costs a Kubernetes list first: a subscription over a cap is refused before.
                self._refuse_over_cap(connection_id, owner, max_per_connection, max_per_user)
                from_rv = initial_rv()
                set_op = {
                    "Put": {
                        "TableName": self._table,
                        "Item": {**set_item_key, **self._set_attributes(watch_set, from_rv)},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            member = {
                **self._member_key(key, connection_id, subscription_id),
                "connection_id": _rt_s(connection_id),
                "subscription_id": _rt_s(subscription_id),
                "from_rv": _rt_s(from_rv),
                "expires_at": _rt_n(expires_at),
            }
            pointer = {
                "pk": _rt_s(f"conn#{connection_id}"),
                "sk": _rt_s(f"sub#{subscription_id}"),
                "stream": _rt_s("watch"),
                "set_key": _rt_s(key),
                "expires_at": _rt_n(expires_at),
            }
            if owner:  # whose count it is in, and how to count the owner's again (see _recount_owner)
                pointer.update(
                    sub=_rt_s(owner),
                    gsi1pk=_rt_s(f"subs#{owner}"),
                    gsi1sk=_rt_s(f"{connection_id}#{subscription_id}"),
                )
            operations = [
                count_on_connection,
                set_op,
                {"Put": {"TableName": self._table, "Item": member}},
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": pointer,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
            if owner:
                operations.append(count_for_owner)
            try:
                client("dynamodb").transact_write_items(TransactItems=operations)
                return from_rv
            except Exception as exc:
                reasons = getattr(exc, "response", {}).get("CancellationReasons", []) or []
                failed = [r.get("Code") == "ConditionalCheckFailed" for r in reasons]
                if not reasons:
                    raise _database_error("Subscription write", exc) from exc
                if failed[0]:
                    if "Item" not in reasons[0]:
                        raise Unauthorized("This connection is no longer registered; reconnect") from exc
                    stored = int(_rt_num(reasons[0]["Item"], "watch_count"))
                    if self._recount_connection(connection_id, stored):
                        continue
                    raise _subscription_cap("connection", max_per_connection or 0) from exc
                if len(failed) > 3 and failed[3]:
                    raise KubiliticsError(
                        f"Subscription {subscription_id!r} already exists on this connection",
                        code="already_exists",
                        details={"subscription_id": subscription_id},
                    ) from exc
                if len(failed) > 4 and failed[4]:
                    if self._recount_owner(owner, int(_rt_num(reasons[4].get("Item") or {}, "n"))):
                        continue
                    raise _subscription_cap("user", max_per_user or 0) from exc
                if any(r.get("Code") == "TransactionConflict" for r in reasons):
                    _batch_pause(attempt)  # another subscription of the user or connection, just now
                # The checkpoint moved (or the set appeared) meanwhile: read it again.
        raise DatabaseError("Subscription write kept conflicting with the watch relay")

    def _refuse_over_cap(
        self, connection_id: str, owner: str, max_per_connection: int | None, max_per_user: int | None
    ) -> None:
        """The transaction's own checks, read ahead (the transaction still decides)."""
        if max_per_connection:
            meta = self._get({"pk": _rt_s(f"conn#{connection_id}"), "sk": _rt_s("meta")}) or {}
            stored = int(_rt_num(meta, "watch_count"))
            if stored >= max_per_connection and not self._recount_connection(connection_id, stored):
                raise _subscription_cap("connection", max_per_connection)
        if owner and max_per_user:
            stored = int(_rt_num(self._get(self._owner_key(owner)) or {}, "n"))
            if stored >= max_per_user and not self._recount_owner(owner, stored):
                raise _subscription_cap("user", max_per_user)

    # A count can only be too high when a clean-up was cut short (a crash between deleting a
    # subscription and counting it down); a refusal first counts the subscriptions themselves.

    def _recount_connection(self, connection_id: str, stored: int) -> bool:
        """True if the connection's count was above its watch pointers (it is corrected)."""
        pointers = self._query(f"conn#{connection_id}", sk_prefix="sub#")
        actual = sum(_rt_str(item, "stream") == "watch" for item in pointers)
        return self._correct_count(
            {"pk": _rt_s(f"conn#{connection_id}"), "sk": _rt_s("meta")}, "watch_count", stored, actual
        )

    def _recount_owner(self, owner: str, stored: int) -> bool:
        """True if the owner's count was above their live watch pointers (gsi1; it is corrected)."""
        now = int(time.time())
        actual = sum(_rt_num(item, "expires_at") > now for item in self._query(f"subs#{owner}", index=True))
        return self._correct_count(self._owner_key(owner), "n", stored, actual)

    def _correct_count(self, key: dict[str, Any], attribute: str, stored: int, actual: int) -> bool:
        if actual >= stored:
            return False
        log.warning("watch subscription count %s of %s was %d, counted %d", attribute, key, stored, actual)
        _conditional(  # unless it changed meanwhile: then the caller simply asks again
            "Subscription count repair",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET #n = :actual",
                ConditionExpression="#n = :stored",
                ExpressionAttributeNames={"#n": attribute},
                ExpressionAttributeValues={":actual": _rt_n(actual), ":stored": _rt_n(stored)},
            ),
        )
        return True

    def _count_down(self, key: dict[str, Any], attribute: str, by: int) -> None:
        """A subscription ended: its count goes down (never below zero; a failure is only logged, the
        count is corrected when it next refuses someone)."""
        try:
            _conditional(
                "Subscription count update",
                lambda: client("dynamodb").update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression="ADD #n :minus",
                    ConditionExpression="#n >= :by",  # the item (a gone connection's) is not recreated
                    ExpressionAttributeNames={"#n": attribute},
                    ExpressionAttributeValues={":minus": _rt_n(-by), ":by": _rt_n(by)},
                ),
            )
        except DatabaseError as exc:
            log.warning("watch subscription count %s of %s not lowered: %r", attribute, key, exc)

    @staticmethod
    def _owner_key(owner: str) -> dict[str, Any]:
        return {"pk": _rt_s(f"user#{owner}"), "sk": _rt_s("watch")}

    def put_pointer(self, connection_id: str, pointer: Any, expires_at: int) -> None:
        from kubilitics.errors import KubiliticsError

        item = {
            "pk": _rt_s(f"conn#{connection_id}"),
            "sk": _rt_s(pointer.name),
            "stream": _rt_s(pointer.stream),
            "expires_at": _rt_n(expires_at),
        }
        for name in ("set_key", "session_id", "sub"):
            if getattr(pointer, name):
                item[name] = _rt_s(getattr(pointer, name))
        try:
            client("dynamodb").put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                raise KubiliticsError(
                    f"{pointer.name.removeprefix('sub#')!r} is already open on this connection",
                    code="already_exists",
                    details={"name": pointer.name.removeprefix("sub#")},
                ) from exc
            raise _database_error("Pointer write", exc) from exc

    def get_pointer(self, connection_id: str, name: str) -> Any:
        item = self._get({"pk": _rt_s(f"conn#{connection_id}"), "sk": _rt_s(name)})
        return self._pointer(item) if item else None

    def delete_pointer(self, connection_id: str, name: str) -> Any:
        """Remove a pointer (and the set member it stands for); the pointer, or None if there was none."""
        try:
            old = (
                client("dynamodb")
                .delete_item(
                    TableName=self._table,
                    Key={"pk": _rt_s(f"conn#{connection_id}"), "sk": _rt_s(name)},
                    ReturnValues="ALL_OLD",
                )
                .get("Attributes")
            )
        except Exception as exc:
            raise _database_error("Pointer delete", exc) from exc
        if not old:
            return None
        pointer = self._pointer(old)
        if pointer.stream == "watch" and pointer.set_key:
            self._delete_keys([self._member_key(pointer.set_key, connection_id, name.removeprefix("sub#"))])
            self._count_down({"pk": _rt_s(f"conn#{connection_id}"), "sk": _rt_s("meta")}, "watch_count", 1)
            if pointer.sub:
                self._count_down(self._owner_key(pointer.sub), "n", 1)
        return pointer

    # ---- watch sets (the relay's side) ---------------------------------------------------------

    def list_sets(self) -> list[Any]:
        items = self._query("sets", index=True)
        return [self._watch_set(item) for item in items]

    def get_set(self, key: str) -> Any:
        item = self._get({"pk": _rt_s(f"set#{key}"), "sk": _rt_s("meta")})
        return self._watch_set(item) if item else None

    def list_members(self, key: str) -> list[Any]:
        from kubilitics.services.realtime_model import Member

        return [
            Member(
                connection_id=_rt_str(item, "connection_id") or "",
                subscription_id=_rt_str(item, "subscription_id") or "",
                from_rv=_rt_str(item, "from_rv") or "",
                expires_at=int(_rt_num(item, "expires_at")),
            )
            for item in self._query(f"set#{key}", sk_prefix="sub#")
        ]

    def checkpoint(self, key: str, resource_version: str, at: float, epoch: int) -> bool:
        """Record delivery up to `resource_version`; False if the set is gone or a newer relay owns it."""
        written = _conditional(
            "Checkpoint write",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": _rt_s(f"set#{key}"), "sk": _rt_s("meta")},
                UpdateExpression="SET checkpoint_rv = :rv, checkpoint_at = :at, relay_epoch = :epoch",
                # Fencing: a relay that lost its lease cannot move a checkpoint its successor relies on.
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(relay_epoch) "
                "OR relay_epoch <= :epoch)",
                ExpressionAttributeValues={
                    ":rv": _rt_s(resource_version),
                    ":at": _rt_n(round(at, 3)),
                    ":epoch": _rt_n(epoch),
                },
            ),
        )
        return written is not None

    def delete_set_if_unused(self, key: str, generation: int) -> bool:
        written = _conditional(
            "Watch set delete",
            lambda: client("dynamodb").delete_item(
                TableName=self._table,
                Key={"pk": _rt_s(f"set#{key}"), "sk": _rt_s("meta")},
                # A subscription added since `generation` was read keeps the set.
                ConditionExpression="generation = :g",
                ExpressionAttributeValues={":g": _rt_n(generation)},
            ),
        )
        return written is not None

    # ---- the relay lease -----------------------------------------------------------------------

    def acquire_lease(self, owner: str, now: float, lease_until: float, ends_at: float) -> int | None:
        result = _conditional(
            "Relay lease acquire",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key=self._LEASE,
                UpdateExpression="SET #owner = :owner, lease_until = :until, ends_at = :ends ADD epoch :one",
                # Its own owner may take it again (a local relay restarted after an error).
                ConditionExpression="attribute_not_exists(pk) OR lease_until < :now "
                "OR #owner IN (:free, :owner)",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":owner": _rt_s(owner),
                    ":until": _rt_n(round(lease_until, 3)),
                    ":ends": _rt_n(round(ends_at, 3)),
                    ":one": _rt_n(1),
                    ":now": _rt_n(round(now, 3)),
                    ":free": _rt_s(""),
                },
                ReturnValues="ALL_NEW",
            ),
        )
        return None if result is None else int(_rt_num(result["Attributes"], "epoch"))

    def renew_lease(self, owner: str, lease_until: float) -> bool:
        written = _conditional(
            "Relay lease renew",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key=self._LEASE,
                UpdateExpression="SET lease_until = :until",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": _rt_s(owner), ":until": _rt_n(round(lease_until, 3))},
            ),
        )
        return written is not None

    def release_lease(self, owner: str) -> None:
        # A lease someone took over already is left alone: nothing to give back.
        _conditional(
            "Relay lease release",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key=self._LEASE,
                UpdateExpression="SET #owner = :free, lease_until = :zero",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": _rt_s(owner), ":free": _rt_s(""), ":zero": _rt_n(0)},
            ),
        )

    def read_lease(self) -> dict[str, Any] | None:
        item = self._get(self._LEASE)
        if not item:
            return None
        return {
            "owner": _rt_str(item, "owner") or "",
            "epoch": int(_rt_num(item, "epoch")),
            "lease_until": _rt_num(item, "lease_until"),
            "ends_at": _rt_num(item, "ends_at"),
        }

    # ---- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _member_key(set_key: str, connection_id: str, subscription_id: str) -> dict[str, Any]:
        return {"pk": _rt_s(f"set#{set_key}"), "sk": _rt_s(f"sub#{connection_id}#{subscription_id}")}

    @staticmethod
    def _set_attributes(watch_set: Any, checkpoint_rv: str) -> dict[str, Any]:
        item = {
            "gsi1pk": _rt_s("sets"),
            "gsi1sk": _rt_s(watch_set.key),
            "context": _rt_s(watch_set.context),
            "group": _rt_s(watch_set.group),
            "version": _rt_s(watch_set.version),
            "kind": _rt_s(watch_set.kind),
            "plural": _rt_s(watch_set.plural),
            "namespaced": {"BOOL": watch_set.namespaced},
            "checkpoint_rv": _rt_s(checkpoint_rv),
            "checkpoint_at": _rt_n(round(time.time(), 3)),
            "generation": _rt_n(1),
        }
        if watch_set.namespace:
            item["namespace"] = _rt_s(watch_set.namespace)
        if watch_set.label_selector:
            item["label_selector"] = _rt_s(watch_set.label_selector)
        return item

    @staticmethod
    def _watch_set(item: dict[str, Any]) -> Any:
        from kubilitics.services.realtime_model import WatchSet

        return WatchSet(
            context=_rt_str(item, "context") or "",
            group=_rt_str(item, "group") or "",
            version=_rt_str(item, "version") or "",
            kind=_rt_str(item, "kind") or "",
            plural=_rt_str(item, "plural") or "",
            namespaced=bool(item.get("namespaced", {}).get("BOOL", False)),
            namespace=_rt_str(item, "namespace"),
            label_selector=_rt_str(item, "label_selector"),
            checkpoint_rv=_rt_str(item, "checkpoint_rv") or "",
            checkpoint_at=_rt_num(item, "checkpoint_at"),
            generation=int(_rt_num(item, "generation")),
        )

    @staticmethod
    def _pointer(item: dict[str, Any]) -> Any:
        from kubilitics.services.realtime_model import Pointer

        return Pointer(
            name=_rt_str(item, "sk") or "",
            stream=_rt_str(item, "stream") or "watch",
            set_key=_rt_str(item, "set_key"),
            session_id=_rt_str(item, "session_id"),
            sub=_rt_str(item, "sub"),
        )

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            item: dict[str, Any] | None = (
                client("dynamodb").get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
            )
        except Exception as exc:
            raise _database_error("Connections table read", exc) from exc
        return item

    def _query(self, pk: str, *, index: bool = False, sk_prefix: str | None = None) -> list[dict[str, Any]]:
        request: dict[str, Any] = {"TableName": self._table}
        if index:
            request.update(
                IndexName="gsi1",
                KeyConditionExpression="gsi1pk = :pk",
                ExpressionAttributeValues={":pk": _rt_s(pk)},
            )
        else:
            request["ConsistentRead"] = True
            if sk_prefix:
                request.update(
                    KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                    ExpressionAttributeValues={":pk": _rt_s(pk), ":prefix": _rt_s(sk_prefix)},
                )
            else:
                request.update(
                    KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": _rt_s(pk)}
                )
        items: list[dict[str, Any]] = []
        try:
            while True:
                page = client("dynamodb").query(**request)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return items
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:
            raise _database_error("Connections table query", exc) from exc

    def _delete_keys(self, keys: list[dict[str, Any]]) -> None:
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
            _batch_write(self._table, requests, "Connections table delete")


class DynamoSessionQueue:
    """Client input for sessions held by the session Lambda (ports.SessionQueue), in arrival order.

    The WebSocket Lambda may run several messages of one connection at once, so the order is a counter
    on the session's item (ADD is atomic); the reader waits for a missing number before skipping it.
    """

    def __init__(self, table: str, ttl_seconds: int = 3600):
        self._table = table
        self._ttl = ttl_seconds

    def open(self, session_id: str, connection_id: str, expires_at: int) -> None:
        try:
            client("dynamodb").put_item(
                TableName=self._table,
                Item={
                    "pk": _rt_s(f"sess#{session_id}"),
                    "sk": _rt_s("meta"),
                    "connection_id": _rt_s(connection_id),
                    "state": _rt_s("open"),
                    "seq": _rt_n(0),
                    # a session lasts minutes (15 at most on Lambda): no need to keep it for the token's life
                    "expires_at": _rt_n(min(expires_at, int(time.time()) + self._ttl)),
                },
            )
        except Exception as exc:
            raise _database_error("Session write", exc) from exc

    def append(self, session_id: str, command: dict[str, Any]) -> int:
        from kubilitics.errors import NotFound

        try:
            result = client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": _rt_s(f"sess#{session_id}"), "sk": _rt_s("meta")},
                UpdateExpression="ADD seq :one",
                ConditionExpression="attribute_exists(pk) AND #state = :open",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":one": _rt_n(1), ":open": _rt_s("open")},
                ReturnValues="UPDATED_NEW",
            )
            seq = int(result["Attributes"]["seq"]["N"])
            client("dynamodb").put_item(
                TableName=self._table,
                Item={
                    "pk": _rt_s(f"sess#{session_id}"),
                    "sk": _rt_s(f"in#{seq:012d}"),
                    "command": _rt_s(json.dumps(command)),
                    "expires_at": _rt_n(int(time.time()) + self._ttl),
                },
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                raise NotFound("The session has ended", details={"session_id": session_id}) from exc
            raise _database_error("Session input write", exc) from exc
        return seq

    def read(self, session_id: str, after: int) -> list[tuple[int, dict[str, Any]]]:
        try:
            page = client("dynamodb").query(
                TableName=self._table,
                ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :from AND :to",
                ExpressionAttributeValues={
                    ":pk": _rt_s(f"sess#{session_id}"),
                    ":from": _rt_s(f"in#{after + 1:012d}"),
                    ":to": _rt_s("in#999999999999"),
                },
            )
        except Exception as exc:
            raise _database_error("Session input read", exc) from exc
        return [
            (int((_rt_str(item, "sk") or "in#0")[3:]), json.loads(_rt_str(item, "command") or "{}"))
            for item in page.get("Items", [])
        ]

    def finish(self, session_id: str) -> None:
        """Mark the session ended: later input is refused with not_found (items expire with the TTL)."""
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": _rt_s(f"sess#{session_id}"), "sk": _rt_s("meta")},
                UpdateExpression="SET #state = :closed",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":closed": _rt_s("closed")},
            )
        except Exception as exc:
            raise _database_error("Session close", exc) from exc


# ---- AI insights (StateTable) ---------------------------------------------------------------------
#   pk insight#<id>          sk meta     one insight: scalar fields + `body` (JSON: affected_resources,
#                                        recommendation, extra); gsi1pk "insights", gsi1sk <context>#<id>
#   pk insightscan#<context> sk latest   the last scan's report (JSON)
# Dismissal fields (dismissed_*) are written only by `dismiss`; a rescan's `put` never touches them, so
# a dismissed insight stays dismissed whatever the scanner sees.

_INSIGHT_SCALARS = (
    "insight_id",
    "context",
    "category",
    "rule",
    "scope",
    "namespace",
    "severity",
    "title",
    "description",
    "fingerprint",
    "status",
    "generated_time",
)
_INSIGHT_BODY = ("affected_resources", "recommendation", "extra")


def _attr(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return _n(value)
    return {"S": str(value)}


def _item_to_plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v["BOOL"] if "BOOL" in v else _plain(v) for k, v in item.items()}


class DynamoInsightStore:
    """ports.InsightStore."""

    def __init__(self, table: str):
        self._table = table

    @staticmethod
    def _key(insight_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"insight#{insight_id}"}, "sk": {"S": "meta"}}

    @staticmethod
    def _record(item: dict[str, Any]) -> dict[str, Any]:
        plain = _item_to_plain(item)
        body = json.loads(plain.pop("body", "{}") or "{}")
        for name in ("pk", "sk", "gsi1pk", "gsi1sk"):
            plain.pop(name, None)
        return {**plain, **body}

    def list(self, context: str | None = None) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :pk"
            + (" AND begins_with(gsi1sk, :prefix)" if context is not None else ""),
            "ExpressionAttributeValues": {":pk": {"S": "insights"}},
        }
        if context is not None:
            request["ExpressionAttributeValues"][":prefix"] = {"S": f"{context}#"}
        records: list[dict[str, Any]] = []
        try:
            while True:
                page = client("dynamodb").query(**request)
                records.extend(self._record(item) for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return records
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:
            raise _database_error("Insight query", exc) from exc

    def get(self, insight_id: str) -> dict[str, Any] | None:
        try:
            item = client("dynamodb").get_item(
                TableName=self._table, Key=self._key(insight_id), ConsistentRead=True
            )
        except Exception as exc:
            raise _database_error("Insight read", exc) from exc
        found = item.get("Item")
        return self._record(found) if found else None

    def put(self, record: dict[str, Any], first_detected: float) -> None:
        """Create the insight or refresh what the scanner saw (active again, resolution cleared)."""
        names = {f"#{i}": name for i, name in enumerate(_INSIGHT_SCALARS) if record.get(name) is not None}
        values = {f":{i}": _attr(record[name]) for i, name in enumerate(_INSIGHT_SCALARS) if f"#{i}" in names}
        sets = [f"{alias} = :{alias[1:]}" for alias in names]
        body = {name: record.get(name) for name in _INSIGHT_BODY if record.get(name) is not None}
        values.update(
            {
                ":body": {"S": json.dumps(body, sort_keys=True, default=str)},
                ":gpk": {"S": "insights"},
                ":gsk": {"S": f"{record['context']}#{record['insight_id']}"},
                ":first": _n(first_detected),
            }
        )
        sets += [
            "body = :body",
            "gsi1pk = :gpk",
            "gsi1sk = :gsk",
            "first_detected = if_not_exists(first_detected, :first)",
        ]
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key=self._key(record["insight_id"]),
                UpdateExpression=f"SET {', '.join(sets)} REMOVE resolved_at, expires_at",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            raise _database_error("Insight write", exc) from exc

    def resolve(self, insight_id: str, at: float, expires_at: int) -> bool:
        written = _conditional(
            "Insight update",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key=self._key(insight_id),
                UpdateExpression="SET #status = :resolved, resolved_at = :at, expires_at = :exp",
                ConditionExpression="#status = :active",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":resolved": {"S": "resolved"},
                    ":active": {"S": "active"},
                    ":at": _n(at),
                    ":exp": _n(expires_at),
                },
            ),
        )
        return written is not None

    def dismiss(
        self, insight_id: str, by: str, reason: str, notes: str | None, at: float
    ) -> dict[str, Any] | None:
        """The dismissed insight; None if it does not exist or was dismissed already (look it up)."""
        values: dict[str, Any] = {":at": _n(at), ":by": {"S": by}, ":reason": {"S": reason}}
        sets = "dismissed_at = :at, dismissed_by = :by, dismissed_reason = :reason"
        if notes:
            values[":notes"] = {"S": notes}
            sets += ", dismissed_notes = :notes"
        result = _conditional(
            "Insight dismissal",
            lambda: client("dynamodb").update_item(
                TableName=self._table,
                Key=self._key(insight_id),
                UpdateExpression=f"SET {sets}",
                # One conditional write: of two concurrent dismissals exactly one succeeds.
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(dismissed_at)",
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            ),
        )
        return None if result is None else self._record(result["Attributes"])

    def put_scan(self, context: str, report: dict[str, Any]) -> None:
        try:
            client("dynamodb").put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": f"insightscan#{context}"},
                    "sk": {"S": "latest"},
                    "report": {"S": json.dumps(report, default=str)},
                },
            )
        except Exception as exc:
            raise _database_error("Insight scan record", exc) from exc

    def get_scan(self, context: str) -> dict[str, Any] | None:
        try:
            item = client("dynamodb").get_item(
                TableName=self._table, Key={"pk": {"S": f"insightscan#{context}"}, "sk": {"S": "latest"}}
            )
        except Exception as exc:
            raise _database_error("Insight scan read", exc) from exc
        found = item.get("Item")
        return json.loads(found["report"]["S"]) if found else None


# ---- AI chat history (StateTable) -----------------------------------------------------------------
#   pk chat#<session id>  sk x#<epoch ms>#<message id>   one exchange: the user's message and the answer
# One write per chat message; history is read newest first, as far back as the context window goes.


class DynamoChatHistory:
    """ports.ChatHistory."""

    def __init__(self, table: str):
        self._table = table

    def append(self, session_id: str, exchange: dict[str, Any], expires_at: int) -> None:
        item = {
            "pk": {"S": f"chat#{session_id}"},
            "sk": {"S": f"x#{int(exchange['at'] * 1000):013d}#{exchange['message_id']}"},
            "exchange": {"S": json.dumps(exchange, default=str)},
            "expires_at": _n(expires_at),
        }
        try:
            client("dynamodb").put_item(TableName=self._table, Item=item)
        except Exception as exc:
            raise _database_error("Chat history write", exc) from exc

    def recent(self, session_id: str, count: int) -> list[dict[str, Any]]:
        """The last `count` exchanges, oldest first."""
        try:
            page = client("dynamodb").query(
                TableName=self._table,
                ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :x)",
                ExpressionAttributeValues={":pk": {"S": f"chat#{session_id}"}, ":x": {"S": "x#"}},
                ScanIndexForward=False,
                Limit=max(1, count),
            )
        except Exception as exc:
            raise _database_error("Chat history read", exc) from exc
        return [json.loads(item["exchange"]["S"]) for item in reversed(page.get("Items", []))]


# ---- user engagement (RateLimitTable) -------------------------------------------------------------
#   the rate-limit counters rl#<sub>#<category>#<window start> are the records: the UpdateItem that
#   counts a request also counts its `op#<METHOD> <route>`, and the window's first request adds sub,
#   category, window_start and gsi1pk eng#<YYYY-MM-DD> / gsi1sk <window start>#<sub>#<category>, so
#   analytics reads a day's windows with one query instead of a scan. No extra write per request:
#   one more per user, category and minute.


class DynamoEngagementStore:
    """ports.EngagementStore."""

    def __init__(self, table: str):
        self._table = table

    def windows(self, start: float, end: float) -> list[dict[str, Any]]:
        from datetime import UTC, datetime, timedelta

        records: list[dict[str, Any]] = []
        day = datetime.fromtimestamp(start, UTC).date()
        last = datetime.fromtimestamp(end, UTC).date()
        while day <= last:
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :pk AND gsi1sk BETWEEN :from AND :to",
                "ExpressionAttributeValues": {
                    ":pk": {"S": f"eng#{day.isoformat()}"},
                    ":from": {"S": f"{int(start):012d}"},
                    ":to": {"S": f"{int(end):012d}~"},
                },
            }
            try:
                while True:
                    page = client("dynamodb").query(**request)
                    records.extend(_item_to_plain(item) for item in page.get("Items", []))
                    if "LastEvaluatedKey" not in page:
                        break
                    request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            except Exception as exc:
                raise _database_error("Engagement query", exc) from exc
            day += timedelta(days=1)
        return records


# -- Investigations and AI actions (StateTable) ---------------------------------------------------
#   pk inv#<id>  sk meta              the investigation: status, resource, progress, severity,
#                                     summary, root cause, recommendations, error;
#                                     gsi1 inv#<status> / <start time>#<id> (lists and queue counts)
#   pk inv#<id>  sk detail            findings, evidence citations, explanation (include_findings)
#   pk inv#<id>  sk doc#<name>#<n>    a large JSON document (the gathered evidence, the diagnosis),
#                                     gzip-compressed, in chunks that fit DynamoDB's item limit
#   pk act#<id>  sk meta              a proposed action; gsi1 act#<status> / <proposed at>#<id>
#   pk act#<id>  sk audit#<ms>#<rand>  one audit record per decision and execution step
# `expires_at` is the retention TTL. An action's approval window is `approval_expires_at`: the TTL
# attribute would let DynamoDB delete the action and turn a late approval's 410 into a 404.

_DOC_CHUNK_BYTES = 350_000


def _to_item(document: dict[str, Any]) -> dict[str, Any]:
    """A plain JSON-like document as DynamoDB attribute values (floats as numbers, None as NULL)."""
    from decimal import Decimal

    from boto3.dynamodb.types import TypeSerializer

    def prepare(value: Any) -> Any:
        if isinstance(value, float):
            return Decimal(repr(value))
        if isinstance(value, dict):
            return {str(k): prepare(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [prepare(v) for v in value]
        return value

    serializer = TypeSerializer()
    return {key: serializer.serialize(prepare(value)) for key, value in document.items()}


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    from decimal import Decimal

    from boto3.dynamodb.types import TypeDeserializer

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    deserializer = TypeDeserializer()
    return {k: plain(deserializer.deserialize(v)) for k, v in item.items()}


def _update_expression(fields: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    names = {f"#f{i}": key for i, key in enumerate(fields)}
    values = _to_item({f":v{i}": value for i, value in enumerate(fields.values())})
    return "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))), names, values


class _StateRecords:
    """What the investigation and action stores share: one table, JSON-like records, gsi1 listings."""

    def __init__(self, table: str, what: str):
        self._table = table
        self._what = what

    def _error(self, action: str, exc: Exception) -> DatabaseError:
        return _database_error(f"{self._what} {action}", exc)

    def _get_item(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            found = client("dynamodb").get_item(TableName=self._table, Key=key, ConsistentRead=True)
        except Exception as exc:
            raise self._error("read", exc) from exc
        item = found.get("Item")
        return _from_item(item) if item else None

    def _query_all(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        request = {"TableName": self._table, **request}
        items: list[dict[str, Any]] = []
        try:
            while True:
                page = client("dynamodb").query(**request)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return items
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:
            raise self._error("query", exc) from exc

    def _listing(self, index_key: str) -> list[dict[str, Any]]:
        items = self._query_all(
            {
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": index_key}},
            }
        )
        return [_strip_keys(_from_item(item)) for item in items]

    def _update(self, key: dict[str, Any], fields: dict[str, Any], **condition: Any) -> bool:
        expression, names, values = _update_expression(fields)
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": key,
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if condition:
            request["ConditionExpression"] = condition["expression"]
            request["ExpressionAttributeNames"].update(condition.get("names", {}))
            request["ExpressionAttributeValues"].update(condition.get("values", {}))
        written = _conditional(f"{self._what} write", lambda: client("dynamodb").update_item(**request))
        return written is not None


def _strip_keys(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("pk", "sk", "gsi1pk", "gsi1sk")}


class DynamoInvestigationStore(_StateRecords):
    def __init__(self, table: str):
        super().__init__(table, "Investigation store")

    @staticmethod
    def _key(investigation_id: str, sk: str = "meta") -> dict[str, Any]:
        return {"pk": {"S": f"inv#{investigation_id}"}, "sk": {"S": sk}}

    @staticmethod
    def _index(record: dict[str, Any]) -> dict[str, Any]:
        return {
            "gsi1pk": f"inv#{record['status']}",
            "gsi1sk": f"{record['start_time']:017.6f}#{record['investigation_id']}",
        }

    def create(self, record: dict[str, Any]) -> None:
        item = {"pk": f"inv#{record['investigation_id']}", "sk": "meta", **record, **self._index(record)}
        try:
            client("dynamodb").put_item(
                TableName=self._table, Item=_to_item(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except Exception as exc:
            raise self._error("write", exc) from exc

    def get(self, investigation_id: str) -> dict[str, Any] | None:
        record = self._get_item(self._key(investigation_id))
        return _strip_keys(record) if record else None

    def update(self, investigation_id: str, fields: dict[str, Any]) -> None:
        fields = dict(fields)
        if "status" in fields:
            # The status listing (gsi1pk) moves with the status; the sort key (start time) stays.
            fields["gsi1pk"] = f"inv#{fields['status']}"
        # A record gone meanwhile (retention) is not recreated by a late step.
        self._update(self._key(investigation_id), fields, expression="attribute_exists(pk)")

    def claim_slot_release(self, investigation_id: str) -> bool:
        return self._update(
            self._key(investigation_id),
            {"slot_released": True},
            expression="attribute_exists(pk) AND attribute_not_exists(slot_released)",
        )

    def list(self, statuses: Sequence[str]) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for status in statuses:
            records.extend(self._listing(f"inv#{status}"))
        return records

    def count(self, status: str) -> int:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"inv#{status}"}},
            "Select": "COUNT",
        }
        total = 0
        try:
            while True:
                page = client("dynamodb").query(**request)
                total += int(page.get("Count", 0))
                if "LastEvaluatedKey" not in page:
                    return total
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:
            raise self._error("count", exc) from exc

    def put_detail(self, investigation_id: str, detail: dict[str, Any], expires_at: int) -> None:
        item = {
            **self._key(investigation_id, "detail"),
            "doc": {"S": json.dumps(detail, separators=(",", ":"), default=str)},
            "expires_at": _n(expires_at),
        }
        try:
            client("dynamodb").put_item(TableName=self._table, Item=item)
        except Exception as exc:
            raise self._error("write", exc) from exc

    def details(self, investigation_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        ids = list(dict.fromkeys(investigation_ids))
        for start in range(0, len(ids), 100):
            request = {
                "Keys": [self._key(i, "detail") for i in ids[start : start + 100]],
                "ConsistentRead": True,
            }
            for item in _batch_get(self._table, request, f"{self._what} read"):
                found[item["pk"]["S"].removeprefix("inv#")] = json.loads(item["doc"]["S"])
        return found

    def put_document(self, investigation_id: str, name: str, document: Any, expires_at: int) -> int:
        import gzip

        data = gzip.compress(json.dumps(document, separators=(",", ":"), default=str).encode(), 6)
        chunks = [data[i : i + _DOC_CHUNK_BYTES] for i in range(0, len(data), _DOC_CHUNK_BYTES)] or [b""]
        try:
            for n, chunk in enumerate(chunks):
                item = {
                    **self._key(investigation_id, f"doc#{name}#{n:03d}"),
                    "data": {"B": chunk},
                    "chunks": _n(len(chunks)),
                    "expires_at": _n(expires_at),
                }
                client("dynamodb").put_item(TableName=self._table, Item=item)
        except Exception as exc:
            raise self._error("write", exc) from exc
        return len(data)

    def get_document(self, investigation_id: str, name: str) -> Any:
        import gzip

        items = self._query_all(
            {
                "ConsistentRead": True,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": {
                    ":pk": {"S": f"inv#{investigation_id}"},
                    ":prefix": {"S": f"doc#{name}#"},
                },
            }
        )
        if not items:
            return None
        expected = int(items[0]["chunks"]["N"])
        # A retried step may have written fewer chunks over more: only the first `chunks` belong together.
        data = b"".join(item["data"]["B"] for item in sorted(items, key=lambda i: i["sk"]["S"])[:expected])
        return json.loads(gzip.decompress(data))


class DynamoActionStore(_StateRecords):
    def __init__(self, table: str):
        super().__init__(table, "Action store")

    @staticmethod
    def _key(action_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"act#{action_id}"}, "sk": {"S": "meta"}}

    def put(self, action: dict[str, Any]) -> None:
        item = {
            "pk": f"act#{action['action_id']}",
            "sk": "meta",
            **action,
            "gsi1pk": f"act#{action['status']}",
            "gsi1sk": f"{action['proposed_at']:017.6f}#{action['action_id']}",
        }
        try:
            client("dynamodb").put_item(TableName=self._table, Item=_to_item(item))
        except Exception as exc:
            raise self._error("write", exc) from exc

    def get(self, action_id: str) -> dict[str, Any] | None:
        record = self._get_item(self._key(action_id))
        return _strip_keys(record) if record else None

    def transition(
        self,
        action_id: str,
        from_status: str,
        to_status: str,
        fields: dict[str, Any],
        *,
        open_until_after: float | None = None,
        execution_status: str | None = None,
    ) -> bool:
        # One conditional write decides: of two concurrent approvals, exactly one moves the status.
        expression = "#status = :from"
        values = _to_item({":from": from_status})
        if open_until_after is not None:
            expression += " AND approval_expires_at > :now"
            values.update(_to_item({":now": open_until_after}))
        if execution_status is not None:
            expression += " AND execution_status = :execution"
            values.update(_to_item({":execution": execution_status}))
        return self._update(
            self._key(action_id),
            {**fields, "status": to_status, "gsi1pk": f"act#{to_status}"},
            expression=expression,
            names={"#status": "status"},
            values=values,
        )

    def update(self, action_id: str, fields: dict[str, Any]) -> None:
        self._update(self._key(action_id), fields, expression="attribute_exists(pk)")

    def list_status(self, status: str) -> list[dict[str, Any]]:
        return self._listing(f"act#{status}")

    def add_audit(self, action_id: str, record: dict[str, Any], expires_at: int) -> None:
        import uuid

        item = {
            "pk": f"act#{action_id}",
            "sk": f"audit#{int(record['at'] * 1000):013d}#{uuid.uuid4().hex[:8]}",
            **record,
            "expires_at": expires_at,
        }
        try:
            client("dynamodb").put_item(TableName=self._table, Item=_to_item(item))
        except Exception as exc:
            raise self._error("audit write", exc) from exc

    def audit(self, action_id: str) -> list[dict[str, Any]]:
        items = self._query_all(
            {
                "ConsistentRead": True,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": {":pk": {"S": f"act#{action_id}"}, ":prefix": {"S": "audit#"}},
            }
        )
        return [_strip_keys(_from_item(item)) for item in items]
