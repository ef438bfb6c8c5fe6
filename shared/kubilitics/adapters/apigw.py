"""Pushes to API Gateway WebSocket connections (the stage's management API) and async Lambda invokes."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from kubilitics.errors import KubiliticsError

log = logging.getLogger(__name__)

# Throttling and 5xx from the management API are retried this often before a message is given up.
POST_ATTEMPTS = 3


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class ApiGatewayNotifier:
    """ports.ConnectionNotifier over `apigatewaymanagementapi` (post_to_connection, delete_connection)."""

    def __init__(self, endpoint: str | None, region: str):
        self._endpoint = endpoint
        self._region = region
        self._client: Any = None
        self._lock = threading.Lock()

    def _management(self) -> Any:
        with self._lock:
            if self._client is None:
                if not self._endpoint:
                    raise KubiliticsError(
                        "KUBILITICS_WEBSOCKET_ENDPOINT is not set", code="service_unavailable"
                    )
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "apigatewaymanagementapi",
                    endpoint_url=self._endpoint,
                    region_name=self._region,
                    config=Config(
                        connect_timeout=2,
                        read_timeout=5,
                        retries={"max_attempts": 1},
                        max_pool_connections=64,  # the relay posts from a pool of threads
                    ),
                )
            return self._client

    def post(self, connection_id: str, message: str) -> bool:
        data = message.encode()
        for attempt in range(POST_ATTEMPTS):
            try:
                self._management().post_to_connection(ConnectionId=connection_id, Data=data)
                return True
            except Exception as exc:
                code = _code(exc)
                if code in ("GoneException", "ForbiddenException"):
                    return False  # the client went away (or never finished connecting)
                if code == "PayloadTooLargeException" or attempt == POST_ATTEMPTS - 1:
                    log.warning("post_to_connection %s failed: %r", connection_id, exc)
                    return True  # the connection is there; this one message is lost
                time.sleep(0.05 * 4**attempt)
        return True

    def post_batch(self, connection_id: str, messages: list[str]) -> bool:
        # One post_to_connection per message: API Gateway delivers each as its own WebSocket message.
        return all(self.post(connection_id, message) for message in messages)

    def close(self, connection_id: str) -> None:
        try:
            self._management().delete_connection(ConnectionId=connection_id)
        except Exception as exc:
            if _code(exc) != "GoneException":
                log.warning("delete_connection %s failed: %r", connection_id, exc)


class LambdaInvoker:
    """ports.AsyncInvoker: `InvocationType=Event` (the caller does not wait for the function)."""

    def invoke_async(self, function: str, payload: dict[str, Any]) -> None:
        from kubilitics.adapters.aws import client

        try:
            client("lambda").invoke(
                FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode()
            )
        except Exception as exc:
            raise KubiliticsError(
                "Could not start the session worker",
                code="service_unavailable",
                details={"function": function, "reason": type(exc).__name__},
            ) from exc
