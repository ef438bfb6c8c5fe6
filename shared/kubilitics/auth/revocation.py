"""Token revocation, seen by every instance within 30 s (spec-decisions 6).

Two kinds of record: one token by its `jti`, and every token of a subject issued before a time (for
identity providers' tokens, which may carry no `jti`, and to cut off a user at once).

A "not revoked" answer is cached per instance for `cache_seconds` (< 30), per jti and per subject, so
warm instances do not pay a DynamoDB read on every request; a "revoked" answer is cached until the
token expires.
"""

from __future__ import annotations

import threading
from typing import Protocol

from kubilitics.ports import Clock, RevocationStore


class RevocableToken(Protocol):
    """What revocation looks at: an auth.tokens.Principal, a WebSocket Connection."""

    @property
    def jti(self) -> str: ...

    @property
    def sub(self) -> str: ...

    @property
    def issued_at(self) -> int: ...


class RevocationList:
    def __init__(self, store: RevocationStore, clock: Clock, cache_seconds: float = 20.0):
        self._store = store
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._not_revoked_until: dict[str, float] = {}
        self._revoked: set[str] = set()
        # sub -> (cutoff, trusted until): the subject's tokens issued before the cutoff are revoked.
        self._cutoffs: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def cached(self, token: RevocableToken) -> bool | None:
        """The cached answer (True: revoked), or None when the store must be asked."""
        now = self._clock.now()
        with self._lock:
            cutoff, cutoff_fresh_until = self._cutoffs.get(token.sub, (0, 0.0))
            # A cutoff only moves forward (DynamoRevocationStore.revoke_subject): even a stale one
            # still revokes what it revoked.
            if token.jti in self._revoked or token.issued_at < cutoff:
                return True
            if self._not_revoked_until.get(token.jti, 0.0) > now and cutoff_fresh_until > now:
                return False
        return None

    def is_revoked(self, token: RevocableToken) -> bool:
        """Revoked by its jti, or by a revocation of its subject's tokens issued before a time."""
        cached = self.cached(token)
        if cached is not None:
            return cached
        return self._jti_revoked(token.jti) or token.issued_at < self._subject_cutoff(token.sub)

    def _jti_revoked(self, jti: str) -> bool:
        now = self._clock.now()
        with self._lock:
            if jti in self._revoked:
                return True
            if self._not_revoked_until.get(jti, 0.0) > now:
                return False
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

    def _subject_cutoff(self, sub: str) -> int:
        now = self._clock.now()
        with self._lock:
            cutoff, fresh_until = self._cutoffs.get(sub, (0, 0.0))
            if fresh_until > now:
                return cutoff
        cutoff = self._store.subject_revoked_before(sub)
        with self._lock:
            if len(self._cutoffs) > 10_000:  # bound memory on long-lived instances
                self._cutoffs.clear()
            self._cutoffs[sub] = (cutoff, now + self._cache_seconds)
        return cutoff

    def revoke(self, jti: str, expires_at: int, revoked_by: str) -> None:
        self._store.revoke(jti, expires_at, revoked_by)
        with self._lock:
            self._revoked.add(jti)
            self._not_revoked_until.pop(jti, None)

    def revoke_subject(self, sub: str, before: int, revoked_by: str) -> None:
        """Revoke every token of `sub` issued before `before` (Unix seconds)."""
        self._store.revoke_subject(sub, before, revoked_by)
        with self._lock:
            # The store keeps the later of this cutoff and any earlier one: read it back next time.
            self._cutoffs.pop(sub, None)
