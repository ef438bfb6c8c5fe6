"""The AI budget ledger: every LLM call reserves its worst-case cost first, then settles what it used.

Money is counted in integer micro-dollars (no float drift). A month's ledger is one DynamoDB item
holding `committed` (settled usage plus open reservations), `used` (settled usage only), the open
reservations themselves and the alert marks. A reservation is one conditional write on that item
("committed + this call <= the limit", for USD and for tokens), so concurrent callers can never
commit more than the limit between them. Settling gives back the difference between the worst case
and what the call really used, and writes one usage record for `GET /api/v1/ai/usage`.

A reservation whose holder died (a Lambda timed out mid-call) is released after
`RESERVATION_LEASE_SECONDS`, the next time a reservation does not fit.

Prices and limits come from the AI configuration (`budget` section, defaults from settings).
"""

from __future__ import annotations

import calendar
import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kubilitics.clock import rfc3339
from kubilitics.errors import TokenBudgetExhausted
from kubilitics.ports import BudgetStore, Clock

log = logging.getLogger(__name__)

OPERATIONS = ("investigation", "insight_generation", "chat")
DEFAULT_ALERT_THRESHOLDS = (50, 75, 90, 100)
# Longer than any Lambda can run (15 min): a reservation older than this has no live holder.
RESERVATION_LEASE_SECONDS = 900
USAGE_RETENTION_SECONDS = 400 * 86400
MICRO = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: Decimal
    output: Decimal

    def cost_micro_usd(self, input_tokens: int, output_tokens: int) -> int:
        # USD per million tokens times tokens is micro-dollars; round up, never under-count.
        return math.ceil(self.input * input_tokens + self.output * output_tokens)


# List prices, USD per million tokens (platform.claude.com, models overview). The `budget.model_prices`
# section of the AI configuration (or KUBILITICS_AI_MODEL_PRICES) adds models or overrides these.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-fable-5-1": ModelPrice(Decimal(10), Decimal(50)),
    "claude-opus-5-5": ModelPrice(Decimal(4), Decimal(20)),
    "claude-opus-5": ModelPrice(Decimal(5), Decimal(25)),
    "claude-sonnet-5-5": ModelPrice(Decimal(2), Decimal(10)),
    "claude-sonnet-5": ModelPrice(Decimal(2), Decimal(10)),
    "claude-opus-4-6": ModelPrice(Decimal(5), Decimal(25)),
    "claude-sonnet-4-6": ModelPrice(Decimal(3), Decimal(15)),
    "claude-opus-4-5": ModelPrice(Decimal(5), Decimal(25)),
    "claude-sonnet-4-5": ModelPrice(Decimal(3), Decimal(15)),
    "claude-haiku-4-5": ModelPrice(Decimal(1), Decimal(5)),
    "claude-opus-4-1": ModelPrice(Decimal(15), Decimal(75)),
    "claude-opus-4-0": ModelPrice(Decimal(15), Decimal(75)),
    "claude-sonnet-4-0": ModelPrice(Decimal(3), Decimal(15)),
}
# A dated snapshot (`claude-sonnet-4-5-20250929`) costs what its alias costs.
_SNAPSHOT_SUFFIX = re.compile(r"^-\d{8}$")


@dataclass(frozen=True)
class BudgetPolicy:
    monthly_limit_usd: Decimal
    monthly_limit_tokens: int
    alert_thresholds_percent: tuple[int, ...] = DEFAULT_ALERT_THRESHOLDS
    prices: Mapping[str, ModelPrice] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    @property
    def limit_micro_usd(self) -> int:
        return int(self.monthly_limit_usd * MICRO)

    def price(self, model: str) -> ModelPrice:
        """The model's price, else the most expensive known one: an unpriced model must not slip
        past the USD limit."""
        found = price_for(model, self.prices)
        if found is not None:
            return found
        log.warning("no price configured for model %r; reserving at the highest known price", model)
        return max(
            self.prices.values(),
            key=lambda p: (p.output, p.input),
            default=ModelPrice(Decimal(75), Decimal(75)),
        )


def price_for(model: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    if model in prices:
        return prices[model]
    for name, price in prices.items():
        if model.startswith(name) and _SNAPSHOT_SUFFIX.match(model[len(name) :]):
            return price
    return None


@dataclass(frozen=True)
class UsageContext:
    """Who and what an LLM call is for (recorded with its usage)."""

    operation: str
    user: str
    namespace: str | None = None
    reference: str | None = None  # e.g. the investigation id
    # The kubeconfig context the call was about: a token bound to a cluster sees only its usage.
    cluster: str | None = None

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}")


@dataclass
class Reservation:
    id: str
    month: str
    model: str
    tokens: int
    cost_micro_usd: int
    created_at: float
    context: UsageContext
    settled: bool = False


@dataclass(frozen=True)
class UsageRecord:
    id: str
    timestamp: float
    operation: str
    user: str
    namespace: str | None
    model: str
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int
    latency_ms: int
    success: bool
    reference: str | None = None
    cluster: str | None = None  # None: recorded before usage carried its cluster

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.cost_micro_usd) / MICRO

    def to_item(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "timestamp": self.timestamp,
            "operation": self.operation,
            "user": self.user,
            "namespace": self.namespace,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_micro_usd": self.cost_micro_usd,
            "latency_ms": self.latency_ms,
            "success": self.success,
            "reference": self.reference,
            "cluster": self.cluster,
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> UsageRecord:
        return cls(
            id=str(item["id"]),
            timestamp=float(item["timestamp"]),
            operation=str(item["operation"]),
            user=str(item["user"]),
            namespace=item.get("namespace"),
            model=str(item["model"]),
            input_tokens=int(item["input_tokens"]),
            output_tokens=int(item["output_tokens"]),
            cost_micro_usd=int(item["cost_micro_usd"]),
            latency_ms=int(item["latency_ms"]),
            success=bool(item["success"]),
            reference=item.get("reference"),
            cluster=item.get("cluster"),
        )


@dataclass(frozen=True)
class MonthTotals:
    month: str
    used_micro_usd: int = 0
    used_tokens: int = 0
    committed_micro_usd: int = 0
    committed_tokens: int = 0
    calls: int = 0
    failed_calls: int = 0
    last_success_at: float | None = None
    alerts: Mapping[int, float] = field(default_factory=dict)  # threshold -> when it was crossed

    @property
    def used_usd(self) -> Decimal:
        return Decimal(self.used_micro_usd) / MICRO

    @property
    def reserved_micro_usd(self) -> int:
        return max(0, self.committed_micro_usd - self.used_micro_usd)

    def percent_used(self, policy: BudgetPolicy) -> float:
        """The binding limit: the larger of the USD and the token share (100 when a limit is 0)."""
        shares = [
            _share(self.used_micro_usd, policy.limit_micro_usd),
            _share(self.used_tokens, policy.monthly_limit_tokens),
        ]
        return round(max(shares), 2)

    @classmethod
    def from_item(cls, month: str, item: Mapping[str, Any]) -> MonthTotals:
        alerts = {
            int(key.removeprefix("alert_")): float(value)
            for key, value in item.items()
            if key.startswith("alert_")
        }
        last = item.get("last_success_at")
        return cls(
            month=month,
            used_micro_usd=int(item.get("used_cost", 0)),
            used_tokens=int(item.get("used_tokens", 0)),
            committed_micro_usd=int(item.get("committed_cost", 0)),
            committed_tokens=int(item.get("committed_tokens", 0)),
            calls=int(item.get("calls", 0)),
            failed_calls=int(item.get("failed_calls", 0)),
            last_success_at=float(last) if last is not None else None,
            alerts=alerts,
        )


def _share(used: int, limit: int) -> float:
    if limit <= 0:
        return 100.0 if used > 0 or limit == 0 else 0.0
    return used * 100 / limit


def billing_month(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m")


def month_bounds(month: str) -> tuple[float, float]:
    """[start, end) of a billing month, as epoch seconds (UTC)."""
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp()


def months_between(start: float, end: float) -> list[str]:
    months = []
    cursor = start
    while True:
        month = billing_month(cursor)
        months.append(month)
        _, month_end = month_bounds(month)
        if month_end > end:
            return months
        cursor = month_end


def projected_spend_micro_usd(used_micro_usd: int, month: str, now: float) -> int:
    """Linear projection to month end; at least a day of history is assumed (no wild first hour)."""
    start, end = month_bounds(month)
    elapsed = max(now - start, 86400.0)
    return math.ceil(used_micro_usd * (end - start) / min(elapsed, end - start))


def days_remaining(month: str, now: float) -> int:
    year, number = (int(part) for part in month.split("-"))
    last_day = calendar.monthrange(year, number)[1]
    return max(0, last_day - datetime.fromtimestamp(now, UTC).day)


class BudgetLedger:
    def __init__(
        self,
        store: BudgetStore,
        policy: Callable[[], BudgetPolicy],
        clock: Clock,
        lease_seconds: float = RESERVATION_LEASE_SECONDS,
    ):
        self._store = store
        self._policy = policy
        self._clock = clock
        self._lease_seconds = lease_seconds

    def policy(self) -> BudgetPolicy:
        return self._policy()

    def meter(
        self,
        *,
        operation: str,
        user: str,
        namespace: str | None = None,
        reference: str | None = None,
        cluster: str | None = None,
    ) -> BudgetMeter:
        """A reserve/settle pair bound to one caller; what providers take (`ports.BudgetMeter`)."""
        return BudgetMeter(self, UsageContext(operation, user, namespace, reference, cluster))

    def reserve(
        self, *, model: str, max_input_tokens: int, max_output_tokens: int, context: UsageContext
    ) -> Reservation:
        """Hold the worst-case cost of one call, or raise `TokenBudgetExhausted` (429)."""
        policy = self._policy()
        now = self._clock.now()
        month = billing_month(now)
        tokens = max_input_tokens + max_output_tokens
        cost = policy.price(model).cost_micro_usd(max_input_tokens, max_output_tokens)
        reservation = Reservation(uuid.uuid4().hex[:16], month, model, tokens, cost, now, context)
        for attempt in range(2):
            if self._try_reserve(reservation, policy):
                return reservation
            # A reservation left by a dead caller may be all that is in the way: free it, try again.
            if attempt == 0 and not self.release_stale(month):
                break
        raise self._exhausted(reservation, policy)

    def settle(
        self,
        reservation: Reservation,
        *,
        input_tokens: int,
        output_tokens: int,
        success: bool,
        latency_ms: int,
    ) -> UsageRecord:
        """Replace the reservation by the real usage and record the call (once per reservation)."""
        if reservation.settled:
            raise ValueError(f"reservation {reservation.id} is already settled")
        reservation.settled = True
        policy = self._policy()
        now = self._clock.now()
        cost = policy.price(reservation.model).cost_micro_usd(input_tokens, output_tokens)
        if cost > reservation.cost_micro_usd or input_tokens + output_tokens > reservation.tokens:
            log.warning("LLM call %s used more than its reservation", reservation.id)
        totals = self._store.settle(
            reservation.month,
            reservation.id,
            reserved_cost=reservation.cost_micro_usd,
            reserved_tokens=reservation.tokens,
            cost=cost,
            tokens=input_tokens + output_tokens,
            success=success,
            at=now,
            expires_at=int(month_bounds(reservation.month)[1] + USAGE_RETENTION_SECONDS),
        )
        ctx = reservation.context
        record = UsageRecord(
            id=reservation.id,
            timestamp=now,
            operation=ctx.operation,
            user=ctx.user,
            namespace=ctx.namespace,
            model=reservation.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_micro_usd=cost,
            latency_ms=latency_ms,
            success=success,
            reference=ctx.reference,
            cluster=ctx.cluster,
        )
        self._store.put_usage(billing_month(now), record.to_item(), int(now + USAGE_RETENTION_SECONDS))
        self._raise_alerts(MonthTotals.from_item(reservation.month, totals), policy, now)
        return record

    def totals(self, month: str | None = None) -> MonthTotals:
        month = month or billing_month(self._clock.now())
        return MonthTotals.from_item(month, self._store.totals(month))

    def records(self, since: float, until: float) -> list[UsageRecord]:
        items: list[UsageRecord] = []
        for month in months_between(since, until):
            items.extend(UsageRecord.from_item(item) for item in self._store.usage(month, since, until))
        return items

    def release_stale(self, month: str) -> int:
        """Give back reservations older than the lease (their caller is gone); returns how many."""
        cutoff = self._clock.now() - self._lease_seconds
        released = 0
        for held in self._store.reservations(month):
            if held["created_at"] < cutoff and self._store.release(
                month, held["id"], cost=held["cost"], tokens=held["tokens"]
            ):
                log.warning("released stale AI budget reservation %s", held["id"])
                released += 1
        return released

    def alerts(self, totals: MonthTotals, policy: BudgetPolicy | None = None) -> list[dict[str, Any]]:
        policy = policy or self._policy()
        current = totals.percent_used(policy)
        return [
            {
                "type": "budget_threshold",
                "threshold_percent": threshold,
                "current_percent": current,
                "status": "triggered" if current >= threshold else "ok",
                "triggered_at": rfc3339(totals.alerts[threshold]) if threshold in totals.alerts else None,
            }
            for threshold in sorted(policy.alert_thresholds_percent)
        ]

    # -- internals ----------------------------------------------------------------------------

    def _try_reserve(self, reservation: Reservation, policy: BudgetPolicy) -> bool:
        max_cost = policy.limit_micro_usd - reservation.cost_micro_usd
        max_tokens = policy.monthly_limit_tokens - reservation.tokens
        if max_cost < 0 or max_tokens < 0:
            return False  # larger than the whole monthly limit: can never fit
        return self._store.reserve(
            reservation.month,
            reservation.id,
            cost=reservation.cost_micro_usd,
            tokens=reservation.tokens,
            max_committed_cost=max_cost,
            max_committed_tokens=max_tokens,
            created_at=reservation.created_at,
            expires_at=int(month_bounds(reservation.month)[1] + USAGE_RETENTION_SECONDS),
        )

    def _exhausted(self, reservation: Reservation, policy: BudgetPolicy) -> TokenBudgetExhausted:
        totals = self.totals(reservation.month)
        _, month_end = month_bounds(reservation.month)
        return TokenBudgetExhausted(
            "The monthly AI budget cannot cover this request",
            details={
                "monthly_limit_usd": float(policy.monthly_limit_usd),
                "monthly_limit_tokens": policy.monthly_limit_tokens,
                "used_usd": float(totals.used_usd),
                "used_tokens": totals.used_tokens,
                "reserved_usd": float(Decimal(totals.reserved_micro_usd) / MICRO),
                "requested_usd": float(Decimal(reservation.cost_micro_usd) / MICRO),
                "requested_tokens": reservation.tokens,
                "reset_time": rfc3339(month_end),
            },
            headers={"Retry-After": str(max(1, int(month_end - self._clock.now())))},
        )

    def _raise_alerts(self, totals: MonthTotals, policy: BudgetPolicy, now: float) -> None:
        current = totals.percent_used(policy)
        for threshold in sorted(policy.alert_thresholds_percent):
            crossed = current >= threshold and threshold not in totals.alerts
            # mark_alert is conditional: of concurrent settlements, one reports the crossing.
            if crossed and self._store.mark_alert(totals.month, threshold, now):
                log.warning(
                    "AI budget alert: %.1f%% of the %s budget used (threshold %d%%)",
                    current,
                    totals.month,
                    threshold,
                )


class BudgetMeter:
    """The ledger bound to one caller's context: `reserve` before a call, `settle` after it."""

    def __init__(self, ledger: BudgetLedger, context: UsageContext):
        self._ledger = ledger
        self.context = context

    def reserve(self, *, model: str, max_input_tokens: int, max_output_tokens: int) -> Reservation:
        return self._ledger.reserve(
            model=model,
            max_input_tokens=max_input_tokens,
            max_output_tokens=max_output_tokens,
            context=self.context,
        )

    def settle(
        self,
        reservation: Reservation,
        *,
        input_tokens: int,
        output_tokens: int,
        success: bool,
        latency_ms: int,
    ) -> UsageRecord:
        return self._ledger.settle(
            reservation,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            success=success,
            latency_ms=latency_ms,
        )
