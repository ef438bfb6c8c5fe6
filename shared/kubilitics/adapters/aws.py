"""boto3 clients, created lazily once per process (client creation costs tens of ms at cold start)."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

from kubilitics.config import get_settings

_lock = threading.Lock()


@cache
def client(service: str) -> Any:
    import boto3  # deferred: functions that never touch AWS do not pay for it
    from botocore.config import Config

    settings = get_settings()
    with _lock:  # boto3's default session is not safe to use from several threads at once
        return boto3.client(
            service,
            region_name=settings.region,
            endpoint_url=settings.aws_endpoint_url,
            # One client serves every thread of a process (the local server runs many): a larger pool.
            config=Config(
                connect_timeout=2,
                read_timeout=5,
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=32,
                # Our requests are built by code, and the service checks them anyway: skipping the
                # client's own check saves ~0.3 ms of CPU a call (the rate-limit write is on every request).
                parameter_validation=False,
            ),
        )


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints and settings)."""
    client.cache_clear()
