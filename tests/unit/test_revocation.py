"""Revocation is seen by every instance within 30 s, and the store is not read on every request."""

from __future__ import annotations

from kubilitics.auth.revocation import RevocationList


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.t = now

    def now(self) -> float:
        return self.t


class CountingStore:
    def __init__(self):
        self.revoked: dict[str, int] = {}
        self.reads = 0

    def is_revoked(self, jti: str) -> bool:
        self.reads += 1
        return jti in self.revoked

    def revoke(self, jti: str, expires_at: int, revoked_by: str) -> None:
        self.revoked[jti] = expires_at


def test_revocation_on_one_instance_reaches_another_within_30_seconds():
    store, clock = CountingStore(), FakeClock()
    instance_a = RevocationList(store, clock, cache_seconds=20)
    instance_b = RevocationList(store, clock, cache_seconds=20)
    assert instance_b.is_revoked("jti-1") is False  # B caches "not revoked"

    instance_a.revoke("jti-1", expires_at=5000, revoked_by="admin")
    assert instance_a.is_revoked("jti-1") is True  # the revoking instance knows at once

    clock.t += 19
    assert instance_b.is_revoked("jti-1") is False  # still inside B's cache window
    clock.t += 2
    assert instance_b.is_revoked("jti-1") is True  # 21 s after B's last read: seen


def test_warm_instance_reads_the_store_once_per_cache_window():
    store, clock = CountingStore(), FakeClock()
    revocations = RevocationList(store, clock, cache_seconds=20)
    for _ in range(50):
        revocations.is_revoked("jti-2")
        clock.t += 0.1
    assert store.reads == 1


def test_revoked_answer_is_kept_without_more_reads():
    store, clock = CountingStore(), FakeClock()
    store.revoked["jti-3"] = 9999
    revocations = RevocationList(store, clock, cache_seconds=20)
    assert [revocations.is_revoked("jti-3") for _ in range(5)] == [True] * 5
    assert store.reads == 1
