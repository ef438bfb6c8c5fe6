"""Revocation is seen by every instance within 30 s, and the store is not read on every request.

Both kinds: one token by its jti, and every token of a subject issued before a time.
"""

from __future__ import annotations

from kubilitics.auth.revocation import RevocationList
from kubilitics.auth.tokens import Principal


def token(jti: str, sub: str = "alice", issued_at: int = 900) -> Principal:
    return Principal(
        sub=sub, scopes=frozenset({"read"}), token_type="user", jti=jti, expires_at=5000, issued_at=issued_at
    )


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.t = now

    def now(self) -> float:
        return self.t


class CountingStore:
    def __init__(self):
        self.revoked: dict[str, int] = {}
        self.cutoffs: dict[str, int] = {}
        self.reads = 0
        self.subject_reads = 0

    def is_revoked(self, jti: str) -> bool:
        self.reads += 1
        return jti in self.revoked

    def revoke(self, jti: str, expires_at: int, revoked_by: str) -> None:
        self.revoked[jti] = expires_at

    def subject_revoked_before(self, sub: str) -> int:
        self.subject_reads += 1
        return self.cutoffs.get(sub, 0)

    def revoke_subject(self, sub: str, before: int, revoked_by: str) -> None:
        self.cutoffs[sub] = max(before, self.cutoffs.get(sub, 0))


def test_revocation_on_one_instance_reaches_another_within_30_seconds():
    store, clock = CountingStore(), FakeClock()
    instance_a = RevocationList(store, clock, cache_seconds=20)
    instance_b = RevocationList(store, clock, cache_seconds=20)
    assert instance_b.is_revoked(token("jti-1")) is False  # B caches "not revoked"

    instance_a.revoke("jti-1", expires_at=5000, revoked_by="admin")
    assert instance_a.is_revoked(token("jti-1")) is True  # the revoking instance knows at once

    clock.t += 19
    assert instance_b.is_revoked(token("jti-1")) is False  # still inside B's cache window
    clock.t += 2
    assert instance_b.is_revoked(token("jti-1")) is True  # 21 s after B's last read: seen


def test_warm_instance_reads_the_store_once_per_cache_window():
    store, clock = CountingStore(), FakeClock()
    revocations = RevocationList(store, clock, cache_seconds=20)
    for _ in range(50):
        revocations.is_revoked(token("jti-2"))
        clock.t += 0.1
    assert store.reads == 1


def test_revoked_answer_is_kept_without_more_reads():
    store, clock = CountingStore(), FakeClock()
    store.revoked["jti-3"] = 9999
    revocations = RevocationList(store, clock, cache_seconds=20)
    assert [revocations.is_revoked(token("jti-3")) for _ in range(5)] == [True] * 5
    assert store.reads == 1


def test_subject_revocation_on_one_instance_reaches_another_within_30_seconds():
    store, clock = CountingStore(), FakeClock()
    instance_a = RevocationList(store, clock, cache_seconds=20)
    instance_b = RevocationList(store, clock, cache_seconds=20)
    older, newer = token("j-old", issued_at=900), token("j-new", issued_at=1000)
    assert instance_b.is_revoked(older) is False  # B caches "alice: nothing revoked"

    instance_a.revoke_subject("alice", before=950, revoked_by="admin")
    assert instance_a.is_revoked(older) is True  # the revoking instance knows at once
    assert instance_a.is_revoked(newer) is False  # issued after the cutoff

    clock.t += 19
    assert instance_b.is_revoked(older) is False  # still inside B's cache window
    clock.t += 2
    assert instance_b.is_revoked(older) is True  # 21 s after B's last read: seen
    assert instance_b.is_revoked(newer) is False
    assert instance_b.is_revoked(token("j-bob", sub="bob", issued_at=900)) is False


def test_a_subject_is_read_once_per_cache_window_whatever_the_token():
    store, clock = CountingStore(), FakeClock()
    revocations = RevocationList(store, clock, cache_seconds=20)
    for n in range(50):
        revocations.is_revoked(token(f"jti-{n % 5}"))  # five tokens of alice
        clock.t += 0.1
    assert (store.reads, store.subject_reads) == (5, 1)
    assert revocations.cached(token("jti-0")) is False  # answered without the store


def test_a_revoked_subject_stays_revoked_without_more_reads():
    store, clock = CountingStore(), FakeClock()
    store.cutoffs["alice"] = 950
    revocations = RevocationList(store, clock, cache_seconds=20)
    assert revocations.is_revoked(token("j-old", issued_at=900)) is True
    clock.t += 100  # long after the cache window: a cutoff never moves back
    assert [revocations.is_revoked(token("j-old", issued_at=900)) for _ in range(3)] == [True] * 3
    assert store.subject_reads == 1


def test_a_revoked_jti_needs_no_subject_read():
    store, clock = CountingStore(), FakeClock()
    store.revoked["jti-4"] = 5000
    revocations = RevocationList(store, clock, cache_seconds=20)
    assert revocations.is_revoked(token("jti-4")) is True
    assert (store.reads, store.subject_reads) == (1, 0)
