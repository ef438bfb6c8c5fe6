"""Time in one place, so tests can move it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> float:
        return time.time()


def rfc3339(epoch_seconds: float | None = None) -> str:
    """RFC 3339 UTC with a `Z` suffix (spec-decisions 11), second precision."""
    moment = datetime.fromtimestamp(time.time() if epoch_seconds is None else epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_ms(epoch_seconds: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds (WebSocket messages, as in the reference's examples)."""
    moment = datetime.fromtimestamp(time.time() if epoch_seconds is None else epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
