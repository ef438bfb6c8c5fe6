"""DynamoDB repositories. Key layouts live here and nowhere else."""

from __future__ import annotations

import json
import time
from typing import Any

from kubilitics.adapters.aws import client
from kubilitics.errors import DatabaseError


def _is_conditional_failure(exc: Exception) -> bool:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoRateLimitStore:
    def __init__(self, table: str):
        self._table = table

    def increment_window(self, key: str, expires_at: int) -> int:
        try:
            result = client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="ADD n :one SET expires_at = :exp",
                ExpressionAttributeValues={":one": {"N": "1"}, ":exp": {"N": str(expires_at)}},
                ReturnValues="UPDATED_NEW",
            )
        except Exception as exc:
            raise DatabaseError(
                "Rate-limit counter update failed", details={"reason": type(exc).__name__}
            ) from exc
        return int(result["Attributes"]["n"]["N"])

    def acquire_slot(self, key: str, limit: int, lease_until: int) -> bool:
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="ADD n :one SET lease_until = :lease",
                ConditionExpression="attribute_not_exists(n) OR n < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":lease": {"N": str(lease_until)},
                },
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise DatabaseError(
                "Concurrency slot update failed", details={"reason": type(exc).__name__}
            ) from exc
        return True

    def release_slot(self, key: str) -> None:
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="ADD n :minus",
                ConditionExpression="n > :zero",
                ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return  # already at zero (e.g. reset after a stale lease): nothing to give back
            raise DatabaseError(
                "Concurrency slot release failed", details={"reason": type(exc).__name__}
            ) from exc

    def reset_stale_slots(self, key: str, now: int, lease_until: int) -> bool:
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET n = :one, lease_until = :lease",
                ConditionExpression="lease_until < :now",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":lease": {"N": str(lease_until)},
                    ":now": {"N": str(now)},
                },
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise DatabaseError(
                "Concurrency slot reset failed", details={"reason": type(exc).__name__}
            ) from exc
        return True

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
            raise DatabaseError(
                "Token revocation lookup failed", details={"reason": type(exc).__name__}
            ) from exc
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
            raise DatabaseError(
                "Token revocation write failed", details={"reason": type(exc).__name__}
            ) from exc


class DynamoLeaseStore:
    """Leases as items of the rate-limit table: `lease#<name>`, taken with a conditional put.

    `lease_until` decides (a holder that crashed frees the lease when it runs out); `expires_at` only
    lets DynamoDB's TTL sweep old items, which it does lazily.
    """

    def __init__(self, table: str):
        self._table = table

    def acquire(self, name: str, owner: str, lease_until: float, now: float) -> bool:
        try:
            client("dynamodb").put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": f"lease#{name}"},
                    "lease_owner": {"S": owner},
                    "lease_until": {"N": f"{lease_until:.3f}"},
                    "expires_at": {"N": str(int(lease_until) + 3600)},
                },
                ConditionExpression="attribute_not_exists(pk) OR lease_until < :now",
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise DatabaseError("Lease acquisition failed", details={"reason": type(exc).__name__}) from exc
        return True

    def release(self, name: str, owner: str) -> None:
        try:
            client("dynamodb").delete_item(
                TableName=self._table,
                Key={"pk": {"S": f"lease#{name}"}},
                ConditionExpression="lease_owner = :owner",
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return  # it ran out and someone else holds it now: theirs to release
            raise DatabaseError("Lease release failed", details={"reason": type(exc).__name__}) from exc


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
        try:
            client("dynamodb").update_item(
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
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise DatabaseError(
                "AI budget reservation failed", details={"reason": type(exc).__name__}
            ) from exc
        return True

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
        try:
            try:
                result = client("dynamodb").update_item(
                    TableName=self._table,
                    Key=self._ledger_key(month),
                    UpdateExpression=(
                        f"{set_clause} REMOVE #r {adds}, committed_cost :dc, committed_tokens :dt"
                    ),
                    ConditionExpression="attribute_exists(#r)",
                    ExpressionAttributeNames={"#r": f"resv_{reservation_id}"},
                    ExpressionAttributeValues={
                        **values,
                        ":dc": _n(cost - reserved_cost),
                        ":dt": _n(tokens - reserved_tokens),
                    },
                    ReturnValues="ALL_NEW",
                )
            except Exception as exc:
                if not _is_conditional_failure(exc):
                    raise
                # The reservation was released as stale meanwhile: add the whole usage instead.
                result = client("dynamodb").update_item(
                    TableName=self._table,
                    Key=self._ledger_key(month),
                    UpdateExpression=f"{set_clause} {adds}, committed_cost :used_c, committed_tokens :used_t",
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
        except Exception as exc:
            raise DatabaseError(
                "AI budget settlement failed", details={"reason": type(exc).__name__}
            ) from exc
        return {k: _plain(v) for k, v in result["Attributes"].items()}

    def totals(self, month: str) -> dict[str, Any]:
        try:
            item = client("dynamodb").get_item(
                TableName=self._table, Key=self._ledger_key(month), ConsistentRead=True
            )
        except Exception as exc:
            raise DatabaseError("AI budget read failed", details={"reason": type(exc).__name__}) from exc
        return {k: _plain(v) for k, v in item.get("Item", {}).items()}

    def reservations(self, month: str) -> list[dict[str, Any]]:
        return [
            {"id": key.removeprefix("resv_"), **value}
            for key, value in self.totals(month).items()
            if key.startswith("resv_")
        ]

    def release(self, month: str, reservation_id: str, *, cost: int, tokens: int) -> bool:
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key=self._ledger_key(month),
                UpdateExpression="REMOVE #r ADD committed_cost :c, committed_tokens :t",
                ConditionExpression="attribute_exists(#r)",
                ExpressionAttributeNames={"#r": f"resv_{reservation_id}"},
                ExpressionAttributeValues={":c": _n(-cost), ":t": _n(-tokens)},
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False  # settled or released by someone else first
            raise DatabaseError("AI budget release failed", details={"reason": type(exc).__name__}) from exc
        return True

    def mark_alert(self, month: str, threshold: int, at: float) -> bool:
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key=self._ledger_key(month),
                UpdateExpression="SET #a = :at",
                ConditionExpression="attribute_not_exists(#a)",
                ExpressionAttributeNames={"#a": f"alert_{int(threshold)}"},
                ExpressionAttributeValues={":at": _n(at)},
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise DatabaseError(
                "AI budget alert write failed", details={"reason": type(exc).__name__}
            ) from exc
        return True

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
            raise DatabaseError(
                "AI usage record write failed", details={"reason": type(exc).__name__}
            ) from exc

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
            raise DatabaseError("AI usage query failed", details={"reason": type(exc).__name__}) from exc


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
            raise DatabaseError(
                "AI configuration read failed", details={"reason": type(exc).__name__}
            ) from exc
        found = item.get("Item")
        if not found:
            return {}, 0
        return json.loads(found["config"]["S"]), int(found["version"]["N"])

    def save(self, overrides: dict[str, Any], expected_version: int, updated_by: str, at: float) -> bool:
        try:
            client("dynamodb").put_item(
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
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise DatabaseError(
                "AI configuration write failed", details={"reason": type(exc).__name__}
            ) from exc
        return True


# ---- real time: the connections table -------------------------------------------------------
#   pk conn#<connection id>  sk meta               the connection: who, scopes, context, expires_at
#   pk conn#<connection id>  sk sub#<id> | shell    pointers: a watch subscription (-> its set), a
#                                                  live-log or shell session (-> its session id)
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


def _rt_database_error(what: str, exc: Exception) -> DatabaseError:
    return DatabaseError(f"{what} failed", details={"reason": type(exc).__name__})


class DynamoRealtimeStore:
    """Connections, subscriptions, watch sets and the relay lease (ports.RealtimeStore)."""

    _LEASE = {"pk": _rt_s("relay"), "sk": _rt_s("lease")}

    def __init__(self, table: str):
        self._table = table

    # ---- connections ---------------------------------------------------------------------------

    def put_connection(self, connection: Any) -> None:
        item = {
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
        try:
            client("dynamodb").put_item(TableName=self._table, Item=item)
        except Exception as exc:
            raise _rt_database_error("Connection write", exc) from exc

    def get_connection(self, connection_id: str) -> Any:
        from kubilitics.services.realtime_model import Connection

        try:
            item = (
                client("dynamodb")
                .get_item(
                    TableName=self._table,
                    Key={"pk": _rt_s(f"conn#{connection_id}"), "sk": _rt_s("meta")},
                    ConsistentRead=True,
                )
                .get("Item")
            )
        except Exception as exc:
            raise _rt_database_error("Connection read", exc) from exc
        if not item:
            return None
        return Connection(
            connection_id=connection_id,
            sub=_rt_str(item, "sub") or "",
            jti=_rt_str(item, "jti") or "",
            scopes=frozenset(s for s in (_rt_str(item, "scopes") or "").split(",") if s),
            token_type=_rt_str(item, "token_type") or "user",
            expires_at=int(_rt_num(item, "expires_at")),
            context=_rt_str(item, "context") or "",
            cluster_id=_rt_str(item, "cluster_id"),
            namespace=_rt_str(item, "namespace"),
            connected_at=_rt_num(item, "connected_at"),
        )

    def delete_connection(self, connection_id: str) -> list[Any]:
        items = self._query(f"conn#{connection_id}")
        pointers = [self._pointer(item) for item in items if _rt_str(item, "sk") != "meta"]
        keys = [{"pk": item["pk"], "sk": item["sk"]} for item in items]
        for pointer in pointers:
            if pointer.stream == "watch" and pointer.set_key:
                subscription_id = pointer.name.removeprefix("sub#")
                keys.append(self._member_key(pointer.set_key, connection_id, subscription_id))
        self._delete_keys(keys)
        return pointers

    # ---- subscriptions and pointers ------------------------------------------------------------

    def add_subscription(
        self,
        connection_id: str,
        subscription_id: str,
        watch_set: Any,
        initial_rv: Any,
        expires_at: int,
    ) -> str:
        from kubilitics.errors import KubiliticsError, Unauthorized

        key = watch_set.key
        set_item_key = {"pk": _rt_s(f"set#{key}"), "sk": _rt_s("meta")}
        for _ in range(10):
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
            try:
                client("dynamodb").transact_write_items(
                    TransactItems=[
                        {
                            "ConditionCheck": {
                                "TableName": self._table,
                                "Key": {"pk": _rt_s(f"conn#{connection_id}"), "sk": _rt_s("meta")},
                                "ConditionExpression": "attribute_exists(pk)",
                            }
                        },
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
                )
                return from_rv
            except Exception as exc:
                reasons = [
                    r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", []) or []
                ]
                if not reasons:
                    raise _rt_database_error("Subscription write", exc) from exc
                if reasons[0] == "ConditionalCheckFailed":
                    raise Unauthorized("This connection is no longer registered; reconnect") from exc
                if len(reasons) > 3 and reasons[3] == "ConditionalCheckFailed":
                    raise KubiliticsError(
                        f"Subscription {subscription_id!r} already exists on this connection",
                        code="already_exists",
                        details={"subscription_id": subscription_id},
                    ) from exc
                # The checkpoint moved (or the set appeared) meanwhile: read it again.
        raise DatabaseError("Subscription write kept conflicting with the watch relay")

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
            raise _rt_database_error("Pointer write", exc) from exc

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
            raise _rt_database_error("Pointer delete", exc) from exc
        if not old:
            return None
        pointer = self._pointer(old)
        if pointer.stream == "watch" and pointer.set_key:
            self._delete_keys([self._member_key(pointer.set_key, connection_id, name.removeprefix("sub#"))])
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
        try:
            client("dynamodb").update_item(
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
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise _rt_database_error("Checkpoint write", exc) from exc
        return True

    def delete_set_if_unused(self, key: str, generation: int) -> bool:
        try:
            client("dynamodb").delete_item(
                TableName=self._table,
                Key={"pk": _rt_s(f"set#{key}"), "sk": _rt_s("meta")},
                # A subscription added since `generation` was read keeps the set.
                ConditionExpression="generation = :g",
                ExpressionAttributeValues={":g": _rt_n(generation)},
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise _rt_database_error("Watch set delete", exc) from exc
        return True

    # ---- the relay lease -----------------------------------------------------------------------

    def acquire_lease(self, owner: str, now: float, lease_until: float, ends_at: float) -> int | None:
        try:
            result = client("dynamodb").update_item(
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
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return None
            raise _rt_database_error("Relay lease acquire", exc) from exc
        return int(_rt_num(result["Attributes"], "epoch"))

    def renew_lease(self, owner: str, lease_until: float) -> bool:
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key=self._LEASE,
                UpdateExpression="SET lease_until = :until",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": _rt_s(owner), ":until": _rt_n(round(lease_until, 3))},
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise _rt_database_error("Relay lease renew", exc) from exc
        return True

    def release_lease(self, owner: str) -> None:
        try:
            client("dynamodb").update_item(
                TableName=self._table,
                Key=self._LEASE,
                UpdateExpression="SET #owner = :free, lease_until = :zero",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": _rt_s(owner), ":free": _rt_s(""), ":zero": _rt_n(0)},
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return  # someone took over already: nothing to give back
            raise _rt_database_error("Relay lease release", exc) from exc

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
            raise _rt_database_error("Connections table read", exc) from exc
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
            raise _rt_database_error("Connections table query", exc) from exc

    def _delete_keys(self, keys: list[dict[str, Any]]) -> None:
        try:
            for start in range(0, len(keys), 25):
                pending: dict[str, Any] = {
                    self._table: [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
                }
                for _ in range(5):
                    result = client("dynamodb").batch_write_item(RequestItems=pending)
                    pending = result.get("UnprocessedItems") or {}
                    if not pending:
                        break
                    time.sleep(0.05)
        except Exception as exc:
            raise _rt_database_error("Connections table delete", exc) from exc


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
                    "expires_at": _rt_n(expires_at),
                },
            )
        except Exception as exc:
            raise _rt_database_error("Session write", exc) from exc

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
            raise _rt_database_error("Session input write", exc) from exc
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
            raise _rt_database_error("Session input read", exc) from exc
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
            raise _rt_database_error("Session close", exc) from exc
