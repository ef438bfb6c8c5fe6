"""Rate limits against DynamoDB (moto): windows, burst, multipliers, concurrency slots, many threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from kubilitics.adapters.dynamodb import DynamoRateLimitStore
from kubilitics.auth.tokens import Principal
from kubilitics.errors import KubiliticsError
from kubilitics.services.ratelimit import BURST, RateLimiter


class FakeClock:
    def __init__(self, now: float):
        self.t = now

    def now(self) -> float:
        return self.t


def principal(sub: str = "alice", token_type: str = "user") -> Principal:
    return Principal(sub=sub, scopes=frozenset({"read"}), token_type=token_type, jti="j", expires_at=0)


@pytest.fixture()
def store(aws, atomic_moto):
    from kubilitics.container import get_container

    return DynamoRateLimitStore(get_container().settings.rate_limit_table)


def test_write_limit_is_50_plus_a_burst_of_20_then_429_with_headers(store):
    limiter = RateLimiter(store, FakeClock(1_800_000_015.0))  # 15 s into a window
    decisions = [limiter.hit(principal(), "write") for _ in range(71)]
    assert [d.allowed for d in decisions] == [True] * 70 + [False]
    assert decisions[0].headers() == {
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "49",
        "X-RateLimit-Reset": "1800000060",
        "X-RateLimit-Reset-After": "45",
    }
    assert decisions[49].remaining == 0 and decisions[69].allowed  # the burst is usable
    assert decisions[70].headers()["Retry-After"] == "45"


def test_a_new_window_starts_a_fresh_count(store):
    clock = FakeClock(1_800_000_000.0)
    limiter = RateLimiter(store, clock)
    for _ in range(50 + BURST):
        assert limiter.hit(principal(), "write").allowed
    assert not limiter.hit(principal(), "write").allowed
    clock.t += 60
    assert limiter.hit(principal(), "write").remaining == 49


def test_users_and_categories_are_counted_apart(store):
    limiter = RateLimiter(store, FakeClock(1_800_000_000.0))
    for _ in range(5):
        limiter.hit(principal("alice"), "read")
    assert limiter.hit(principal("bob"), "read").remaining == 199
    assert limiter.hit(principal("alice"), "write").remaining == 49
    assert limiter.hit(principal("alice"), "read").remaining == 194


@pytest.mark.parametrize(("token_type", "limit"), [("user", 200), ("service", 1000), ("admin", 2000)])
def test_service_and_admin_tokens_get_5x_and_10x(store, token_type, limit):
    limiter = RateLimiter(store, FakeClock(1_800_000_000.0))
    assert limiter.hit(principal(token_type=token_type), "read").limit == limit


def test_the_development_multiplier_scales_every_limit(store):
    limiter = RateLimiter(store, FakeClock(1_800_000_000.0), multiplier=100)  # make fuzz
    assert limiter.hit(principal(token_type="admin"), "config_write").limit == 10 * 10 * 100


def test_concurrent_counting_from_many_threads_is_exact(store):
    """Eight 'instances' hammer one counter: exactly limit+burst requests get through."""
    limiter = RateLimiter(store, FakeClock(1_800_000_000.0))
    with ThreadPoolExecutor(max_workers=8) as pool:
        decisions = list(pool.map(lambda _: limiter.hit(principal(), "write"), range(120)))
    assert sum(d.allowed for d in decisions) == 50 + BURST
    assert sorted(d.remaining for d in decisions)[-1] == 49  # each count was handed out once


def test_concurrency_slots_are_taken_atomically_and_given_back(store):
    limiter = RateLimiter(store, FakeClock(1_800_000_000.0))
    alice = principal()

    def try_acquire(_: int) -> bool:
        try:
            limiter.acquire_slot(alice, "investigations")
        except KubiliticsError as exc:
            assert exc.code == "rate_limit_exceeded" and exc.status == 429
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(try_acquire, range(12)))
    assert sum(results) == 5
    key = RateLimiter.slot_key("alice", "investigations")
    assert store.slot_count(key) == 5

    limiter.release_slot("alice", "investigations")
    assert try_acquire(0) is True
    for _ in range(10):  # releasing more than was taken never goes below zero
        limiter.release_slot("alice", "investigations")
    assert store.slot_count(key) == 0


def test_service_tokens_get_5x_concurrency(store):
    limiter = RateLimiter(store, FakeClock(1_800_000_000.0))
    for _ in range(25):
        limiter.acquire_slot(principal("ci", "service"), "investigations")
    with pytest.raises(KubiliticsError):
        limiter.acquire_slot(principal("ci", "service"), "investigations")


def test_slots_leaked_by_a_crashed_instance_come_back_after_the_lease(store):
    clock = FakeClock(1_800_000_000.0)
    limiter = RateLimiter(store, clock)
    for _ in range(10):
        limiter.acquire_slot(principal(), "shells")  # never released: the instance died
    with pytest.raises(KubiliticsError):
        limiter.acquire_slot(principal(), "shells")
    clock.t += 3601
    limiter.acquire_slot(principal(), "shells")
    assert store.slot_count(RateLimiter.slot_key("alice", "shells")) == 1


def test_a_window_is_indexed_for_analytics_once_by_its_first_request(store, monkeypatch, caplog):
    from kubilitics.adapters import dynamodb
    from kubilitics.services.ratelimit import UsageMark

    real = dynamodb.client("dynamodb")
    expressions: list[str] = []

    class Recording:
        def update_item(self, **request):
            expressions.append(request.get("UpdateExpression") or str(sorted(request["AttributeUpdates"])))
            if "gsi1pk" in expressions[-1] and fail_index:
                raise RuntimeError("throttled")
            return real.update_item(**request)

    monkeypatch.setattr(dynamodb, "client", lambda service: Recording())
    usage = UsageMark("erin", "read", 1_800_000_000, "GET /api/v1/events")
    fail_index = False
    assert [store.increment_window("rl#erin#read#1800000000", 1_800_003_600, usage) for _ in range(3)] == [
        1,
        2,
        3,
    ]
    assert sum("gsi1pk" in e for e in expressions) == 1 and len(expressions) == 4
    item = real.get_item(TableName=store._table, Key={"pk": {"S": "rl#erin#read#1800000000"}})["Item"]
    assert (item["sub"]["S"], item["category"]["S"], item["n"]["N"]) == ("erin", "read", "3")
    assert item["op#GET /api/v1/events"]["N"] == "3"
    assert item["gsi1sk"]["S"] == "001800000000#erin#read"

    # The index write failing loses analytics for that window, never the request's count.
    fail_index = True
    assert store.increment_window("rl#erin#read#1800000060", 1_800_003_660, usage) == 1
    assert "not indexed" in caplog.text


def test_a_shared_cap_counts_every_user_and_comes_back_on_release(store):
    limiter = RateLimiter(store, FakeClock(1_800_000_000.0))
    limiter.acquire_slot(principal("alice"), "investigations")
    limiter.acquire_shared_slot("investigations", 2)
    limiter.acquire_slot(principal("bob"), "investigations")
    limiter.acquire_shared_slot("investigations", 2)
    with pytest.raises(KubiliticsError) as refused:
        limiter.acquire_shared_slot("investigations", 2)
    assert refused.value.code == "rate_limit_exceeded"
    expected = {"category": "investigations", "concurrent_limit": 2, "scope": "all_users"}
    assert refused.value.details == expected
    # the users' own slots are apart from the shared one
    assert store.slot_count(RateLimiter.slot_key("alice", "investigations")) == 1
    assert store.slot_count(RateLimiter.shared_slot_key("investigations")) == 2
    limiter.release_shared_slot("investigations")
    limiter.acquire_shared_slot("investigations", 2)  # a raised cap would admit more at once, too
    limiter.acquire_shared_slot("investigations", 3)
    assert store.slot_count(RateLimiter.shared_slot_key("investigations")) == 3


class CountingStore:
    """The real store, with the counter updates that reached it counted."""

    def __init__(self, store: DynamoRateLimitStore):
        self._store = store
        self.increments = 0

    def increment_window(self, key: str, expires_at: int, usage: object = None) -> int:
        self.increments += 1
        return self._store.increment_window(key, expires_at, usage)


def test_a_refused_window_is_answered_from_memory_until_it_ends(store):
    """Review M3: after the first refusal, the rest of the window costs no counter update."""
    clock = FakeClock(1_800_000_015.0)
    counting = CountingStore(store)
    limiter = RateLimiter(counting, clock)  # type: ignore[arg-type]
    decisions = [limiter.hit(principal(), "write") for _ in range(75)]
    assert [d.allowed for d in decisions] == [True] * 70 + [False] * 5
    assert counting.increments == 71
    assert decisions[74].headers() == decisions[70].headers()  # the same 429 headers
    assert limiter.denied(principal(), "write") == decisions[70]
    clock.t += 10
    assert limiter.denied(principal(), "write").reset_after == 35  # Retry-After counts down
    # Other users, categories and token types (other limits) are not refused with it.
    assert limiter.denied(principal("bob"), "write") is None
    assert limiter.denied(principal(), "read") is None
    assert limiter.denied(principal(token_type="service"), "write") is None
    assert limiter.hit(principal(token_type="service"), "write").allowed
    clock.t += 35  # the next window
    assert limiter.denied(principal(), "write") is None
    assert limiter.hit(principal(), "write").remaining == 49


def test_remembered_refusals_are_bounded(store, monkeypatch):
    from kubilitics.services import ratelimit

    monkeypatch.setattr(ratelimit, "MAX_REMEMBERED_DENIALS", 3)
    monkeypatch.setattr(ratelimit, "POLICIES", {**ratelimit.POLICIES, "write": ratelimit.Policy(0)})
    monkeypatch.setattr(ratelimit, "BURST", 0)
    clock = FakeClock(1_800_000_000.0)
    limiter = RateLimiter(store, clock)
    for user in ("a", "b", "c", "d"):
        assert not limiter.hit(principal(user), "write").allowed
    assert len(limiter._denials) == 3
    assert limiter.denied(principal("a"), "write") is None  # the oldest went first
    clock.t += 60
    assert not limiter.hit(principal("e"), "write").allowed
    assert list(limiter._denials) == [("e", "write", 1)]  # expired windows are dropped first


def test_only_reads_with_one_or_two_backend_calls_overlap_their_count():
    """Review M3: a read that fans out (topology, a pod count per namespace, every page of events,
    metrics, a probe per context, AI usage) waits for the limiter's verdict before it starts. A new
    read route overlaps only if added here on purpose."""
    from kubilitics.api.main import ai_routers, cluster_routers

    overlapping, waiting = set(), set()
    for router in cluster_routers() + ai_routers():
        for route in router.routes:
            dependant = getattr(route, "dependant", None)
            stack = list(dependant.dependencies) if dependant else []
            while stack:
                dependency = stack.pop()
                category, overlaps = getattr(dependency.call, "rate_limit", (None, False))
                if category is not None:
                    (overlapping if overlaps else waiting).add(f"{sorted(route.methods)[0]} {route.path}")
                stack.extend(dependency.dependencies)
    assert overlapping == {
        "GET /api/v1/resources/{kind}",
        "GET /api/v1/version",
        "GET /api/v1/ai/config",
        "GET /api/v1/ai/insights",
        "GET /api/v1/ai/investigations",
        "GET /api/v1/ai/actions/pending",
    }
    assert {
        "GET /api/v1/topology",
        "GET /api/v1/namespaces",
        "GET /api/v1/events",
        "GET /api/v1/contexts",
    } <= waiting
