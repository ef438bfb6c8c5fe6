"""The real-time API in the local server: the same services as on API Gateway, wired in-process.

- pushes go to the local sockets (`LocalHub`) instead of post_to_connection;
- sessions (shells, live logs) run on threads with their input queue in memory, instead of in the
  session Lambda with the queue in DynamoDB (`SessionWorker.run` is the same code);
- the watch relay runs on a background thread for the life of the server, woken at once when a
  subscription is added or removed (on AWS it reads members every second);
- connections, subscriptions and watch sets live in DynamoDB (moto), as on AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kubilitics.errors import NotFound
from kubilitics.services.sessions import Sessions, SessionWorker
from kubilitics.services.watch import RelayOptions

log = logging.getLogger(__name__)

# A client that lets this many messages pile up is too slow to follow: it is disconnected.
MAX_PENDING_MESSAGES = 20_000


@dataclass
class _Socket:
    loop: asyncio.AbstractEventLoop
    outbox: asyncio.Queue[str | None]
    closed: bool = False


class LocalHub:
    """ports.ConnectionNotifier for sockets served by this process (thread-safe)."""

    def __init__(self) -> None:
        self._sockets: dict[str, _Socket] = {}
        self._lock = threading.Lock()

    def register(self, connection_id: str) -> asyncio.Queue[str | None]:
        """Called on the event loop serving the socket; `None` in the outbox means "close it"."""
        outbox: asyncio.Queue[str | None] = asyncio.Queue()
        with self._lock:
            self._sockets[connection_id] = _Socket(asyncio.get_running_loop(), outbox)
        return outbox

    def unregister(self, connection_id: str) -> None:
        with self._lock:
            self._sockets.pop(connection_id, None)

    def post(self, connection_id: str, message: str) -> bool:
        return self.post_batch(connection_id, [message])

    def post_batch(self, connection_id: str, messages: list[str]) -> bool:
        with self._lock:
            socket = self._sockets.get(connection_id)
        if socket is None or socket.closed:
            return False
        if socket.outbox.qsize() >= MAX_PENDING_MESSAGES:
            log.warning("connection %s is not reading; disconnecting it", connection_id)
            self.close(connection_id)
            return False
        try:
            # One hop to the event loop for the whole batch (the relay hands over a batch per connection).
            socket.loop.call_soon_threadsafe(_put_all, socket.outbox, messages)
        except RuntimeError:  # the server's loop has stopped
            return False
        return True

    def close(self, connection_id: str) -> None:
        with self._lock:
            socket = self._sockets.get(connection_id)
        if socket is not None and not socket.closed:
            socket.closed = True
            with contextlib.suppress(RuntimeError):  # the server's loop has stopped
                socket.loop.call_soon_threadsafe(socket.outbox.put_nowait, None)


def _put_all(outbox: asyncio.Queue[str | None], messages: list[str]) -> None:
    for message in messages:
        outbox.put_nowait(message)


@dataclass
class _Session:
    open: bool = True
    seq: int = 0
    items: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


class MemorySessionQueue:
    """ports.SessionQueue in memory: sessions run in this process."""

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def open(self, session_id: str, connection_id: str, expires_at: int) -> None:
        with self._lock:
            self._sessions[session_id] = _Session()

    def append(self, session_id: str, command: dict[str, Any]) -> int:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or not session.open:
                raise NotFound("The session has ended", details={"session_id": session_id})
            session.seq += 1
            session.items.append((session.seq, command))
            return session.seq

    def read(self, session_id: str, after: int) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return []
            # Read items are dropped: each session has exactly one reader.
            session.items = [item for item in session.items if item[0] > after]
            return list(session.items)

    def finish(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)


class ThreadInvoker:
    """ports.AsyncInvoker that runs the session worker on a thread of this process."""

    def __init__(self, worker: SessionWorker):
        self._worker = worker

    def invoke_async(self, function: str, payload: dict[str, Any]) -> None:
        threading.Thread(
            target=self._run, args=(payload,), name=f"session-{payload['session_id']}", daemon=True
        ).start()

    def _run(self, payload: dict[str, Any]) -> None:
        try:
            self._worker.run(payload)
        except Exception:
            log.exception("session %s failed", payload.get("session_id"))


class LocalRealtime:
    def __init__(self, services: Any):
        self.hub = LocalHub()
        self.queue = MemorySessionQueue()
        worker = services.session_worker(self.hub, queue=self.queue, poll_seconds=0.01)
        sessions = Sessions(
            services.realtime_store, self.queue, ThreadInvoker(worker), "local", services.clock
        )
        self.relay = services.watch_relay(
            f"local-{os.getpid()}-{uuid.uuid4().hex[:8]}", self.hub, RelayOptions()
        )
        self.service = services.realtime_service(self.hub, sessions, lambda _new_set: self.relay.wake())
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run_relay, name="watch-relay", daemon=True)
        self._thread.start()

    def _run_relay(self) -> None:
        # The relay runs for the life of the server; if it ever stops on an error it is started again.
        while not self._stopped.is_set():
            try:
                report = self.relay.run(deadline=None)
                if report.get("status") != "standby":
                    log.info("watch relay ended: %s", report)
            except Exception:
                log.exception("watch relay failed; restarting it")
            self._stopped.wait(1.0)

    def stop(self) -> None:
        self._stopped.set()
        self.relay.stop()


_build_lock = threading.Lock()


def get_local_realtime() -> LocalRealtime:
    """The one instance of this process (the first sockets arrive at once, on several threads)."""
    with _build_lock:
        return _local_realtime()


@lru_cache(maxsize=1)
def _local_realtime() -> LocalRealtime:
    from kubilitics.container import get_container

    return LocalRealtime(get_container())
