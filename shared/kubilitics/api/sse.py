"""Server-Sent Events from a blocking line source (a followed pod log).

The source is read on its own thread (not the shared thread pool: a hundred idle follows must not
starve ordinary requests) and handed to the event loop with back-pressure. However the stream ends
(the source runs dry, the client goes away, an error), the source is closed and `on_close` runs
exactly once, shielded from cancellation: that is where a concurrency slot is given back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from kubilitics.errors import KubiliticsError, error_body

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
_END = object()


class LineSource(Iterable[str], Protocol):
    def close(self) -> None: ...


def data_event(line: str) -> bytes:
    # A carriage return would end the field early for an SSE parser; one line is one event.
    return f"data: {line.replace(chr(13), '')}\n\n".encode()


class EventStream(Response):
    """One `data:` event per line, then `event: end` (or `event: error` with the standard error body)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        source: LineSource,
        on_close: Callable[[], None],
        *,
        trace_id: str | None,
        ends_at: float | None = None,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ):
        self._source = source
        self._on_close = on_close
        self._trace_id = trace_id
        self._ends_at = ends_at  # epoch seconds: a follow bounded by until_time stops there
        self._keepalive = keepalive_seconds
        self.status_code = 200
        self.background = None
        # no body attribute: init_headers then sets no content-length
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as group:

                async def pump_then_stop() -> None:
                    await self._pump(send)
                    group.cancel_scope.cancel()

                async def stop_on_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(pump_then_stop)
                group.start_soon(stop_on_disconnect)
        finally:
            self._source.close()
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(self._on_close)
                except Exception:  # the response is over: log it, there is no one left to answer
                    log.exception("closing an event stream failed")

    async def _pump(self, send: Send) -> None:
        sender, receiver = anyio.create_memory_object_stream[Any](max_buffer_size=64)
        token = anyio.lowlevel.current_token()
        reader = threading.Thread(target=self._read, args=(sender, token), daemon=True, name="sse-reader")
        reader.start()
        async with receiver:
            while True:
                item = None
                with anyio.move_on_after(self._wait_seconds()):
                    try:
                        item = await receiver.receive()
                    except anyio.EndOfStream:  # the reader could not hand over its last word
                        item = _END
                past_end = self._ends_at is not None and time.time() >= self._ends_at
                if item is None and not past_end:
                    await self._send(send, b": keep-alive\n\n")
                    continue
                if item is None or item is _END:
                    reason = b"until_time reached" if past_end else b"log ended"
                    await self._send(send, b"event: end\ndata: " + reason + b"\n\n")
                    break
                if isinstance(item, BaseException):
                    await self._send(send, self._error_event(item))
                    break
                await self._send(send, data_event(item))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _wait_seconds(self) -> float:
        if self._ends_at is None:
            return self._keepalive
        return max(0.0, min(self._keepalive, self._ends_at - time.time()))

    def _read(self, sender: MemoryObjectSendStream[Any], token: Any) -> None:
        """On the reader thread: every line into the channel, then the end marker or the error."""
        try:
            with sender:
                try:
                    for line in self._source:
                        anyio.from_thread.run(sender.send, line, token=token)
                    final: Any = _END
                except Exception as exc:
                    final = exc
                anyio.from_thread.run(sender.send, final, token=token)
        except Exception:
            pass  # the response is gone (client left, loop closed): nobody to tell

    def _error_event(self, exc: BaseException) -> bytes:
        if not isinstance(exc, KubiliticsError):
            log.warning("log follow failed: %r", exc)
            exc = KubiliticsError("The log stream from Kubernetes failed", code="kubernetes_api_error")
        body = error_body(exc.code, exc.message, exc.details, self._trace_id)
        return f"event: error\ndata: {json.dumps(body)}\n\n".encode()

    @staticmethod
    async def _send(send: Send, chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


def wants_event_stream(accept: str | None) -> bool:
    media_types = (part.split(";")[0].strip().lower() for part in (accept or "").split(","))
    return "text/event-stream" in media_types
