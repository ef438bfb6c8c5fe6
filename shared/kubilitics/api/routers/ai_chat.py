"""WebSocket /api/v1/ai/chat (reference section 14), served natively by the local server.

One socket is one chat session: authentication (`token` query parameter or `Authorization: Bearer`,
`read` scope) and one of the user's 10 chat slots are taken before the upgrade, so a refused client
gets the HTTP status and the standard error body. Messages are answered one at a time, in order.
Keep-alive pings every 30 s are uvicorn's (local/server.py); 30 minutes without a client message end
the session with a `SESSION_ENDED` message. On AWS the same service runs behind the WebSocket API's
`chat` route (functions/websocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from fastapi import APIRouter, WebSocket

from kubilitics.api.blocking import run_blocking
from kubilitics.api.responses import JSONResponse
from kubilitics.auth.access import authenticate_token, bearer_token, require_scope, resolve_context
from kubilitics.container import get_container
from kubilitics.errors import KubiliticsError, error_body
from kubilitics.services.chat import ChatSession

router = APIRouter(tags=["ai"])


@router.websocket("/api/v1/ai/chat")
async def chat(websocket: WebSocket) -> None:
    services = get_container()
    token = websocket.query_params.get("token") or bearer_token(websocket.headers.get("authorization"))
    requested = websocket.headers.get("x-kubeconfig-context") or websocket.query_params.get("context")

    def start() -> ChatSession:
        principal = require_scope(authenticate_token(services, token), "read")
        context = resolve_context(services, principal, requested)
        return services.chat.open(principal, context.name)

    try:
        session = await run_blocking(start)
    except KubiliticsError as exc:
        await _refuse(websocket, exc, f"req-{uuid.uuid4().hex}")
        return
    chat_service = services.chat
    await websocket.accept()
    try:
        while True:
            try:
                message = await asyncio.wait_for(websocket.receive(), timeout=chat_service.idle_seconds)
            except TimeoutError:
                with contextlib.suppress(Exception):
                    await websocket.send_text(chat_service.ended_message(session, "idle_timeout"))
                    await websocket.close(code=1000)
                return
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text") if message.get("text") is not None else message.get("bytes")
            reply = await run_blocking(chat_service.answer, session, raw, f"req-{uuid.uuid4().hex}")
            try:
                await websocket.send_text(reply.text)
                if reply.close:
                    await websocket.close(code=1008)
                    return
            except Exception:  # the client went away mid-answer
                return
    finally:
        await run_blocking(chat_service.close, session)


async def _refuse(websocket: WebSocket, exc: KubiliticsError, trace_id: str) -> None:
    body = error_body(exc.code, exc.message, exc.details, trace_id)
    try:
        await websocket.send_denial_response(JSONResponse(body, status_code=exc.status, headers=exc.headers))
    except RuntimeError:  # a server without the denial-response extension: refuse without a body
        await websocket.close(code=1008, reason=exc.code)
