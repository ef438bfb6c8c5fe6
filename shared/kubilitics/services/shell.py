"""Interactive shells (reference section 8, `/api/v1/shell`): a TTY exec bridged to a WebSocket client.

The session does not care where its input comes from (a local socket, or the DynamoDB queue the session
Lambda polls) nor where its output goes (`emit`). It ends when the shell exits (`exit` with its code),
when the client asks (`{"type": "exit"}`) or goes away, when nobody typed and nothing was printed for
`idle_seconds`, or at `max_seconds` (the session Lambda's time limit); then `exit_code` is null and
`reason` says why. The `exit` message is sent by the caller once the session's slot is given back, so
a client that starts another shell on receiving it finds the slot free.
"""

from __future__ import annotations

import codecs
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from kubilitics.errors import KubiliticsError
from kubilitics.ports import Clock, KubernetesPort
from kubilitics.services import realtime_messages as messages
from kubilitics.services.realtime_messages import ShellCommand

log = logging.getLogger(__name__)

# Output read within this window is sent as one message (fewer pushes; API Gateway bills each one).
COALESCE_SECONDS = 0.01
MAX_MESSAGE_BYTES = 32 * 1024


@dataclass(frozen=True)
class ShellSpec:
    context: str
    namespace: str
    pod_name: str
    container: str
    shell: str
    rows: int
    cols: int
    # The caller the shell runs as (their RBAC: pods/exec), as a record; None: the service's identity.
    acting_as: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ShellSpec:
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})


class SessionInputs(Protocol):
    def get(self, timeout: float) -> ShellCommand | None:
        """The next client command, or None if none came within `timeout`. `close`: the client left."""
        ...


class ShellSession:
    def __init__(
        self,
        kube: KubernetesPort,
        context: Any,
        spec: ShellSpec,
        emit: Callable[[str], bool],
        inputs: SessionInputs,
        clock: Clock,
        idle_seconds: float,
        max_seconds: float | None = None,
    ):
        self._kube = kube
        self._context = context
        self._spec = spec
        self._emit = emit
        self._inputs = inputs
        self._clock = clock
        self._idle_seconds = idle_seconds
        self._max_seconds = max_seconds
        self._ended = threading.Event()
        self._gone = False
        self._last_output = clock.now()

    @property
    def client_gone(self) -> bool:
        return self._gone

    def run(self) -> tuple[int | None, str | None]:
        """Bridge until the session ends: (exit code, reason). The caller sends `exit` (see module doc)."""
        spec = self._spec
        try:
            terminal = self._kube.open_terminal(
                self._context,
                spec.namespace,
                spec.pod_name,
                spec.container,
                [spec.shell],
                rows=spec.rows,
                cols=spec.cols,
            )
        except KubiliticsError as exc:
            self._send(messages.error_message(exc, None))
            return None, "exec_failed"
        reader = threading.Thread(
            target=self._pump_output, args=(terminal,), name="shell-output", daemon=True
        )
        reader.start()
        reason: str | None = None
        try:
            reason = self._pump_input(terminal)
        finally:
            terminal.close()
            reader.join(timeout=5)
        exit_code = terminal.exit_code
        if exit_code is not None:
            reason = None  # the shell ended by itself: its exit code says it all
        return exit_code, reason

    def _pump_input(self, terminal: Any) -> str | None:
        started = last_input = self._clock.now()
        while not self._ended.is_set():
            command = self._inputs.get(timeout=0.1)
            now = self._clock.now()
            if command is not None:
                last_input = now
                if command.type == "exit":
                    return "exit_requested"
                if command.type == "close":
                    self._gone = True
                    return "client_disconnected"
                try:
                    if command.type == "input":
                        terminal.write(command.data.encode())
                    elif command.type == "resize":
                        terminal.resize(command.rows, command.cols)
                except Exception:
                    return None  # the stream is closing under us: the shell has exited
            if self._gone:
                return "client_disconnected"
            if now - max(last_input, self._last_output) >= self._idle_seconds:
                return "idle_timeout"
            if self._max_seconds is not None and now - started >= self._max_seconds:
                return "session_limit"
        return None

    def _pump_output(self, terminal: Any) -> None:
        decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")}
        try:
            while not self._ended.is_set():
                frame = terminal.read(timeout=0.5)
                if frame is None:
                    continue
                # Gather what else is already there, so a burst of output leaves as one message.
                chunks = {"stdout": bytearray(), "stderr": bytearray()}
                chunks[frame[0]] += frame[1]
                size, finished = len(frame[1]), False
                while size < MAX_MESSAGE_BYTES:
                    try:
                        more = terminal.read(timeout=COALESCE_SECONDS)
                    except EOFError:
                        finished = True
                        break
                    if more is None:
                        break
                    chunks[more[0]] += more[1]
                    size += len(more[1])
                for channel, data in chunks.items():
                    text = decoders[channel].decode(bytes(data))
                    if text:
                        self._last_output = self._clock.now()
                        self._send(messages.shell_output(channel, text))
                if finished:
                    return
        except EOFError:
            pass  # the exec stream ended: the shell exited (or we closed it)
        finally:
            self._ended.set()

    def _send(self, message: str) -> None:
        if not self._gone and not self._emit(message):
            self._gone = True
