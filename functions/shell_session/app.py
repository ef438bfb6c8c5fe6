"""A shell or live-log session, invoked asynchronously (one invocation per session) by the WebSocket
function: holds the Kubernetes stream, reads the client's input from the session's queue in DynamoDB,
pushes output with post_to_connection, and ends before the Lambda's own timeout.
"""

from __future__ import annotations

from typing import Any

from kubilitics.lambda_handler import init_phase

with init_phase():
    from aws_lambda_powertools import Logger
    from kubilitics.container import get_container

    logger = Logger()

# Time kept back at the end of the invocation to say goodbye (exit / log_end) and clean up.
END_MARGIN_SECONDS = 15


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    services = get_container()
    logger.set_correlation_id(event.get("session_id"))
    max_seconds = max(1.0, context.get_remaining_time_in_millis() / 1000 - END_MARGIN_SECONDS)
    outcome = services.session_worker(services.connection_notifier).run(event, max_seconds=max_seconds)
    logger.info("session ended", extra=outcome)
    return outcome
