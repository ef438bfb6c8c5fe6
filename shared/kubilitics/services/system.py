"""Health and version (reference section 2, spec-decisions 7 and 8)."""

from __future__ import annotations

import json
import platform
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from kubilitics import __version__
from kubilitics.clock import rfc3339
from kubilitics.errors import KubiliticsError
from kubilitics.ports import ClusterInfoSource

RETRY_AFTER_SECONDS = 30
SCHEMA_VERSION = 1  # of the DynamoDB items; there are no migrations
# The dependencies whose failure makes the service degraded; the AI layer falls back to rules.
CRITICAL = ("database", "kubernetes_api")


def build_name() -> str:
    return f"{platform.system().lower()}-{platform.machine().lower()}"


# scripts/sam/build.sh writes the commit and date into the built shared layer; read on first
# /version (not at import: cold starts do not pay for it).
BUILD_INFO_FILE = Path(__file__).resolve().parents[1] / "_build_info.json"


def build_info(configured: Mapping[str, str], path: Path = BUILD_INFO_FILE) -> dict[str, str]:
    """`commit` and `date`: the configured ones (KUBILITICS_BUILD_COMMIT / _DATE, template parameters
    BuildCommit / BuildDate) unless unset or "unknown", else the built artifact's file."""
    try:
        written = json.loads(path.read_text())
    except (OSError, ValueError):
        written = {}
    if not isinstance(written, dict):
        written = {}
    info: dict[str, str] = {}
    for key in ("commit", "date"):
        value = configured.get(key) or "unknown"
        if value == "unknown" and isinstance(written.get(key), str) and written[key]:
            value = written[key]
        info[key] = value
    return info


class SystemService:
    def __init__(
        self,
        *,
        cluster: ClusterInfoSource,
        database_probe: Callable[[], Any],
        ai_status: Callable[[], str],
        started_at: float,
        clock: Callable[[], float],
        region: str,
        timeout: float,
        deployment: dict[str, str],
        build: dict[str, str],
        cache_seconds: float = 15.0,
    ):
        self._cluster = cluster
        self._database_probe = database_probe
        self._ai_status = ai_status
        self._started_at = started_at
        self._clock = clock
        self._region = region
        self._timeout = timeout
        self._deployment = deployment
        self._build = build
        # /health needs no token: its checks (DynamoDB, the API server twice, the Messages API) run at
        # most once per `cache_seconds` per instance, whoever calls and however often.
        self._cache_seconds = cache_seconds
        self._checked: tuple[float, bool, dict[str, Any]] | None = None
        self._checking = threading.Lock()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, body): the dependencies' state as last checked, at most `cache_seconds` old."""
        with self._checking:  # one check at a time; callers meanwhile wait for its answer
            checked = self._checked
            if checked is None or self._clock() - checked[0] >= self._cache_seconds:
                healthy, body = self._check()
                checked = self._checked = (self._clock(), healthy, body)
        _, healthy, body = checked
        now = self._clock()
        fresh = {**body, "timestamp": rfc3339(now)}
        if "uptime_seconds" in fresh:
            fresh["uptime_seconds"] = int(now - self._started_at)
        return healthy, fresh

    def _check(self) -> tuple[bool, dict[str, Any]]:
        """Checks every dependency in parallel; returns (healthy, body)."""
        checks: dict[str, Callable[[], Any]] = {
            "database": self._database_probe,
            "kubernetes_api": lambda: self._cluster.version(None, self._timeout),
            "nodes": lambda: self._cluster.node_count(None, self._timeout),
            "ai_service": self._ai_status,
        }
        results: dict[str, Any] = {}
        with ThreadPoolExecutor(max_workers=len(checks)) as pool:
            futures = {name: pool.submit(check) for name, check in checks.items()}
            for name, future in futures.items():
                try:
                    results[name] = future.result(timeout=self._timeout + 1)
                except (Exception, FutureTimeout) as exc:
                    results[name] = exc
        dependencies = {
            "kubernetes_api": "unhealthy" if isinstance(results["kubernetes_api"], Exception) else "healthy",
            "database": "unhealthy" if isinstance(results["database"], Exception) else "healthy",
            "ai_service": "unhealthy"
            if isinstance(results["ai_service"], Exception)
            else results["ai_service"],
            "redis_cache": "not_configured",
        }
        healthy = all(dependencies[name] == "healthy" for name in CRITICAL)
        body: dict[str, Any] = {
            "status": "healthy" if healthy else "degraded",
            "timestamp": rfc3339(self._clock()),
            "version": __version__,
        }
        if healthy:
            version = results["kubernetes_api"]
            nodes = results["nodes"]
            body.update(
                build=build_name(),
                uptime_seconds=int(self._clock() - self._started_at),
                dependencies=dependencies,
                region=self._region,
                cluster_info={
                    "name": self._cluster.cluster_name(None),
                    "nodes": None if isinstance(nodes, Exception) else nodes,
                    "version": str(version.get("gitVersion", "")).lstrip("v"),
                },
            )
        else:
            body.update(
                dependencies=dependencies,
                error="Critical dependencies unavailable",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        return healthy, body

    def version(self, context: str | None) -> dict[str, Any]:
        try:
            kube = self._cluster.version(context, self._timeout)
        except KubiliticsError as exc:
            raise KubiliticsError(
                "Failed to retrieve Kubernetes version",
                code="version_query_failed",
                details={"component": "kubernetes", "reason": exc.details.get("reason", exc.code)},
            ) from exc
        build = build_info(self._build)
        python = ".".join(map(str, sys.version_info[:3]))
        # The reference's shape. Its Go, React and Helm fields have no counterpart in a Python API
        # deployed with SAM: they are null (objects kept, so a client reading them does not fail),
        # with `python_version` and `deployment` beside them (README, API notes).
        return {
            "backend": {
                "version": __version__,
                "build_commit": build["commit"],
                "build_date": build["date"],
                "golang_version": None,
                "python_version": python,
                "architecture": platform.machine().lower().replace("x86_64", "amd64"),
            },
            "frontend": {
                "version": None,
                "react_version": None,
                "build_hash": None,
                "status": "not_deployed",
            },
            "ai_service": {  # the AI routes are functions of this same build
                "version": __version__,
                "build_commit": build["commit"],
                "go_version": None,
                "python_version": python,
                "status": self._ai_status(),
            },
            "kubernetes": {
                "api_version": str(kube.get("gitVersion", "")).lstrip("v"),
                "cluster_name": self._cluster.cluster_name(context),
            },
            "database": {
                "type": "dynamodb",
                "migration_version": SCHEMA_VERSION,
                "schema_version": SCHEMA_VERSION,
            },
            "helm_chart": {"name": None, "version": None, "repository": None, "status": "not_applicable"},
            "deployment": self._deployment,
        }
