"""DynamoDB repositories. Key layouts live here and nowhere else."""

from __future__ import annotations

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


def ping_table(table: str) -> dict[str, Any]:
    """A cheap real read used by /health."""
    description = client("dynamodb").describe_table(TableName=table)["Table"]
    return {"table": table, "status": description.get("TableStatus", "UNKNOWN")}
