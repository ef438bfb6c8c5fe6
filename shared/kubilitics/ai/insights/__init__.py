"""Insight rules, one module per category: security, performance, cost_optimization, health.

Each rule module reads a `Snapshot` (no I/O) and returns `Detection`s; the scanner
(services/insights.py) reads the cluster, runs them, and stores the results.
"""

from kubilitics.ai.insights import cost, health, performance, security
from kubilitics.ai.insights.base import (
    CATEGORIES,
    SEVERITIES,
    Detection,
    ScanPolicy,
    Snapshot,
    UnitPrices,
    WorkloadRef,
    insight_id,
)

__all__ = [
    "CATEGORIES",
    "SEVERITIES",
    "Detection",
    "ScanPolicy",
    "Snapshot",
    "UnitPrices",
    "WorkloadRef",
    "cost",
    "health",
    "insight_id",
    "performance",
    "security",
]
