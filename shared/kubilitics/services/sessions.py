"""Shell and live-log sessions: started from a WebSocket message, run by a worker that outlives it.

On API Gateway a WebSocket message cannot reach a running Lambda, so a session is run by the session
Lambda (invoked asynchronously, one invocation per session): it holds the Kubernetes stream, reads the
client's input from a per-session queue in DynamoDB (`SessionQueue`), and pushes output with
post_to_connection. The local server runs the same `run_session` on a thread, with the queue in memory.

Concurrency: a shell takes one of the user's `shells` slots, a followed log one of their `logs` slots;
the worker gives it back when the session ends, whatever the reason.

Tokens: the worker checks the connection and its token every TOKEN_CHECK_SECONDS; a session whose
connection is gone ends, one whose token expired or was revoked ends with that ERROR and a close.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubilitics.errors import KubiliticsError, NotFound
from kubilitics.ports import (
    AsyncInvoker,
    Clock,
    ConnectionNotifier,
    KubernetesPort,
    RealtimeStore,
    SessionQueue,
)
from kubilitics.services import realtime_messages as messages
from kubilitics.services.live_logs import LogsSpec, open_follow, stream_lines
from kubilitics.services.pods import PodService
from kubilitics.services.ratelimit import RateLimiter
from kubilitics.services.realtime_messages import ShellCommand
from kubilitics.services.realtime_model import SHELL_POINTER, Connection, Pointer, subscription_pointer
from kubilitics.services.shell import SessionInputs, ShellSession, ShellSpec

log = logging.getLogger(__name__)

SLOT_CATEGORY = {"shell": "shells", "logs": "logs"}


class Sessions:
    """Starts sessions (pointer on the connection, queue, worker) and routes client input to them."""

    def __init__(
        self,
        store: RealtimeStore,
        queue: SessionQueue,
        invoker: AsyncInvoker,
        worker: str | None,
        clock: Clock,
    ):
        self._store = store
        self._queue = queue
        self._invoker = invoker
        self._worker = worker
        self._clock = clock

    def start_shell(self, connection: Connection, spec: ShellSpec) -> str:
        return self._start(connection, "shell", SHELL_POINTER, spec.to_dict())

    def start_logs(self, connection: Connection, spec: LogsSpec) -> str:
        return self._start(connection, "logs", subscription_pointer(spec.subscription_id), spec.to_dict())

    def _start(self, connection: Connection, kind: str, pointer_name: str, spec: dict[str, Any]) -> str:
        if not self._worker:
            raise KubiliticsError(
                "Sessions are not available: KUBILITICS_SHELL_SESSION_FUNCTION is not set",
                code="service_unavailable",
            )
        session_id = f"{'sh' if kind == 'shell' else 'lg'}-{uuid.uuid4().hex[:16]}"
        pointer = Pointer(pointer_name, kind, session_id=session_id, sub=connection.sub)
        self._store.put_pointer(connection.connection_id, pointer, connection.expires_at)
        try:
            self._queue.open(session_id, connection.connection_id, connection.expires_at)
            self._invoker.invoke_async(
                self._worker,
                {
                    "kind": kind,
                    "session_id": session_id,
                    "connection_id": connection.connection_id,
                    "sub": connection.sub,
                    "pointer": pointer_name,
                    "spec": spec,
                },
            )
        except KubiliticsError:
            self._store.delete_pointer(connection.connection_id, pointer_name)
            raise
        return session_id

    def send_shell(self, connection: Connection, command: ShellCommand) -> None:
        pointer = self._store.get_pointer(connection.connection_id, SHELL_POINTER)
        if pointer is None or not pointer.session_id:
            raise NotFound(
                "No shell session on this connection: send an init message first",
                details={"connection": "no_shell_session"},
            )
        self._queue.append(pointer.session_id, command.to_dict())

    def stop(self, pointer: Pointer) -> None:
        """The client unsubscribed from a live log: tell its worker to end it."""
        if pointer.session_id:
            self._tell(pointer.session_id, ShellCommand("exit"))

    def close_all(self, pointers: list[Pointer]) -> None:
        """The connection is gone: every session it had ends."""
        for pointer in pointers:
            if pointer.stream in ("shell", "logs") and pointer.session_id:
                self._tell(pointer.session_id, ShellCommand("close"))

    def _tell(self, session_id: str, command: ShellCommand) -> None:
        with contextlib.suppress(NotFound):  # it has ended already
            self._queue.append(session_id, command.to_dict())


class QueuedInputs:
    """A session's client commands read from its queue, in sequence order.

    A gap (command n+1 visible before n, whose write is still in flight) is waited for up to
    `gap_seconds`, then skipped: a lost keystroke beats a stuck terminal.
    """

    def __init__(
        self,
        queue: SessionQueue,
        session_id: str,
        clock: Clock,
        *,
        fast_poll: float = 0.03,
        slow_poll: float = 0.15,
        gap_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._queue = queue
        self._session_id = session_id
        self._clock = clock
        self._fast, self._slow, self._gap_seconds = fast_poll, slow_poll, gap_seconds
        self._sleep = sleep
        self._pending: deque[ShellCommand] = deque()
        self._last = 0
        self._gap_since: float | None = None
        self._last_input = clock.now()
        self._next_poll = 0.0

    def get(self, timeout: float) -> ShellCommand | None:
        deadline = self._clock.now() + timeout
        while not self._pending:
            now = self._clock.now()
            if now >= self._next_poll:
                self._poll(now)
                # Poll often while the user types, less when the terminal is quiet.
                self._next_poll = now + (self._fast if now - self._last_input < 5 else self._slow)
                continue
            if now >= deadline:
                return None
            self._sleep(max(0.0, min(self._next_poll, deadline) - now))
        return self._pending.popleft()

    def _poll(self, now: float) -> None:
        for seq, raw in self._queue.read(self._session_id, self._last):
            if seq != self._last + 1:
                self._gap_since = self._gap_since or now
                if now - self._gap_since < self._gap_seconds:
                    return
                log.warning("session %s: input %d never arrived; skipped", self._session_id, self._last + 1)
            self._gap_since = None
            self._last = seq
            self._last_input = now
            self._pending.append(ShellCommand.from_dict(raw))


class OwnerCheck:
    """A session's input that also ends the session (a `close`) once `verdict` gives a reason: asked
    every `every` seconds, whether the client types or not (see SessionWorker._owner_verdict)."""

    def __init__(self, inputs: SessionInputs, verdict: Callable[[], str | None], clock: Clock, every: float):
        self._inputs = inputs
        self._verdict = verdict
        self._clock = clock
        self._every = every
        self._next = clock.now() + every
        self.ended: str | None = None  # why the check ended the session

    def get(self, timeout: float) -> ShellCommand | None:
        now = self._clock.now()
        if self.ended is None and now >= self._next:
            self._next = now + self._every
            self.ended = self._verdict()
        if self.ended is not None:
            return ShellCommand("close")
        return self._inputs.get(timeout)


# How often a running session checks its connection and its owner's token: with the revocation
# list's trust in a "not revoked" answer (KUBILITICS_REVOCATION_CACHE_SECONDS, 20 s by default), a
# revoked token's shells and live logs end within 25 s.
TOKEN_CHECK_SECONDS = 5.0
# A session whose owner's token stopped being valid ends as the WebSocket service and the watch relay
# end such a connection: an ERROR with this code, then the server closes the socket.
TOKEN_ENDED = {
    "token_expired": "The bearer token has expired",
    "token_revoked": "The bearer token has been revoked",
}


@dataclass(frozen=True)
class SessionWorker:
    """What a session worker needs (the session Lambda, or a thread of the local server)."""

    kube: KubernetesPort
    pods: PodService
    contexts: Callable[[str, dict[str, Any] | None], Any]  # (context name, acting_as record)
    store: RealtimeStore
    queue: SessionQueue
    notifier: ConnectionNotifier
    rate_limiter: RateLimiter
    clock: Clock
    idle_seconds: float
    poll_seconds: float = 0.03
    # token -> revoked? (auth.revocation.RevocationList.is_revoked); None: only expiry is checked
    revoked: Callable[[Any], bool] | None = None
    token_check_seconds: float = TOKEN_CHECK_SECONDS

    def run(self, payload: dict[str, Any], max_seconds: float | None = None) -> dict[str, Any]:
        """Run one session to its end; the pointer, the queue and the concurrency slot are cleaned up."""
        kind, session_id = payload["kind"], payload["session_id"]
        connection_id, sub = payload["connection_id"], payload["sub"]
        # Nothing else would stop a shell the user keeps busy or a log that keeps printing: the worker
        # itself checks the connection and its token, whether the client sends anything or not.
        inputs = OwnerCheck(
            QueuedInputs(self.queue, session_id, self.clock, fast_poll=self.poll_seconds),
            lambda: self._owner_verdict(connection_id),
            self.clock,
            self.token_check_seconds,
        )

        def emit(message: str) -> bool:
            return self.notifier.post(connection_id, message)

        outcome: dict[str, Any] = {"session_id": session_id, "kind": kind, "reason": "error"}
        subscription_id = payload["spec"].get("subscription_id")
        try:
            if kind == "shell":
                spec = ShellSpec.from_dict(payload["spec"])
                session = ShellSession(
                    self.kube,
                    self.contexts(spec.context, spec.acting_as),
                    spec,
                    emit,
                    inputs,
                    self.clock,
                    self.idle_seconds,
                    max_seconds,
                )
                outcome["exit_code"], outcome["reason"] = session.run()
                if session.client_gone:
                    outcome["reason"] = "client_disconnected"
            else:
                logs = LogsSpec.from_dict(payload["spec"])
                follow = open_follow(self.pods, self.contexts(logs.context, logs.acting_as), logs)
                outcome["reason"] = stream_lines(follow, logs, emit, inputs, self.clock, max_seconds)
        except KubiliticsError as exc:
            emit(messages.error_message(exc, None, subscription_id))
            outcome["error"] = exc.code
        finally:
            self._clean_up(session_id, connection_id, payload["pointer"], sub, kind)
        if inputs.ended is not None:
            outcome["reason"] = inputs.ended
        if inputs.ended in TOKEN_ENDED:
            # As the WebSocket service and the watch relay end it: an ERROR, then the server closes the
            # socket (1008 locally; on AWS the $disconnect that follows ends the connection's other streams).
            error = KubiliticsError(TOKEN_ENDED[inputs.ended], code=inputs.ended)
            emit(messages.error_message(error, None, subscription_id))
            self.notifier.close(connection_id)
        # Said last, once the slot is free: a client may start the next session as soon as it reads this.
        elif outcome["reason"] != "client_disconnected":
            if kind == "shell":
                emit(messages.shell_exit(outcome.get("exit_code"), outcome["reason"]))
            else:
                emit(messages.log_end(subscription_id, outcome["reason"]))
        return outcome

    def _owner_verdict(self, connection_id: str) -> str | None:
        """Why the session must end now, or None: its connection is gone (`client_disconnected`: the
        relay or a $disconnect removed it), or its token has expired or been revoked."""
        try:
            connection = self.store.get_connection(connection_id)
            if connection is None:
                return "client_disconnected"
            if connection.expires_at <= self.clock.now():
                return "token_expired"
            if self.revoked is not None and self.revoked(connection):
                return "token_revoked"
        except KubiliticsError as exc:  # the tables did not answer: asked again at the next check
            log.warning("session owner check of connection %s failed: %r", connection_id, exc)
        return None

    def _clean_up(self, session_id: str, connection_id: str, pointer_name: str, sub: str, kind: str) -> None:
        for step in (
            lambda: self.queue.finish(session_id),
            lambda: self._drop_pointer(connection_id, pointer_name, session_id),
            lambda: self.rate_limiter.release_slot(sub, SLOT_CATEGORY[kind]),
        ):
            try:
                step()
            except Exception as exc:  # one failed step must not keep the others from running
                log.warning("session %s clean-up step failed: %r", session_id, exc)

    def _drop_pointer(self, connection_id: str, pointer_name: str, session_id: str) -> None:
        pointer = self.store.get_pointer(connection_id, pointer_name)
        if pointer is not None and pointer.session_id == session_id:
            self.store.delete_pointer(connection_id, pointer_name)
