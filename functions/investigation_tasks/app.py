"""The investigation state machine's tasks: one plain handler, the event's `task` picks the step.

Event: {"task": "gather"|"analyze"|"reason"|"propose_actions"|"complete"|"mark_failed",
"investigation_id", "state"}; the answer is the whole updated state. A failing step raises a domain
error whose class name (KubernetesApiError, LlmApiError, TokenBudgetExhausted) is what the state
machine's Retry and Catch match.
"""

from __future__ import annotations

from typing import Any

from kubilitics.lambda_handler import init_phase

with init_phase():
    from aws_lambda_powertools import Logger
    from kubilitics.container import get_container

    logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    logger.append_keys(investigation_id=event.get("investigation_id"), task=event.get("task"))
    return get_container().investigation_tasks.handle(event)
