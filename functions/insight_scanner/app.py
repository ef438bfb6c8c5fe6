"""Insight scanner: run by an EventBridge schedule (rate(15 minutes)); scans and stores insights.

The scheduled event's `detail` may name `namespaces` to scan only those (a rule's input can set it).
"""

from __future__ import annotations

from typing import Any

from kubilitics.lambda_handler import init_phase

with init_phase():
    from aws_lambda_powertools import Logger
    from kubilitics.container import get_container
    from kubilitics.services.insight_schedule import scan_all

    logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    namespaces = (event.get("detail") or {}).get("namespaces")
    return scan_all(get_container(), namespaces=namespaces)
