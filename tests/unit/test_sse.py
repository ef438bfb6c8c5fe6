"""EventStream driven as an ASGI app: events, errors, keep-alives, and cleanup however it ends."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator

from kubilitics.api.sse import EventStream, wants_event_stream
from kubilitics.errors import KubiliticsError


class Source:
    """Yields `lines`, then raises `error` or blocks until closed (a follow with nothing new)."""

    def __init__(self, lines: list[str], error: Exception | None = None, block: bool = False):
        self.lines, self.error, self.block = lines, error, block
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        yield from self.lines
        if self.error:
            raise self.error
        if self.block:
            self.closed.wait(10)

    def close(self) -> None:
        self.closed.set()


def run(stream: EventStream, disconnect_after: float | None = None) -> list[bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        if disconnect_after is None:
            await asyncio.sleep(3600)
        await asyncio.sleep(disconnect_after)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(stream({"type": "http"}, receive, send), 10))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    return [m.get("body", b"") for m in sent[1:]]


def closer() -> tuple[list[int], Callable[[], None]]:
    calls: list[int] = []
    return calls, lambda: calls.append(1)


def test_one_data_event_per_line_then_end():
    calls, on_close = closer()
    source = Source(["first", "second\r"])
    body = b"".join(run(EventStream(source, on_close, trace_id="req-1")))
    assert body == b"data: first\n\ndata: second\n\nevent: end\ndata: log ended\n\n"
    assert calls == [1] and source.closed.is_set()


def test_headers_say_event_stream_without_a_length():
    headers = dict(EventStream(Source([]), lambda: None, trace_id=None).raw_headers)
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-cache" and b"content-length" not in headers


def test_a_failure_ends_with_an_error_event_carrying_the_standard_body():
    calls, on_close = closer()
    error = KubiliticsError("container is waiting to start", code="validation_failed")
    body = b"".join(run(EventStream(Source(["one"], error=error), on_close, trace_id="req-7")))
    first, rest = body.split(b"\n\n", 1)
    assert first == b"data: one"
    kind, data = rest.rstrip(b"\n").split(b"\n")
    assert kind == b"event: error"
    payload = json.loads(data[len(b"data: ") :])
    assert payload["error"] == "validation_failed" and payload["trace_id"] == "req-7"
    assert calls == [1]


def test_a_disconnect_closes_the_source_and_runs_on_close_once():
    calls, on_close = closer()
    source = Source(["hello"], block=True)
    started = time.monotonic()
    chunks = run(EventStream(source, on_close, trace_id=None), disconnect_after=0.3)
    assert chunks[0] == b"data: hello\n\n"
    assert calls == [1] and source.closed.is_set()
    assert time.monotonic() - started < 3


def test_keep_alive_comments_while_nothing_happens():
    chunks = run(
        EventStream(Source([], block=True), lambda: None, trace_id=None, keepalive_seconds=0.05),
        disconnect_after=0.4,
    )
    assert chunks.count(b": keep-alive\n\n") >= 2


def test_a_follow_bounded_by_until_time_ends_there():
    calls, on_close = closer()
    stream = EventStream(Source([], block=True), on_close, trace_id=None, ends_at=time.time() + 0.3)
    chunks = run(stream)
    assert chunks[-2:] == [b"event: end\ndata: until_time reached\n\n", b""]
    assert calls == [1]


def test_wants_event_stream():
    assert wants_event_stream("text/event-stream")
    assert wants_event_stream("application/json, text/event-stream;q=0.9")
    assert not wants_event_stream("text/plain") and not wants_event_stream(None)
