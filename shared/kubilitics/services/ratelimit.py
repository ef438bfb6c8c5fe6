"""Per-user rate limits by category (reference section 17).

Fixed one-minute windows, one atomic counter update per request. A user may go `BURST` requests over
the category's limit within a window (the burst allowance, refreshed every window). Service tokens get
5x and admin tokens 10x the limits (and every limit x `multiplier`, a development-only setting that
lets `make fuzz` reach every operation). An instance remembers a refused window: the user's later requests in
that category are refused until the window ends without touching the counter (or Kubernetes). Concurrency
slots (investigations, chat sessions, shells, log follows) are counters taken with a conditional write
and given back on completion or failure; a lease lets a counter leaked by a crashed instance start afresh.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

from kubilitics.auth.tokens import Principal
from kubilitics.errors import RateLimitExceeded
from kubilitics.ports import Clock, RateLimitStore

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
BURST = 20
SLOT_LEASE_SECONDS = 3600
# Counters are kept this long because they double as the record of user engagement (analytics).
ENGAGEMENT_RETENTION_SECONDS = 91 * 86400
# Refused windows an instance remembers at most (a few hundred bytes each): expired ones go first.
MAX_REMEMBERED_DENIALS = 10_000


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
    def __init__(self, store: RateLimitStore, clock: Clock, multiplier: int = 1):
        self._store = store
        self._clock = clock
        self._multiplier = multiplier
        # (sub, category, multiplier) -> the refusal of its window. Once refused, a user stays refused
        # until the window ends, so later requests need neither the counter nor the work they ask for.
        self._denials: dict[tuple[str, str, int], Decision] = {}
        self._denials_lock = threading.Lock()

    def denied(self, principal: Principal, category: str) -> Decision | None:
        """The refusal this instance remembers for the caller's current window, if any (no I/O)."""
        key = (principal.sub, category, principal.rate_multiplier)
        now = self._clock.now()
        with self._denials_lock:
            decision = self._denials.get(key)
            if decision is not None and not decision.reset_at - WINDOW_SECONDS <= now < decision.reset_at:
                del self._denials[key]  # that window is over
                decision = None
        if decision is None:
            return None
        return replace(decision, reset_after=max(1, decision.reset_at - int(now)))

    def _remember(self, principal: Principal, category: str, decision: Decision) -> None:
        now = self._clock.now()
        with self._denials_lock:
            if len(self._denials) >= MAX_REMEMBERED_DENIALS:
                for key in [k for k, d in self._denials.items() if d.reset_at <= now]:
                    del self._denials[key]
                while len(self._denials) >= MAX_REMEMBERED_DENIALS:  # all current: drop the oldest
                    del self._denials[next(iter(self._denials))]
            self._denials[(principal.sub, category, principal.rate_multiplier)] = decision

    def hit(self, principal: Principal, category: str, operation: str | None = None) -> Decision:
        """Count one request; the decision says whether it is allowed (it does not raise).

        A window this instance saw refused is answered from memory: the request is not counted.
        """
        policy = POLICIES[category]
        if policy.per_minute is None:
            raise ValueError(f"category {category!r} has no per-minute limit")
        remembered = self.denied(principal, category)
        if remembered is not None:
            return remembered
        now = self._clock.now()
        window_start = int(now // WINDOW_SECONDS) * WINDOW_SECONDS
        reset_at = window_start + WINDOW_SECONDS
        limit = policy.per_minute * principal.rate_multiplier * self._multiplier
        key = f"rl#{principal.sub}#{category}#{window_start}"
        count = self._store.increment_window(
            key,
            expires_at=reset_at + ENGAGEMENT_RETENTION_SECONDS,
            usage=UsageMark(principal.sub, category, window_start, operation),
        )
        decision = Decision(
            limit=limit,
            remaining=max(0, limit - count),
            reset_at=reset_at,
            reset_after=max(1, reset_at - int(now)),
            allowed=count <= limit + BURST,
        )
        if not decision.allowed:
            self._remember(principal, category, decision)
        return decision

    def acquire_slot(self, principal: Principal, category: str) -> None:
        """Take a concurrency slot or raise 429; pair every success with `release_slot`."""
        policy = POLICIES[category]
        if policy.concurrent is None:
            raise ValueError(f"category {category!r} has no concurrency limit")
        limit = policy.concurrent * principal.rate_multiplier * self._multiplier
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
