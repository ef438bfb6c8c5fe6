"""AI administration: the configuration (GET/PUT), the service status, and usage and budget.

Reference sections 9 and 15. The configuration is the defaults deep-merged with what admins stored
(StateTable); the provider key lives in Secrets Manager and only its masked prefix is ever shown.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kubilitics.ai.budget import (
    MICRO,
    OPERATIONS,
    BudgetLedger,
    UsageRecord,
    billing_month,
    days_remaining,
    month_bounds,
    price_for,
    projected_spend_micro_usd,
)
from kubilitics.ai.configuration import (
    READ_ONLY_FIELDS,
    AiConfig,
    changed_fields,
    deep_merge,
    field_error,
    mask_key,
    validate,
)
from kubilitics.clock import rfc3339
from kubilitics.errors import KubiliticsError, ValidationFailed
from kubilitics.ports import AiConfigStore, Clock, SecretValueStore

log = logging.getLogger(__name__)

OFFLINE_PROVIDER = "offline (rules)"
STATUS_RETRY_AFTER_SECONDS = 60
TIME_PERIODS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
GROUP_BY = ("operation", "user", "namespace")
_SAVE_ATTEMPTS = 3


class AiConfigService:
    def __init__(
        self,
        store: AiConfigStore,
        defaults: Callable[[], dict[str, Any]],
        clock: Clock,
        key_store: SecretValueStore | None,
        key_from_environment: bool = False,
    ):
        self._store = store
        self._defaults = defaults
        self._clock = clock
        self._key_store = key_store
        self._key_from_environment = key_from_environment

    def effective(self) -> AiConfig:
        """The configuration in force now (read on every call: a PUT applies to the next request)."""
        overrides, _ = self._store.load()
        try:
            return validate(deep_merge(self._defaults(), overrides))
        except ValidationFailed as exc:
            # Stored overrides that no longer validate (an older release wrote them) must not take
            # the AI layer down: serve the defaults and say so.
            log.error("stored AI configuration is invalid (%s); using the defaults", exc.message)
            return validate(self._defaults())

    def view(self, api_key: str | None) -> dict[str, Any]:
        """GET /api/v1/ai/config: the effective configuration with the key's masked prefix."""
        document = self.effective().model_dump(mode="json")
        llm = document["llm_configuration"]
        document["llm_configuration"] = {
            "provider": llm.pop("provider"),
            "model": llm.pop("model"),
            "api_key_prefix": mask_key(api_key),
            **llm,
        }
        return document

    def update(self, body: Any, current_key: Callable[[], str | None], updated_by: str) -> dict[str, Any]:
        """PUT /api/v1/ai/config: a partial update; answers the fields whose value changed."""
        if not isinstance(body, dict):
            raise field_error("body", "The request body must be a JSON object", "model_type")
        patch = {key: value for key, value in body.items()}
        new_key, key_given = None, False
        llm = patch.get("llm_configuration")
        if isinstance(llm, dict):
            llm = dict(llm)
            for name in READ_ONLY_FIELDS:
                llm.pop(name, None)
            if "api_key" in llm:
                new_key, key_given = self._checked_key(llm.pop("api_key")), True
            patch["llm_configuration"] = llm
        now = self._clock.now()
        # Validate everything before anything is written, so a refused update changes nothing.
        overrides, _ = self._store.load()
        warnings = self._price_warnings(validate(deep_merge(self._defaults(), deep_merge(overrides, patch))))
        key_changed = key_given and (new_key or None) != current_key()
        if key_changed:
            assert self._key_store is not None  # _checked_key refused the key otherwise
            self._key_store.put(new_key or "")
        for _ in range(_SAVE_ATTEMPTS):
            overrides, version = self._store.load()
            before = validate(deep_merge(self._defaults(), overrides)).model_dump(mode="json")
            merged_overrides = deep_merge(overrides, patch)
            after_config = validate(deep_merge(self._defaults(), merged_overrides))
            warnings = self._price_warnings(after_config)
            fields = changed_fields(before, after_config.model_dump(mode="json"))
            if not fields or self._store.save(merged_overrides, version, updated_by, now):
                break
        else:
            raise KubiliticsError(
                "The AI configuration changed while this update was applied; retry",
                code="resource_conflict",
            )
        if key_changed:
            fields.append("llm_configuration.api_key")
        if fields:
            log.info("AI configuration updated by %s: %s", updated_by, ", ".join(fields))
        answer: dict[str, Any] = {
            "message": "Configuration updated successfully" if fields else "Configuration unchanged",
            "updated_fields": fields,
            "effective_timestamp": rfc3339(now),
            "restart_required": False,
        }
        if warnings:
            answer["warnings"] = warnings
        return answer

    def _checked_key(self, value: Any) -> str | None:
        field = "llm_configuration.api_key"
        if value is not None and not isinstance(value, str):
            raise field_error(
                field, f"Invalid value for {field}: Input should be a valid string", "string_type"
            )
        key = (value or "").strip()
        if key and (len(key) < 8 or len(key) > 512 or any(ch.isspace() for ch in key)):
            raise field_error(field, f"Invalid value for {field}: not an API key", "value_error")
        if self._key_from_environment:
            raise field_error(
                field,
                f"Cannot set {field}: this deployment takes the key from KUBILITICS_ANTHROPIC_API_KEY",
                "read_only",
            )
        if self._key_store is None:
            raise field_error(
                field,
                f"Cannot set {field}: no secret is configured to hold it (KUBILITICS_AI_SECRET_ARN)",
                "not_configured",
            )
        return key or None

    @staticmethod
    def _price_warnings(config: AiConfig) -> list[dict[str, str]]:
        """A model without a price is accepted (the reference's own example names one): the budget
        ledger then reserves and charges its calls at the highest configured price."""
        model = config.llm_configuration.model
        if price_for(model, config.budget_policy().prices) is not None:
            return []
        return [
            {
                "field": "llm_configuration.model",
                "reason": "unpriced_model",
                "message": f"No price is configured for {model!r}: its calls are reserved and charged at "
                "the highest configured price until budget.model_prices has it (calls go to the "
                f"{config.llm_configuration.provider} API, which must serve the model)",
            }
        ]


class AiAdminService:
    """GET /api/v1/ai/status and GET /api/v1/ai/usage."""

    def __init__(
        self,
        *,
        config: AiConfigService,
        ledger: BudgetLedger,
        api_key: Callable[[], str | None],
        probe: Any,  # adapters.ai_probe.AnthropicProbe: check() -> (status, reason), endpoint
        clock: Clock,
        started_at: float,
        queue: Callable[[str | None], Mapping[str, int]] | None = None,
    ):
        self._config = config
        self._ledger = ledger
        self._api_key = api_key
        self._probe = probe
        self._clock = clock
        self._started_at = started_at
        # Investigation counts (pending, in_progress) of one cluster context (None: of all).
        self._queue = queue

    def status(self, cluster_id: str | None = None) -> dict[str, Any]:
        """`cluster_id`: the caller's token is bound to that cluster; usage figures are then its own
        (the budget's limit and what remains of it are the deployment's: every cluster draws on it)."""
        now = self._clock.now()
        config = self._config.effective()
        policy = config.budget_policy()
        key = self._api_key()
        connectivity, reason = self._probe.check() if key else ("not_configured", None)
        totals = self._ledger.totals(billing_month(now))
        used_tokens, last_success_at = totals.used_tokens, totals.last_success_at
        if cluster_id is not None:
            mine = _of_cluster(self._ledger.records(month_bounds(totals.month)[0], now), cluster_id)
            used_tokens = sum(r.tokens for r in mine)
            last_success_at = max((r.timestamp for r in mine if r.success), default=None)
        if key and connectivity != "healthy":
            raise KubiliticsError(
                "The Anthropic API is unreachable; investigations fall back to the rule-based analyzers",
                code="ai_service_unavailable",
                details={"reason": reason},
                headers={"Retry-After": str(STATUS_RETRY_AFTER_SECONDS)},
                extra={
                    "status": "degraded",
                    "llm_provider": {
                        "name": config.llm_configuration.provider,
                        "connectivity": "unhealthy",
                        "last_successful_request": rfc3339(last_success_at) if last_success_at else None,
                        "error_details": reason,
                    },
                    "retry_after_seconds": STATUS_RETRY_AFTER_SECONDS,
                },
            )
        day_start = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        every_recent = self._ledger.records(now - 86400, now)
        recent = _of_cluster(every_recent, cluster_id)
        remaining = max(0, policy.monthly_limit_tokens - totals.committed_tokens)
        # The budget is monthly: today may use what it left at 00:00 UTC (what remains now plus what
        # every cluster used since), so `daily_quota` is that, a string as in the reference.
        used_today_all = sum(r.tokens for r in every_recent if r.timestamp >= day_start.timestamp())
        latencies = [r.latency_ms for r in recent if r.success]
        queue = dict(self._queue(cluster_id)) if self._queue else {}
        _, month_end = month_bounds(totals.month)
        return {
            "status": "operational",
            "mode": "llm" if key else "rules_only",
            "uptime_seconds": int(now - self._started_at),
            "llm_provider": {
                "name": config.llm_configuration.provider if key else OFFLINE_PROVIDER,
                "model": config.llm_configuration.model if key else None,
                "endpoint": self._probe.endpoint if key else None,
                "connectivity": connectivity,
                "last_check": rfc3339(now),
            },
            "token_usage": {
                "total_tokens_used": used_tokens,
                "tokens_remaining_budget": remaining,
                "monthly_limit_tokens": policy.monthly_limit_tokens,
                "daily_quota": str(min(policy.monthly_limit_tokens, remaining + used_today_all)),
                "daily_used": str(sum(r.tokens for r in recent if r.timestamp >= day_start.timestamp())),
                "reset_time": rfc3339(month_end),
            },
            "request_queue": {
                "pending": int(queue.get("pending", 0)),
                "in_progress": int(queue.get("in_progress", 0)),
                "average_latency_ms": round(statistics.fmean(latencies)) if latencies else 0,
            },
            "vector_store": {"type": "none", "status": "not_configured"},
        }

    def usage(
        self, time_period: str, group_by: str | None, include_users: bool, cluster_id: str | None = None
    ) -> dict[str, Any]:
        """`cluster_id`: the caller's token is bound to that cluster; totals and groups then count only
        its usage records (`budget` and `alerts` stay the deployment's: every cluster draws on it)."""
        now = self._clock.now()
        policy = self._config.effective().budget_policy()
        month = billing_month(now)
        totals = self._ledger.totals(month)
        start, end = month_bounds(month)
        records = _of_cluster(self._ledger.records(now - TIME_PERIODS[time_period], now), cluster_id)
        limit_usd = policy.monthly_limit_usd
        body: dict[str, Any] = {
            "time_period": time_period,
            "billing_period": {
                "start_date": datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d"),
                "end_date": datetime.fromtimestamp(end - 1, UTC).strftime("%Y-%m-%d"),
                "days_remaining": days_remaining(month, now),
            },
            "budget": {
                "monthly_limit_usd": _number(limit_usd),
                "monthly_limit_tokens": policy.monthly_limit_tokens,
                "used_usd": _usd(totals.used_micro_usd),
                "used_tokens": totals.used_tokens,
                "reserved_usd": _usd(totals.reserved_micro_usd),
                "percent_used": totals.percent_used(policy),
                "projected_spend_usd": _usd(projected_spend_micro_usd(totals.used_micro_usd, month, now)),
            },
            "totals": _bucket(records),
            "usage_by_operation": {
                op: _bucket([r for r in records if r.operation == op]) for op in OPERATIONS
            },
        }
        if include_users:
            body["usage_by_user"] = _grouped(records, lambda r: r.user)
        if group_by == "namespace":
            body["usage_by_namespace"] = _grouped(records, lambda r: r.namespace or "(cluster)")
        body["alerts"] = self._ledger.alerts(totals, policy)
        return body


def _of_cluster(records: list[UsageRecord], cluster_id: str | None) -> list[UsageRecord]:
    """The records of one cluster (None: all). A record stored before usage carried its cluster
    (`cluster` None) cannot be attributed, so no cluster-bound caller sees it."""
    return records if cluster_id is None else [r for r in records if r.cluster == cluster_id]


def _grouped(records: list[UsageRecord], key: Callable[[UsageRecord], str]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[UsageRecord]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return {name: _bucket(items) for name, items in sorted(groups.items())}


def _bucket(records: list[UsageRecord]) -> dict[str, Any]:
    return {
        "tokens": sum(r.tokens for r in records),
        "cost_usd": _usd(sum(r.cost_micro_usd for r in records)),
        "count": len(records),
    }


def _usd(micro: int) -> float:
    return float((Decimal(micro) / MICRO).quantize(Decimal("0.000001")))


def _number(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() else float(value)
