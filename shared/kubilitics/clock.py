"""Time in one place, so tests can move it, and the dated ids made from it."""

from __future__ import annotations

import time
import uuid
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


def new_id(prefix: str, now: float) -> str:
    """`act-20260210-3f9a1c` (spec-decisions 11: the reference's prefixes, the UTC day, 6 random hex)."""
    day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
    return f"{prefix}-{day}-{uuid.uuid4().hex[:6]}"
