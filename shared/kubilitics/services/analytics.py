"""GET /api/v1/ai/analytics/summary (reference section 13), computed from stored records only.

- investigations and proposed actions: from the investigations store (`InvestigationHistory`); until
  that store exists they are reported as zero;
- insights: the insight records, counted by when they were first detected;
- token usage and LLM calls: the budget ledger's usage records (one per LLM call);
- user engagement: the rate-limit counters: the write that counts a request also counts its
  operation, and a window's first request records who and which category (adapters/dynamodb.py).

A token bound to a cluster (`cluster_id` claim) sees the figures of that cluster only: the
investigations, actions, insights and usage records of its kubeconfig context. Usage recorded before
records carried their cluster cannot be attributed and counts for no bound token; user engagement
counts a subject's requests to this API whatever cluster they were about (the rate-limit window is
per subject), so a bound token gets it empty.
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from kubilitics.ai.budget import OPERATIONS
from kubilitics.ai.insights import CATEGORIES
from kubilitics.clock import rfc3339
from kubilitics.ports import Clock, EngagementStore, InsightStore, InvestigationHistory

TIME_PERIODS = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "90d": 90 * 86400}
INVESTIGATION_STATUSES = ("completed", "failed", "in_progress")
INVESTIGATION_SEVERITIES = ("critical", "high", "medium", "low")
TOP = 5


class AnalyticsService:
    def __init__(
        self,
        *,
        ledger: Any,  # ai.budget.BudgetLedger
        insights: InsightStore,
        engagement: EngagementStore,
        investigations: InvestigationHistory | None,
        clock: Clock,
    ):
        self._ledger = ledger
        self._insights = insights
        self._engagement = engagement
        self._investigations = investigations
        self._clock = clock

    def summary(self, time_period: str = "7d", cluster_id: str | None = None) -> dict[str, Any]:
        end = self._clock.now()
        start = end - TIME_PERIODS[time_period]
        return {
            "period": {
                "start_time": rfc3339(start),
                "end_time": rfc3339(end),
                "duration_days": int(TIME_PERIODS[time_period] // 86400),  # an integer, as in the reference
                "time_period": time_period,
            },
            "investigations": self._investigation_stats(start, end, cluster_id),
            "actions_proposed": self._action_stats(start, end, cluster_id),
            "insights_generated": self._insight_stats(start, end, cluster_id),
            **self._llm_stats(start, end, cluster_id),
            "user_engagement": self._engagement_stats(start, end, cluster_id),
        }

    def _investigation_stats(self, start: float, end: float, cluster_id: str | None) -> dict[str, Any]:
        records = _of_cluster(
            self._investigations.investigations(start, end) if self._investigations else [], cluster_id
        )
        by_status = Counter(str(r.get("status")) for r in records)
        durations = [
            float(r["completed_at"]) - float(r["created_at"])
            for r in records
            if r.get("completed_at") is not None and r.get("created_at") is not None
        ]
        completed, failed = by_status.get("completed", 0), by_status.get("failed", 0)
        return {
            "total_initiated": len(records),
            "total_completed": completed,
            "average_duration_seconds": round(statistics.fmean(durations)) if durations else 0,
            "by_status": {
                **{s: by_status.get(s, 0) for s in INVESTIGATION_STATUSES},
                **{s: n for s, n in by_status.items() if s not in INVESTIGATION_STATUSES},
            },
            "success_rate_percent": _percent(completed, completed + failed),
            "by_severity": {
                s: sum(1 for r in records if r.get("severity") == s) for s in INVESTIGATION_SEVERITIES
            },
        }

    def _action_stats(self, start: float, end: float, cluster_id: str | None) -> dict[str, Any]:
        records = _of_cluster(
            self._investigations.actions(start, end) if self._investigations else [], cluster_id
        )
        by_status = Counter(str(r.get("status")) for r in records)
        approved, rejected = (
            by_status.get("approved", 0) + by_status.get("executed", 0),
            by_status.get("rejected", 0),
        )
        expired = by_status.get("expired", 0)
        return {
            "total": len(records),
            "approved": approved,
            "rejected": rejected,
            "expired": expired,
            "pending": by_status.get("pending", 0),
            "approval_rate_percent": _percent(approved, approved + rejected + expired),
        }

    def _insight_stats(self, start: float, end: float, cluster_id: str | None) -> dict[str, Any]:
        records = [
            r
            for r in _of_cluster(self._insights.list(cluster_id), cluster_id)
            if start <= float(r.get("first_detected") or 0) <= end
        ]
        dismissed = sum(1 for r in records if r.get("dismissed_at") is not None)
        return {
            "total": len(records),
            "by_category": {c: sum(1 for r in records if r.get("category") == c) for c in CATEGORIES},
            "dismissed_percent": _percent(dismissed, len(records)),
            "resolved": sum(1 for r in records if r.get("status") == "resolved"),
        }

    def _llm_stats(self, start: float, end: float, cluster_id: str | None) -> dict[str, Any]:
        records = [
            r for r in self._ledger.records(start, end) if cluster_id is None or r.cluster == cluster_id
        ]
        tokens = sum(r.tokens for r in records)
        succeeded = [r for r in records if r.success]
        return {
            "token_usage": {
                "total_tokens": tokens,
                "average_per_request": round(tokens / len(records)) if records else 0,
                "by_operation": {
                    op: sum(r.tokens for r in records if r.operation == op) for op in OPERATIONS
                },
            },
            "llm_api_calls": {
                "total": len(records),
                "success_rate_percent": _percent(len(succeeded), len(records)),
                "average_latency_ms": round(statistics.fmean(r.latency_ms for r in succeeded))
                if succeeded
                else 0,
            },
        }

    def _engagement_stats(self, start: float, end: float, cluster_id: str | None) -> dict[str, Any]:
        # Engagement windows are per subject, not per cluster: none can be shown to a bound token.
        windows = (
            []
            if cluster_id is not None
            else [
                w
                for w in self._engagement.windows(start, end)
                if start - 60 < float(w.get("window_start", 0)) <= end
            ]
        )
        users = {w.get("sub") for w in windows if w.get("sub")}
        hours: Counter[int] = Counter()
        operations: Counter[str] = Counter()
        total = 0
        for w in windows:
            n = int(w.get("n") or 0)
            total += n
            hours[datetime.fromtimestamp(float(w["window_start"]), UTC).hour] += n
            for key, value in w.items():
                if key.startswith("op#"):
                    operations[key[3:]] += int(value)
        busiest = sorted(hours.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
        return {
            "unique_users": len(users),
            "total_requests": total,
            "most_active_hours": [f"{h:02d}:00-{(h + 1) % 24:02d}:00" for h, _ in busiest],
            "top_operations": [
                op for op, _ in sorted(operations.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
            ],
            "requests_by_operation": dict(sorted(operations.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]),
        }


def _of_cluster(records: list[dict[str, Any]], cluster_id: str | None) -> list[dict[str, Any]]:
    """The records of one kubeconfig context (their `context` field); None: all of them."""
    return records if cluster_id is None else [r for r in records if r.get("context") == cluster_id]


def _percent(part: int, whole: int) -> float:
    return round(part * 100 / whole, 1) if whole else 0.0
