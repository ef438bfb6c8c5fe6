"""WebSocket API: every route of the stage ($connect, $disconnect, $default, subscribe, unsubscribe,
shell, logs, chat) lands here. The route key only picks this integration; the message itself says what
it is, so the reference's formats work on any route (e.g. {"action": "init"} and {"type": "input"}
arrive on $default).
"""

from __future__ import annotations

import json
from typing import Any

from kubilitics.lambda_handler import init_phase

with init_phase():
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
    from kubilitics.auth.access import bearer_token
    from kubilitics.container import get_container
    from kubilitics.errors import KubiliticsError, error_body
    from kubilitics.services.chat import is_chat_message

    logger = Logger()


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=APIGatewayWebSocketEvent)
def handler(event: APIGatewayWebSocketEvent, context: Any) -> dict[str, Any]:
    request = event.request_context
    realtime = get_container().realtime
    logger.set_correlation_id(request.request_id)
    if request.route_key == "$connect":
        query = event.query_string_parameters
        token = query.get("token") or bearer_token(event.headers.get("authorization"))
        try:
            realtime.connect(
                request.connection_id,
                token,
                event.headers.get("x-kubeconfig-context") or query.get("context"),
            )
        except KubiliticsError as exc:
            # Any status other than 2xx makes API Gateway refuse the upgrade: no socket is made.
            body = error_body(exc.code, exc.message, exc.details, request.request_id)
            return {"statusCode": exc.status, "headers": exc.headers, "body": json.dumps(body)}
        return {"statusCode": 200}
    if request.route_key == "$disconnect":
        get_container().chat.end_connection(request.connection_id)  # gives the chat slot back
        realtime.disconnect(request.connection_id)
        return {"statusCode": 200}
    connection = realtime.connection(request.connection_id)
    if is_chat_message(request.route_key, event.decoded_body):
        services = get_container()
        services.chat.on_connection_message(
            connection, event.decoded_body, request.request_id, services.connection_notifier
        )
        return {"statusCode": 200}
    realtime.handle(request.connection_id, connection, event.decoded_body, trace_id=request.request_id)
    return {"statusCode": 200}
