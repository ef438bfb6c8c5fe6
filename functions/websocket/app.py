"""WebSocket API: every route of the stage ($connect, $disconnect, $default, subscribe, unsubscribe,
shell, logs, chat) lands here. The route key only picks this integration; the message itself says what
it is, so the reference's formats work on any route (e.g. {"action": "init"} and {"type": "input"}
arrive on $default).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent, event_source
from kubilitics.auth.access import bearer_token
from kubilitics.container import get_container
from kubilitics.errors import KubiliticsError, error_body

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
        realtime.disconnect(request.connection_id)
        return {"statusCode": 200}
    connection = realtime.connection(request.connection_id)
    realtime.handle(request.connection_id, connection, event.decoded_body, trace_id=request.request_id)
    return {"statusCode": 200}
