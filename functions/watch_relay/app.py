"""The watch relay: started every minute (and when a new watch set appears); one run holds the lease.

A run relays until shortly before its own timeout, then hands over: it stops reading, delivers what
it read, writes checkpoints and gives the lease to the run that is waiting for it (services/watch.py).
"""

from __future__ import annotations

import time
from typing import Any

from kubilitics.lambda_handler import init_phase

with init_phase():
    from aws_lambda_powertools import Logger
    from kubilitics.container import get_container
    from kubilitics.services.watch import RelayOptions

    logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    services = get_container()
    settings = services.settings
    options = RelayOptions(
        delivery_workers=32,  # post_to_connection is one HTTPS call per message: fan out in parallel
        idle_exit_seconds=60,  # nothing to watch: end, a subscription starts the next run
        takeover_window_seconds=settings.relay_takeover_window_seconds,
    )
    relay = services.watch_relay(context.aws_request_id, services.connection_notifier, options)
    deadline = time.time() + context.get_remaining_time_in_millis() / 1000 - settings.relay_handover_seconds
    report = relay.run(deadline)
    logger.info("relay run finished", extra=report)
    return report
