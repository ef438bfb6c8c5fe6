"""Answers reused for a stated time: the health checks (no token needed to ask) and the AI key
(needed by every chat turn and investigation step)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from kubilitics.adapters.ai_secret import CachedKey
from kubilitics.errors import KubiliticsError
from kubilitics.services.system import SystemService


@dataclass
class Clock:
    t: float = 1_000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Cluster:
    calls: list[str] = field(default_factory=list)

    def version(self, context: Any, timeout: float) -> dict[str, str]:
        self.calls.append("version")
        return {"gitVersion": "v1.34.4"}

    def node_count(self, context: Any, timeout: float) -> int:
        self.calls.append("nodes")
        return 3

    def cluster_name(self, context: Any) -> str:
        return "test"


def test_health_checks_once_per_window_and_says_when_it_answers():
    clock, cluster, probes = Clock(), Cluster(), []
    system = SystemService(
        cluster=cluster,  # type: ignore[arg-type]
        database_probe=lambda: probes.append("database"),
        ai_status=lambda: probes.append("ai") or "not_configured",
        started_at=900.0,
        clock=clock,
        region="us-east-1",
        timeout=1.0,
        deployment={},
        build={},
        cache_seconds=15,
    )
    for _ in range(20):
        healthy, body = system.health()
    assert healthy and sorted(cluster.calls + probes) == ["ai", "database", "nodes", "version"]
    clock.t += 14.9
    healthy, body = system.health()
    assert len(cluster.calls) == 2  # still the first round
    assert body["timestamp"] == "1970-01-01T00:16:54Z" and body["uptime_seconds"] == 114  # as of now
    clock.t += 0.2
    system.health()
    assert len(cluster.calls) == 4 and probes == ["database", "ai", "database", "ai"]


@dataclass
class Store:
    value: str | None = "sk-ant-first"
    reads: int = 0
    failing: bool = False

    def get(self) -> str | None:
        self.reads += 1
        if self.failing:
            raise KubiliticsError("unavailable", code="service_unavailable")
        return self.value

    def put(self, value: str) -> None:
        self.value = value


def test_the_ai_key_is_read_once_per_window_and_a_stored_key_applies_at_once():
    clock, store = Clock(), Store()
    key = CachedKey(store, clock, max_age=60)  # type: ignore[arg-type]
    assert [key.get() for _ in range(10)] == ["sk-ant-first"] * 10 and store.reads == 1
    key.put("sk-ant-second")  # PUT /api/v1/ai/config on this instance
    assert key.get() == "sk-ant-second" and store.reads == 1
    store.value = "sk-ant-third"  # stored through another instance
    clock.t += 59
    assert key.get() == "sk-ant-second"
    clock.t += 1
    assert key.get() == "sk-ant-third" and store.reads == 2


def test_an_unreadable_key_is_not_remembered():
    clock, store = Clock(), Store(failing=True)
    key = CachedKey(store, clock, max_age=60)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(KubiliticsError):
            key.get()
    assert store.reads == 2
    store.failing = False
    assert key.get() == "sk-ant-first"
