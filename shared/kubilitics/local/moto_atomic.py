"""Make moto's DynamoDB apply each write atomically, as DynamoDB does.

moto's in-process backend takes no lock, so threads can interleave inside one write (a counter hit
from 40 threads may come out one too high). One lock around the backend's item operations restores
DynamoDB's per-item atomicity, so the local server counts rate limits correctly and concurrency
tests measure our code, whose own read-decide-write races are still there to be caught.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

OPERATIONS = ("update_item", "put_item", "get_item", "delete_item", "query", "transact_write_items")


def make_dynamodb_atomic(patch: Callable[[Any, str, Any], None] = setattr) -> None:
    """Wrap the backend's item operations in one lock; `patch` lets tests undo it (monkeypatch)."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in OPERATIONS:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, "_kubilitics_atomic", False):
            continue

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        locked._kubilitics_atomic = True  # type: ignore[attr-defined]
        patch(DynamoDBBackend, name, locked)
