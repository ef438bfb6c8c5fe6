"""WebSocket /api/v1/ws and /api/v1/shell (reference section 8), served natively by the local server.

On AWS the same protocol is API Gateway's WebSocket API (functions/websocket). Both paths accept every
message (watch subscriptions, live logs, shell); /api/v1/shell is the reference's name for shells.
Authentication happens before the upgrade (`token` query parameter or `Authorization: Bearer`): a
refused connection gets the HTTP status and the standard error body, and no socket. Keep-alive pings
(every 30 s; a client that does not answer is dropped) are uvicorn's (see local/server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from fastapi import APIRouter, WebSocket

from kubilitics.api.blocking import run_blocking
from kubilitics.api.responses import JSONResponse
from kubilitics.auth.access import bearer_token
from kubilitics.errors import KubiliticsError, error_body

router = APIRouter(tags=["real time"])


@router.websocket("/api/v1/ws")
async def updates(websocket: WebSocket) -> None:
    """Watch subscriptions and live logs (shell messages are accepted too)."""
    await _serve(websocket)


@router.websocket("/api/v1/shell")
async def shell(websocket: WebSocket) -> None:
    """Interactive shell sessions (watch and log messages are accepted too)."""
    await _serve(websocket)


async def _serve(websocket: WebSocket) -> None:
    from kubilitics.local.realtime import get_local_realtime

    realtime = await run_blocking(get_local_realtime)
    trace_id = websocket.scope.get("state", {}).get("request_id") or f"req-{uuid.uuid4().hex}"
    token = websocket.query_params.get("token") or bearer_token(websocket.headers.get("authorization"))
    requested = websocket.headers.get("x-kubeconfig-context") or websocket.query_params.get("context")
    connection_id = f"local-{uuid.uuid4().hex}"
    try:
        connection = await run_blocking(realtime.service.connect, connection_id, token, requested)
    except KubiliticsError as exc:
        await _refuse(websocket, exc, trace_id)
        return
    outbox = realtime.hub.register(connection_id)
    await websocket.accept()
    sender = asyncio.create_task(_send(websocket, outbox))
    try:
        while True:
            receiving = asyncio.ensure_future(websocket.receive())
            done, _ = await asyncio.wait({receiving, sender}, return_when=asyncio.FIRST_COMPLETED)
            if receiving not in done:  # the server closed it (revoked token, client too slow)
                receiving.cancel()
                break
            message = receiving.result()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text") if message.get("text") is not None else message.get("bytes")
            # One message at a time per connection: shell input keeps its order.
            await run_blocking(
                realtime.service.handle, connection_id, connection, raw, f"req-{uuid.uuid4().hex}"
            )
    finally:
        realtime.hub.unregister(connection_id)
        sender.cancel()
        await run_blocking(realtime.service.disconnect, connection_id)


async def _send(websocket: WebSocket, outbox: asyncio.Queue[str | None]) -> None:
    with contextlib.suppress(Exception):  # the client went away: the receive side ends too
        while True:
            message = await outbox.get()
            if message is None:
                await websocket.close(code=1008)
                return
            await websocket.send_text(message)


async def _refuse(websocket: WebSocket, exc: KubiliticsError, trace_id: str) -> None:
    body = error_body(exc.code, exc.message, exc.details, trace_id)
    try:
        await websocket.send_denial_response(JSONResponse(body, status_code=exc.status, headers=exc.headers))
    except RuntimeError:  # a server without the denial-response extension: refuse without a body
        await websocket.close(code=1008, reason=exc.code)
