"""Per-user rate limits by category (reference section 17).

Fixed one-minute windows, one atomic counter update per request. A user may go `BURST` requests over
the category's limit within a window (the burst allowance, refreshed every window). Service tokens get
5x and admin tokens 10x the limits. Concurrency slots (investigations, chat sessions, shells, log
follows) are counters taken with a conditional write and given back on completion or failure; a lease
lets a counter leaked by a crashed instance start afresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kubilitics.auth.tokens import Principal
from kubilitics.errors import RateLimitExceeded
from kubilitics.ports import Clock, RateLimitStore

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
BURST = 20
SLOT_LEASE_SECONDS = 3600
# Counters are kept this long because they double as the record of user engagement (analytics).
ENGAGEMENT_RETENTION_SECONDS = 91 * 86400


@dataclass(frozen=True)
class Policy:
    per_minute: int | None  # None: no per-minute limit
    concurrent: int | None = None  # None: no concurrency limit


# category -> base limits for a user token
POLICIES: dict[str, Policy] = {
    "read": Policy(200),
    "write": Policy(50),
    "standard": Policy(100),  # version, contexts, metrics, AI reads
    "topology": Policy(50),
    "config_write": Policy(10),
    "logs": Policy(100, concurrent=100),
    "exec": Policy(50),
    "investigations": Policy(20, concurrent=5),
    "chat": Policy(50, concurrent=10),
    "shells": Policy(None, concurrent=10),
}


@dataclass(frozen=True)
class UsageMark:
    """Who made a request, in which category and window, and what it was (`GET /api/v1/...`)."""

    sub: str
    category: str
    window_start: int
    operation: str | None = None


@dataclass(frozen=True)
class Decision:
    limit: int
    remaining: int
    reset_at: int
    reset_after: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
            "X-RateLimit-Reset-After": str(self.reset_after),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_after)
        return headers


class RateLimiter:
    def __init__(self, store: RateLimitStore, clock: Clock):
        self._store = store
        self._clock = clock

    def hit(self, principal: Principal, category: str, operation: str | None = None) -> Decision:
        """Count one request; the decision says whether it is allowed (it does not raise)."""
        policy = POLICIES[category]
        if policy.per_minute is None:
            raise ValueError(f"category {category!r} has no per-minute limit")
        now = self._clock.now()
        window_start = int(now // WINDOW_SECONDS) * WINDOW_SECONDS
        reset_at = window_start + WINDOW_SECONDS
        limit = policy.per_minute * principal.rate_multiplier
        key = f"rl#{principal.sub}#{category}#{window_start}"
        count = self._store.increment_window(
            key,
            expires_at=reset_at + ENGAGEMENT_RETENTION_SECONDS,
            usage=UsageMark(principal.sub, category, window_start, operation),
        )
        return Decision(
            limit=limit,
            remaining=max(0, limit - count),
            reset_at=reset_at,
            reset_after=max(1, reset_at - int(now)),
            allowed=count <= limit + BURST,
        )

    def acquire_slot(self, principal: Principal, category: str) -> None:
        """Take a concurrency slot or raise 429; pair every success with `release_slot`."""
        policy = POLICIES[category]
        if policy.concurrent is None:
            raise ValueError(f"category {category!r} has no concurrency limit")
        limit = policy.concurrent * principal.rate_multiplier
        self._take(
            self.slot_key(principal.sub, category),
            limit,
            f"At most {limit} concurrent {category} per user",
            {"category": category, "concurrent_limit": limit},
        )

    def release_slot(self, sub: str, category: str) -> None:
        self._store.release_slot(self.slot_key(sub, category))

    def acquire_shared_slot(self, category: str, limit: int) -> None:
        """Take one of `limit` slots that every user shares (a deployment-wide cap) or raise 429;
        pair every success with `release_shared_slot`."""
        self._take(
            self.shared_slot_key(category),
            limit,
            f"At most {limit} concurrent {category} across all users",
            {"category": category, "concurrent_limit": limit, "scope": "all_users"},
        )

    def release_shared_slot(self, category: str) -> None:
        self._store.release_slot(self.shared_slot_key(category))

    def _take(self, key: str, limit: int, message: str, details: dict[str, object]) -> None:
        now = int(self._clock.now())
        lease_until = now + SLOT_LEASE_SECONDS
        if self._store.acquire_slot(key, limit, lease_until):
            return
        if self._store.reset_stale_slots(key, now, lease_until):
            log.warning("concurrency counter %s had an expired lease; started afresh", key)
            return
        raise RateLimitExceeded(message, details=details, headers={"Retry-After": "5"})

    @staticmethod
    def slot_key(sub: str, category: str) -> str:
        return f"cc#{sub}#{category}"

    @staticmethod
    def shared_slot_key(category: str) -> str:
        return f"cc-all#{category}"  # "cc#<sub>#..." keys belong to users
