"""The real-time services without a cluster: message parsing, shell sessions, session input order, and the
relay's resync after 410 Gone (with a scripted Kubernetes and the DynamoDB store on moto)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.clock import SystemClock
from kubilitics.errors import KubiliticsError
from kubilitics.services import realtime_messages as messages
from kubilitics.services.access import AccessReviews
from kubilitics.services.realtime_messages import Logs, ShellCommand, ShellInit, Subscribe, Unsubscribe
from kubilitics.services.sessions import QueuedInputs
from kubilitics.services.shell import ShellSession, ShellSpec

# ---- messages -------------------------------------------------------------------------------------


def test_the_reference_messages_parse_to_their_commands():
    subscribe = messages.parse(
        '{"action":"subscribe","resource_kind":"Pod","namespace":"default","label_selector":"app=myapp",'
        '"subscription_id":"sub-123"}'
    )
    assert subscribe == Subscribe(
        action="subscribe",
        resource_kind="Pod",
        namespace="default",
        label_selector="app=myapp",
        subscription_id="sub-123",
    )
    assert messages.parse('{"action":"unsubscribe","subscription_id":"sub-123"}') == Unsubscribe(
        action="unsubscribe", subscription_id="sub-123"
    )
    init = messages.parse(
        '{"action":"init","namespace":"default","pod_name":"debug-pod","container":"app","shell":"/bin/bash",'
        '"rows":24,"cols":80}'
    )
    assert isinstance(init, ShellInit) and (init.pod_name, init.shell, init.rows, init.cols) == (
        "debug-pod",
        "/bin/bash",
        24,
        80,
    )
    # API Gateway's `shell` route form of the same message
    assert messages.parse('{"action":"shell","type":"init","namespace":"d","pod_name":"p"}') == ShellInit(
        namespace="d", pod_name="p"
    )
    assert messages.parse('{"type":"input","data":"ls -la\\n"}') == ShellCommand("input", data="ls -la\n")
    assert messages.parse('{"type":"input","data":"  padded  "}') == ShellCommand("input", data="  padded  ")
    assert messages.parse('{"type":"resize","rows":30,"cols":120}') == ShellCommand(
        "resize", rows=30, cols=120
    )
    logs = messages.parse('{"action":"logs","namespace":"n","pod_name":"p"}')
    assert isinstance(logs, Logs) and (logs.tail_lines, logs.timestamps, logs.follow) == (100, True, True)


@pytest.mark.parametrize(
    ("raw", "code", "detail"),
    [
        ("{nope", "validation_failed", None),
        ("[1, 2]", "validation_failed", None),
        ('{"action": "teleport"}', "validation_failed", ("field", "action")),
        ('{"type": "dance"}', "validation_failed", ("field", "type")),
        ("{}", "missing_required_field", ("field", "action")),
        ('{"action": "subscribe"}', "missing_required_field", ("field", "resource_kind")),
        ('{"action": "unsubscribe", "subscription_id": "has space"}', "validation_failed", None),
        (
            '{"action": "logs", "namespace": "n", "pod_name": "p", "tail_lines": 10001}',
            "validation_failed",
            None,
        ),
        ('{"type": "resize", "rows": 0, "cols": 80}', "validation_failed", None),
    ],
)
def test_malformed_messages_get_the_standard_codes(raw, code, detail):
    with pytest.raises(KubiliticsError) as raised:
        messages.parse(raw)
    assert raised.value.code == code and raised.value.status == 400
    if detail:
        assert raised.value.details[detail[0]] == detail[1]


def test_error_message_carries_the_standard_body():
    error = KubiliticsError("Unknown Kubernetes kind: X", code="invalid_resource_kind", details={"kind": "X"})
    sent = json.loads(messages.error_message(error, "req-1", "sub-9"))
    assert sent["type"] == "ERROR" and sent["subscription_id"] == "sub-9" and sent["status"] == 400
    assert {k: sent["error"][k] for k in ("error", "message", "details", "trace_id")} == {
        "error": "invalid_resource_kind",
        "message": "Unknown Kubernetes kind: X",
        "details": {"kind": "X"},
        "trace_id": "req-1",
    }
    update = json.loads(
        messages.update_prefix("ADDED", "s") + messages.update_suffix('{"kind":"Pod"}', 1770733425.123)
    )
    assert update == {
        "type": "ADDED",
        "subscription_id": "s",
        "resource": {"kind": "Pod"},
        "timestamp": "2026-02-10T14:23:45.123Z",
    }


# ---- shell sessions -------------------------------------------------------------------------------


class FakeTerminal:
    """An exec session: what the shell prints is scripted; what the client types is recorded."""

    def __init__(self) -> None:
        self.frames: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self.written: list[bytes] = []
        self.resizes: list[tuple[int, int]] = []
        self.status: dict[str, Any] | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if data == b"exit 7\n":
            self.frames.put(("stdout", b"bye\r\n"))
            self.status = {
                "status": "Failure",
                "details": {"causes": [{"reason": "ExitCode", "message": "7"}]},
            }
            self.frames.put(None)

    def resize(self, rows: int, cols: int) -> None:
        self.resizes.append((rows, cols))

    def read(self, timeout: float) -> tuple[str, bytes] | None:
        try:
            frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            return None
        if frame is None:
            self.frames.put(None)
            raise EOFError
        return frame

    @property
    def exit_code(self) -> int | None:
        if self.status is None:
            return None
        return int(self.status["details"]["causes"][0]["message"])

    def close(self) -> None:
        self.closed = True
        self.frames.put(None)


@dataclass
class FakeKube:
    terminal: FakeTerminal = field(default_factory=FakeTerminal)
    opened: list[tuple[Any, ...]] = field(default_factory=list)

    def open_terminal(self, context, namespace, pod, container, command, *, rows, cols):
        self.opened.append((namespace, pod, container, tuple(command), rows, cols))
        self.terminal.resize(rows, cols)
        return self.terminal


class ScriptedInputs:
    def __init__(self, *commands: tuple[float, ShellCommand]):
        self._commands = deque(commands)
        self._start = time.monotonic()

    def get(self, timeout: float) -> ShellCommand | None:
        if self._commands and time.monotonic() - self._start >= self._commands[0][0]:
            return self._commands.popleft()[1]
        time.sleep(min(timeout, 0.02))
        return None


SPEC = ShellSpec("ctx", "default", "web-0", "app", "/bin/sh", 24, 80)


def shell(inputs: ScriptedInputs, idle: float = 5, limit: float | None = None, alive: bool = True):
    kube, sent = FakeKube(), []

    def emit(message: str) -> bool:
        sent.append(json.loads(message))
        return alive

    result = ShellSession(kube, object(), SPEC, emit, inputs, SystemClock(), idle, limit).run()
    return result, sent, kube


def test_input_and_resize_reach_the_exec_stream_and_the_exit_code_comes_back():
    inputs = ScriptedInputs(
        (0.0, ShellCommand("input", data="ls\n")),
        (0.0, ShellCommand("resize", rows=30, cols=120)),
        (0.05, ShellCommand("input", data="exit 7\n")),
    )
    (code, reason), sent, kube = shell(inputs)
    assert (code, reason) == (7, None)
    assert kube.opened == [("default", "web-0", "app", ("/bin/sh",), 24, 80)]
    assert kube.terminal.written == [b"ls\n", b"exit 7\n"] and kube.terminal.resizes == [(24, 80), (30, 120)]
    assert sent == [{"type": "output", "channel": "stdout", "data": "bye\r\n"}]  # `exit` is the worker's


def test_an_idle_session_ends():
    started = time.monotonic()
    (code, reason), sent, kube = shell(ScriptedInputs(), idle=0.3)
    assert (code, reason) == (None, "idle_timeout") and 0.3 <= time.monotonic() - started < 2
    assert sent == [] and kube.terminal.closed


def test_a_session_ends_at_its_time_limit_and_when_the_client_leaves():
    typing = ScriptedInputs(*((i * 0.05, ShellCommand("input", data="x")) for i in range(100)))
    (_, reason), _, _ = shell(typing, idle=5, limit=0.3)
    assert reason == "session_limit"
    (_, reason), _, _ = shell(ScriptedInputs((0.0, ShellCommand("close"))))
    assert reason == "client_disconnected"


# ---- sessions end when their owner's token stops being valid --------------------------------------


class ManualClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


class Silent:
    def get(self, timeout: float) -> ShellCommand | None:
        return None


def test_the_owner_check_asks_every_interval_then_closes_the_session():
    from kubilitics.services.sessions import OwnerCheck

    clock, asked = ManualClock(), []
    answer: list[str | None] = [None]

    def verdict() -> str | None:
        asked.append(clock.t)
        return answer[0]

    check = OwnerCheck(Silent(), verdict, clock, every=5)
    for t in (1000.0, 1004.9, 1005.0, 1007.0, 1009.9):
        clock.t = t
        assert check.get(0.1) is None
    assert asked == [1005.0]  # not at every keystroke: once per interval
    answer[0] = "token_revoked"
    clock.t = 1010.0
    assert check.get(0.1) == ShellCommand("close") and check.ended == "token_revoked"
    clock.t = 1011.0
    assert check.get(0.1) == ShellCommand("close") and asked == [1005.0, 1010.0]


class BusyTerminal(FakeTerminal):
    """A shell that never stops printing (`yes`, `top`): its idle timer never runs out."""

    printed = False

    def read(self, timeout: float) -> tuple[str, bytes] | None:
        if self.closed:
            raise EOFError
        self.printed = not self.printed  # a line, then a pause (each line goes out as a message)
        time.sleep(0.01)
        return ("stdout", b"y\r\n") if self.printed else None


class EndlessLog:
    """A followed log that keeps printing until closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self):
        n = 0
        while not self.closed.wait(0.01):
            n += 1
            yield f"line {n}"

    def close(self) -> None:
        self.closed.set()


class SessionRecorder:
    """ports.ConnectionNotifier: what was posted and which connections the server closed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.closed: list[str] = []

    def post(self, connection_id: str, message: str) -> bool:
        self.sent.append((connection_id, json.loads(message)))
        return True

    def post_batch(self, connection_id: str, batch: list[str]) -> bool:
        return all(self.post(connection_id, message) for message in batch)

    def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)


class SessionTables:
    """The connections table (connection, pointers), the session queue and the slots, in memory."""

    def __init__(self, connection: Any) -> None:
        self.connections = {connection.connection_id: connection}
        self.pointers: dict[str, Any] = {}
        self.released: list[tuple[str, str]] = []

    def get_connection(self, connection_id: str) -> Any:
        return self.connections.get(connection_id)

    def get_pointer(self, connection_id: str, name: str) -> Any:
        return self.pointers.get(name)

    def delete_pointer(self, connection_id: str, name: str) -> Any:
        return self.pointers.pop(name, None)

    def read(self, session_id: str, after: int) -> list[tuple[int, dict[str, Any]]]:
        return []

    def finish(self, session_id: str) -> None:
        pass

    def release_slot(self, sub: str, category: str) -> None:
        self.released.append((sub, category))


class FollowingPods:
    def __init__(self) -> None:
        self.log = EndlessLog()

    def follow_logs(self, context: Any, namespace: str, name: str, query: Any) -> EndlessLog:
        return self.log


def run_worker(kind: str, ending: str) -> tuple[dict[str, Any], float, SessionRecorder, SessionTables]:
    """Run a busy shell or an endless followed log; end the owner's token the `ending` way after 0.3 s."""
    from kubilitics.auth.tokens import Principal
    from kubilitics.services.realtime_model import Connection, Pointer
    from kubilitics.services.sessions import SessionWorker

    principal = Principal("mia", frozenset({"read", "exec"}), "user", "jti-mia", int(time.time()) + 600)
    connection = Connection.of("c-mia", principal, "ctx", time.time())
    tables, notifier, revoked = SessionTables(connection), SessionRecorder(), threading.Event()
    pointer = "shell" if kind == "shell" else "sub#logs-1"
    tables.pointers[pointer] = Pointer(pointer, kind, session_id="s-1", sub="mia")
    kube = FakeKube(terminal=BusyTerminal())
    worker = SessionWorker(
        kube=kube,  # type: ignore[arg-type]
        pods=FollowingPods(),  # type: ignore[arg-type]
        contexts=lambda name, acting_as: object(),
        store=tables,  # type: ignore[arg-type]
        queue=tables,  # type: ignore[arg-type]
        notifier=notifier,
        rate_limiter=tables,  # type: ignore[arg-type]
        clock=SystemClock(),
        idle_seconds=0.5,  # shorter than the test: only the output keeps the shell from idling out
        poll_seconds=0.01,
        revoked=lambda token: token.jti == "jti-mia" and revoked.is_set(),
        token_check_seconds=0.1,
    )
    if kind == "shell":
        spec = SPEC.to_dict()
    else:
        spec = {
            "context": "ctx",
            "subscription_id": "logs-1",
            "namespace": "default",
            "pod_name": "web-0",
            "container": "app",
            "tail_lines": 10,
            "timestamps": False,
            "since_time": None,
            "until_time": None,
            "search": None,
        }
    payload = {
        "kind": kind,
        "session_id": "s-1",
        "connection_id": "c-mia",
        "sub": "mia",
        "pointer": pointer,
        "spec": spec,
    }
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(worker.run(payload)), daemon=True)
    runner.start()
    time.sleep(1.0)
    assert runner.is_alive(), outcome  # the output keeps it going past its idle time
    ended_at = time.monotonic()
    if ending == "revoked":
        revoked.set()
    elif ending == "expired":
        tables.connections["c-mia"] = Connection.of(
            "c-mia", Principal("mia", frozenset({"read", "exec"}), "user", "jti-mia", int(time.time())),
            "ctx", time.time(),
        )  # fmt: skip
    else:  # the relay or a $disconnect removed the connection
        del tables.connections["c-mia"]
    runner.join(timeout=10)
    assert not runner.is_alive()
    return outcome, time.monotonic() - ended_at, notifier, tables


@pytest.mark.parametrize("kind", ["shell", "logs"])
@pytest.mark.parametrize(("ending", "code"), [("revoked", "token_revoked"), ("expired", "token_expired")])
def test_a_running_session_ends_when_its_token_is_revoked_or_expires(kind, ending, code):
    outcome, took, notifier, tables = run_worker(kind, ending)
    assert outcome["reason"] == code and took < 2  # the next check (every 0.1 s here, 5 s for real)
    last = notifier.sent[-1][1]
    # As the WebSocket service and the watch relay end such a connection: an ERROR, then a close.
    assert (last["type"], last["status"], last["error"]["error"]) == ("ERROR", 401, code)
    assert last["subscription_id"] == (None if kind == "shell" else "logs-1")
    assert notifier.closed == ["c-mia"]
    assert not [m for _, m in notifier.sent if m["type"] in ("exit", "log_end")]
    # Cleaned up as any session: the slot is given back, the pointer is gone.
    assert tables.released == [("mia", "shells" if kind == "shell" else "logs")]
    assert tables.pointers == {}


def test_a_session_whose_connection_is_gone_ends_quietly():
    outcome, took, notifier, tables = run_worker("shell", "gone")
    assert outcome["reason"] == "client_disconnected" and took < 2
    assert not [m for _, m in notifier.sent if m["type"] != "output"] and notifier.closed == []
    assert tables.released == [("mia", "shells")]


# ---- session input order --------------------------------------------------------------------------


class SlowQueue:
    """A session queue whose writes become visible out of order (two Lambda instances racing)."""

    def __init__(self) -> None:
        self.visible: dict[int, dict[str, Any]] = {}

    def read(self, session_id: str, after: int) -> list[tuple[int, dict[str, Any]]]:
        return sorted((seq, c) for seq, c in self.visible.items() if seq > after)


def test_queued_input_waits_for_a_missing_number_then_keeps_order():
    store = SlowQueue()
    inputs = QueuedInputs(store, "sh-1", SystemClock(), fast_poll=0.01, gap_seconds=0.5)  # type: ignore[arg-type]
    store.visible[2] = {"type": "input", "data": "b"}
    assert inputs.get(timeout=0.1) is None  # 1 is still being written: 2 waits
    store.visible[1] = {"type": "input", "data": "a"}
    assert [inputs.get(0.1), inputs.get(0.1)] == [ShellCommand("input", "a"), ShellCommand("input", "b")]
    store.visible[4] = {"type": "input", "data": "d"}  # 3 never arrives
    assert inputs.get(timeout=0.2) is None
    assert inputs.get(timeout=1.0) == ShellCommand("input", "d")


# ---- the relay: 410 Gone and resync ---------------------------------------------------------------


def pod(name: str, rv: int) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": str(rv)},
    }


def line(kind: str, obj: dict[str, Any]) -> str:
    return json.dumps({"type": kind, "object": obj})


class ScriptedStream:
    def __init__(self, lines: list[str], hold: bool):
        self._lines, self._hold, self._closed = lines, hold, threading.Event()

    def open(self) -> None:
        pass

    def __iter__(self):
        yield from self._lines
        if self._hold:
            self._closed.wait()

    def close(self) -> None:
        self._closed.set()


@dataclass(frozen=True)
class PodType:
    group: str = ""
    version: str = "v1"
    kind: str = "Pod"
    plural: str = "pods"
    namespaced: bool = True
    verbs: tuple[str, ...] = ("list", "watch")

    def path(self, namespace: str | None = None) -> str:
        return f"/api/v1/namespaces/{namespace}/pods"


class ScriptedKube:
    """Lists at exact resourceVersions and a sequence of watch streams, as an API server would serve."""

    def __init__(
        self,
        exact: dict[str, list[dict[str, Any]]],
        current: tuple[str, list[dict[str, Any]]],
        watches: list[list[str]],
    ):
        self.exact, self.current, self.watches = exact, current, deque(watches)
        self.watched_from: list[str] = []

    def resource_types(self, context: Any) -> list[PodType]:
        return [PodType()]

    def resource_type(self, context: Any, kind: str) -> PodType:
        return PodType()

    def list_objects(self, context, rtype, *, namespace=None, label_selector=None, limit=None, **_: Any):
        return {"metadata": {"resourceVersion": "100"}, "items": []}

    def get_path(self, context: Any, path: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        if params.get("resourceVersionMatch") == "Exact":
            return {
                "metadata": {"resourceVersion": params["resourceVersion"]},
                "items": self.exact[params["resourceVersion"]],
            }
        return {"metadata": {"resourceVersion": self.current[0]}, "items": self.current[1]}

    def watch_objects(self, context, rtype, *, namespace, label_selector, resource_version, timeout_seconds):
        self.watched_from.append(resource_version)
        return ScriptedStream(self.watches.popleft() if self.watches else [], hold=not self.watches)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def post(self, connection_id: str, message: str) -> bool:
        self.sent.append((connection_id, json.loads(message)))
        return True

    def post_batch(self, connection_id: str, batch: list[str]) -> bool:
        return all(self.post(connection_id, message) for message in batch)

    def close(self, connection_id: str) -> None:
        pass


def test_a_watch_that_expires_is_resumed_by_a_list_and_what_changed_is_sent_once(aws):
    from kubilitics.adapters.dynamodb import DynamoRealtimeStore
    from kubilitics.auth.tokens import Principal
    from kubilitics.services.realtime_model import Connection
    from kubilitics.services.watch import RelayOptions, Subscriptions, WatchRelay

    store = DynamoRealtimeStore("kubilitics-connections")
    kube = ScriptedKube(
        exact={"100": [pod("a", 90), pod("b", 95), pod("c", 99)]},
        current=("200", [pod("a", 150), pod("b", 95), pod("d", 180)]),
        watches=[
            [
                line("MODIFIED", pod("a", 101)),
                json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410}}),
            ],
            [line("BOOKMARK", {"metadata": {"resourceVersion": "205"}}), line("ADDED", pod("e", 210))],
        ],
    )
    principal = Principal("zoe", frozenset({"read"}), "user", "jti-1", int(time.time()) + 600)
    connection = Connection.of("c-1", principal, "ctx", time.time())
    store.put_connection(connection)
    service_context = ContextConfig("ctx", "ctx", "https://127.0.0.1:6443")  # service mode: no review
    access = AccessReviews(kube, SystemClock())  # type: ignore[arg-type]
    Subscriptions(store, kube, lambda caller, name: service_context, access).subscribe(  # type: ignore[arg-type]
        connection,
        Subscribe(action="subscribe", resource_kind="Pod", namespace="default", subscription_id="s"),
    )
    notifier = Recorder()
    relay = WatchRelay(store, kube, lambda name: object(), notifier, SystemClock(), "relay-1", RelayOptions())  # type: ignore[arg-type]
    report = relay.run(deadline=time.time() + 1.5)

    received = [
        (m["type"], m["resource"]["metadata"]["name"], m["resource"]["metadata"]["resourceVersion"])
        for _, m in notifier.sent
    ]
    assert received == [
        ("MODIFIED", "a", "101"),
        ("MODIFIED", "a", "150"),  # the resync: changed since the watch last saw it
        ("ADDED", "d", "180"),  # new
        ("DELETED", "c", "99"),  # gone, sent as last known
        ("ADDED", "e", "210"),
    ]
    assert kube.watched_from == ["100", "200"] and report["resyncs"] == 1
    assert store.get_set(store.list_sets()[0].key).checkpoint_rv == "210"
