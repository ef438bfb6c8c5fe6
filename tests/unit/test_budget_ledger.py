"""The budget ledger against DynamoDB (moto): reserve, settle, exhaustion, concurrency, rollover."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from kubilitics.ai.budget import (
    BudgetLedger,
    BudgetPolicy,
    ModelPrice,
    UsageContext,
    days_remaining,
    month_bounds,
    projected_spend_micro_usd,
)
from kubilitics.errors import TokenBudgetExhausted

SONNET = "claude-sonnet-4-5"  # $3 / $15 per million tokens: 3 and 15 micro-dollars per token
PRICES = {SONNET: ModelPrice(Decimal(3), Decimal(15))}
CTX = UsageContext("investigation", "alice", "shop", "inv-1")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float):
        self.t = now

    def now(self) -> float:
        return self.t


@pytest.fixture()
def clock() -> Clock:
    return Clock(at("2026-02-10T12:00:00"))


@pytest.fixture()
def make_ledger(aws, clock):
    from kubilitics.adapters.dynamodb import DynamoBudgetStore

    def _make(usd: str = "100", tokens: int = 10_000_000, thresholds=(50, 75, 90, 100)) -> BudgetLedger:
        policy = BudgetPolicy(Decimal(usd), tokens, tuple(thresholds), PRICES)
        return BudgetLedger(DynamoBudgetStore("kubilitics-state"), lambda: policy, clock)

    return _make


def test_reserve_holds_the_worst_case_and_settle_keeps_only_what_was_used(make_ledger):
    ledger = make_ledger()
    reservation = ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)
    assert reservation.cost_micro_usd == 3 * 1000 + 15 * 500 == 10_500
    held = ledger.totals("2026-02")
    assert (held.committed_micro_usd, held.committed_tokens) == (10_500, 1500)
    assert (held.used_micro_usd, held.used_tokens) == (0, 0)

    record = ledger.settle(reservation, input_tokens=400, output_tokens=100, success=True, latency_ms=850)
    assert record.cost_micro_usd == 3 * 400 + 15 * 100 == 2700
    totals = ledger.totals("2026-02")
    assert (totals.committed_micro_usd, totals.committed_tokens) == (2700, 500)
    assert (totals.used_micro_usd, totals.used_tokens, totals.calls) == (2700, 500, 1)
    assert totals.last_success_at == at("2026-02-10T12:00:00")
    with pytest.raises(ValueError):
        ledger.settle(reservation, input_tokens=1, output_tokens=1, success=True, latency_ms=1)


def test_a_reservation_that_does_not_fit_is_refused_with_429(make_ledger):
    ledger = make_ledger(usd="0.02")  # 20,000 micro-dollars
    first = ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)
    with pytest.raises(TokenBudgetExhausted) as refused:
        ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)
    assert refused.value.status == 429 and refused.value.code == "token_budget_exhausted"
    assert refused.value.details["monthly_limit_usd"] == 0.02
    assert refused.value.details["reserved_usd"] == 0.0105
    assert refused.value.details["requested_usd"] == 0.0105
    assert refused.value.details["reset_time"] == "2026-03-01T00:00:00Z"
    assert int(refused.value.headers["Retry-After"]) == int(
        at("2026-03-01T00:00:00") - at("2026-02-10T12:00:00")
    )

    ledger.settle(first, input_tokens=400, output_tokens=100, success=True, latency_ms=10)
    ledger.reserve(
        model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX
    )  # 2700 + 10500 fits
    assert ledger.totals().committed_micro_usd == 13_200


def test_the_token_limit_binds_too(make_ledger):
    ledger = make_ledger(tokens=2000)
    ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)
    with pytest.raises(TokenBudgetExhausted) as refused:
        ledger.reserve(model=SONNET, max_input_tokens=100, max_output_tokens=500, context=CTX)
    assert refused.value.details["requested_tokens"] == 600
    with pytest.raises(TokenBudgetExhausted):  # larger than the whole month: never fits
        make_ledger(tokens=100).reserve(model=SONNET, max_input_tokens=100, max_output_tokens=1, context=CTX)


def test_concurrent_reservations_never_commit_more_than_the_limit(make_ledger, atomic_moto):
    ledger = make_ledger(usd="0.10")  # exactly ten reservations of 10,000 micro-dollars fit
    start = threading.Barrier(40)

    def attempt(_: int) -> object | None:
        start.wait()
        try:
            return ledger.reserve(model=SONNET, max_input_tokens=2000, max_output_tokens=266, context=CTX)
        except TokenBudgetExhausted:
            return None

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(attempt, range(40)))
    granted = [r for r in results if r is not None]
    assert granted[0].cost_micro_usd == 3 * 2000 + 15 * 266 == 9990
    assert len(granted) == 10
    assert ledger.totals().committed_micro_usd == 99_900 <= 100_000


def test_many_threads_calling_until_the_budget_is_gone_never_overspend(make_ledger, atomic_moto):
    ledger = make_ledger(usd="0.25")
    spent: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        while True:
            try:
                reservation = ledger.reserve(
                    model=SONNET, max_input_tokens=1500, max_output_tokens=400, context=CTX
                )
            except TokenBudgetExhausted:
                return
            used_in, used_out = rng.randint(200, 1500), rng.randint(10, 400)
            record = ledger.settle(
                reservation, input_tokens=used_in, output_tokens=used_out, success=True, latency_ms=5
            )
            with lock:
                spent.append(record.cost_micro_usd)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(worker, range(16)))
    totals = ledger.totals()
    assert sum(spent) == totals.used_micro_usd == totals.committed_micro_usd
    assert totals.used_micro_usd <= 250_000
    assert totals.calls == len(spent) > 10
    # What is left is less than one worst-case call: the budget was used up, not refused early.
    assert 250_000 - totals.used_micro_usd < 3 * 1500 + 15 * 400


def test_a_new_month_starts_from_zero_and_a_late_settlement_counts_where_it_was_reserved(make_ledger, clock):
    ledger = make_ledger(usd="0.02")
    clock.t = at("2026-01-31T23:59:58")
    january = ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)
    with pytest.raises(TokenBudgetExhausted):
        ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)

    clock.t = at("2026-02-01T00:00:03")
    ledger.settle(january, input_tokens=1000, output_tokens=500, success=True, latency_ms=5000)
    february = ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)
    assert february.month == "2026-02"
    assert ledger.totals("2026-01").used_micro_usd == 10_500
    assert ledger.totals("2026-02").committed_micro_usd == 10_500
    assert ledger.totals("2026-02").used_micro_usd == 0
    # The usage record is filed when the call finished (February) and found across the boundary.
    records = ledger.records(at("2026-01-31T00:00:00"), at("2026-02-01T01:00:00"))
    assert [(r.id, r.cost_micro_usd) for r in records] == [(january.id, 10_500)]


def test_a_reservation_left_by_a_dead_caller_is_released_after_the_lease(make_ledger, clock):
    ledger = make_ledger(usd="0.02")
    abandoned = ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)
    clock.t += 600
    with pytest.raises(TokenBudgetExhausted):  # still within the lease: its caller may be alive
        ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)
    clock.t += 301
    fresh = ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)
    assert ledger.totals().committed_micro_usd == 10_500
    # The late caller settles after all: its real usage is added, nothing is given back twice.
    ledger.settle(abandoned, input_tokens=100, output_tokens=100, success=True, latency_ms=1)
    ledger.settle(fresh, input_tokens=100, output_tokens=100, success=True, latency_ms=1)
    totals = ledger.totals()
    assert totals.used_micro_usd == totals.committed_micro_usd == 2 * (300 + 1500)


def test_failed_calls_release_everything_and_are_recorded(make_ledger):
    ledger = make_ledger()
    reservation = ledger.reserve(model=SONNET, max_input_tokens=1000, max_output_tokens=500, context=CTX)
    record = ledger.settle(reservation, input_tokens=0, output_tokens=0, success=False, latency_ms=30_000)
    totals = ledger.totals()
    assert (totals.committed_micro_usd, totals.used_micro_usd, totals.calls, totals.failed_calls) == (
        0,
        0,
        1,
        1,
    )
    assert totals.last_success_at is None
    stored = ledger.records(record.timestamp - 1, record.timestamp + 1)
    assert stored == [record]
    assert stored[0].success is False and stored[0].namespace == "shop" and stored[0].reference == "inv-1"


def test_thresholds_raise_one_alert_each(make_ledger, clock, caplog):
    ledger = make_ledger(usd="0.01", thresholds=(50, 75, 90))  # 10,000 micro-dollars
    for used_out in (400, 100):  # 6,000 then 1,500 more: 60% then 75%
        reservation = ledger.reserve(
            model=SONNET, max_input_tokens=0, max_output_tokens=used_out, context=CTX
        )
        ledger.settle(reservation, input_tokens=0, output_tokens=used_out, success=True, latency_ms=1)
        clock.t += 60
    totals = ledger.totals()
    assert totals.percent_used(ledger.policy()) == 75.0
    alerts = ledger.alerts(totals)
    assert [(a["threshold_percent"], a["status"], a["current_percent"]) for a in alerts] == [
        (50, "triggered", 75.0),
        (75, "triggered", 75.0),
        (90, "ok", 75.0),
    ]
    assert alerts[0]["triggered_at"] == "2026-02-10T12:00:00Z"
    assert alerts[1]["triggered_at"] == "2026-02-10T12:01:00Z"
    assert alerts[2]["triggered_at"] is None
    assert sum("AI budget alert" in message for message in caplog.messages) == 2


def test_an_unpriced_model_is_reserved_at_the_highest_known_price(make_ledger):
    ledger = make_ledger()
    reservation = ledger.reserve(
        model="claude-next-9", max_input_tokens=10, max_output_tokens=10, context=CTX
    )
    assert reservation.cost_micro_usd == 3 * 10 + 15 * 10
    dated = ledger.reserve(model=f"{SONNET}-20250929", max_input_tokens=10, max_output_tokens=10, context=CTX)
    assert dated.cost_micro_usd == 180


def test_projection_and_calendar():
    month = "2026-02"
    assert month_bounds(month) == (at("2026-02-01T00:00:00"), at("2026-03-01T00:00:00"))
    # 10 of 28 days gone, $10 used: $28 by month end.
    assert projected_spend_micro_usd(10_000_000, month, at("2026-02-11T00:00:00")) == 28_000_000
    # In the first hours one day of history is assumed, not one hour.
    assert projected_spend_micro_usd(1_000_000, month, at("2026-02-01T01:00:00")) == 28_000_000
    assert days_remaining(month, at("2026-02-10T12:00:00")) == 18
    assert days_remaining("2026-12", at("2026-12-31T23:00:00")) == 0
    assert month_bounds("2026-12")[1] == at("2027-01-01T00:00:00")


def test_usage_context_names_a_known_operation():
    with pytest.raises(ValueError):
        UsageContext("summarise", "alice")
