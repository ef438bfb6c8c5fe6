"""Token revocation by `jti`, seen by every instance within 30 s (spec-decisions 6).

A "not revoked" answer is cached per instance for `cache_seconds` (< 30) so warm instances do not pay a
DynamoDB read on every request; a "revoked" answer is cached until the token expires.
"""

from __future__ import annotations

import threading

from kubilitics.ports import Clock, RevocationStore


class RevocationList:
    def __init__(self, store: RevocationStore, clock: Clock, cache_seconds: float = 20.0):
        self._store = store
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._not_revoked_until: dict[str, float] = {}
        self._revoked: set[str] = set()
        self._lock = threading.Lock()

    def cached(self, jti: str) -> bool | None:
        """The cached answer (True: revoked), or None when the store must be asked."""
        with self._lock:
            if jti in self._revoked:
                return True
            if self._not_revoked_until.get(jti, 0.0) > self._clock.now():
                return False
        return None

    def is_revoked(self, jti: str) -> bool:
        cached = self.cached(jti)
        if cached is not None:
            return cached
        now = self._clock.now()
        revoked = self._store.is_revoked(jti)
        with self._lock:
            if revoked:
                self._revoked.add(jti)
                self._not_revoked_until.pop(jti, None)
            else:
                if len(self._not_revoked_until) > 10_000:  # bound memory on long-lived instances
                    self._not_revoked_until.clear()
                self._not_revoked_until[jti] = now + self._cache_seconds
        return revoked

    def revoke(self, jti: str, expires_at: int, revoked_by: str) -> None:
        self._store.revoke(jti, expires_at, revoked_by)
        with self._lock:
            self._revoked.add(jti)
            self._not_revoked_until.pop(jti, None)
