"""Running the insight scan: once over every configured context (the scanner Lambda's job), and on a
timer in the local server (once at start, then every `insight_scan_interval_seconds`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def scan_all(services: Any, namespaces: Iterable[str] | None = None) -> dict[str, Any]:
    """Scan each configured context; one context failing does not stop the others."""
    reports: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for context in services.insight_contexts():
        try:
            reports.append(services.insight_scanner.scan(context, namespaces))
        except Exception as exc:
            log.exception("insight scan of %s failed", getattr(context, "name", context))
            failed.append(
                {
                    "context": getattr(context, "name", str(context)),
                    "error": getattr(exc, "code", type(exc).__name__),
                    "message": getattr(exc, "message", str(exc)),
                }
            )
    return {"scans": reports, "failed": failed}


class InsightSchedule:
    """A daemon thread that scans at start and then every `interval` seconds (0: only at start)."""

    def __init__(self, services: Any, interval: float):
        self._services = services
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="insight-scan", daemon=True)

    def start(self) -> InsightSchedule:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                result = scan_all(self._services)
                log.info(
                    "insight scan: %s",
                    [
                        {k: r.get(k) for k in ("context", "detected", "created", "resolved")}
                        for r in result["scans"]
                    ],
                )
            except Exception:
                log.exception("insight scan failed")
            if not self._interval or self._stopped.wait(self._interval):
                return
