"""Pod logs and exec (reference section 5; spec-decisions 1 and 9).

Logs are always fetched from the API server with timestamps: `until_time` and a precise `since_time`
are filtered here on those timestamps, and they are stripped again when the caller asked for none.
Exec runs one command at a time per pod, across every instance, behind a lease in DynamoDB.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubilitics.errors import InvalidParameter, KubiliticsError, NotFound
from kubilitics.kube_paths import segment
from kubilitics.ports import Clock, KubernetesPort, LeaseStore, LogStream

log = logging.getLogger(__name__)

MAX_TAIL_LINES = 10_000
# With `search` or `until_time` the filter runs here, over at most this many of the newest lines.
SCAN_LINES = 50_000
MAX_EXEC_TIMEOUT_SECONDS = 300
# Both keep an answer under Lambda's 6 MB response limit: exec output per stream, and a log read
# (its newest lines are kept).
MAX_OUTPUT_CHARS = 1_048_576
MAX_LOG_CHARS = 5_000_000
# A lease outlives the command's deadline by this much, so a crashed holder frees the pod soon after.
LEASE_MARGIN_SECONDS = 5.0

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$")


def rfc3339_ns(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time (the API server writes nanoseconds)."""
    match = _RFC3339.match(text)
    if not match:
        return None
    day, clock, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{'+00:00' if zone in 'Zz' else zone}")
    except ValueError:
        return None
    return int(moment.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def _rfc3339_seconds(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LogQuery:
    container: str | None = None
    tail_lines: int = 100
    timestamps: bool = True
    since_ns: int | None = None
    until_ns: int | None = None
    search: str | None = None
    previous: bool = False

    @classmethod
    def parse(
        cls,
        *,
        container: str | None = None,
        tail_lines: int = 100,
        timestamps: bool = True,
        since_time: str | None = None,
        until_time: str | None = None,
        search: str | None = None,
        previous: bool = False,
    ) -> LogQuery:
        """The query from request parameters; a bad time is a 400 `invalid_parameter`."""
        since_ns, until_ns = _time_param("since_time", since_time), _time_param("until_time", until_time)
        if since_ns is not None and until_ns is not None and since_ns > until_ns:
            raise InvalidParameter(
                "since_time is after until_time",
                details={"parameter": "since_time", "since_time": since_time, "until_time": until_time},
            )
        return cls(container or None, tail_lines, timestamps, since_ns, until_ns, search or None, previous)

    def line_filter(self) -> LineFilter:
        return LineFilter(self.since_ns, self.until_ns, self.search, self.timestamps)


def _time_param(name: str, value: str | None) -> int | None:
    if value is None or value == "":
        return None
    ns = rfc3339_ns(value.strip())
    if ns is None:
        raise InvalidParameter(
            f"{name} must be an RFC 3339 time such as 2026-02-10T14:23:45Z",
            details={"parameter": name, "value": value},
        )
    return ns


@dataclass(frozen=True)
class LineFilter:
    """Applies the time window and the search to lines that start with the API server's timestamp."""

    since_ns: int | None
    until_ns: int | None
    search: str | None
    timestamps: bool
    _needle: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "_needle", (self.search or "").casefold())

    def past_until(self, raw: str) -> bool:
        stamp = rfc3339_ns(raw.partition(" ")[0])
        return self.until_ns is not None and stamp is not None and stamp > self.until_ns

    def render(self, raw: str) -> str | None:
        """The line as the caller sees it, or None when a filter drops it."""
        stamp_text, _, message = raw.partition(" ")
        stamp = rfc3339_ns(stamp_text)
        if stamp is None:  # not a timestamped line: nothing to filter on but the text
            stamp_text, message = "", raw
        elif (self.since_ns is not None and stamp < self.since_ns) or (
            self.until_ns is not None and stamp > self.until_ns
        ):
            return None
        if self._needle and self._needle not in message.casefold():
            return None
        return raw if self.timestamps or not stamp_text else message


class LogFollow:
    """A followed log, filtered: the lines to send, ending when the log ends or passes `until_time`."""

    def __init__(self, stream: LogStream, line_filter: LineFilter, namespace: str, name: str):
        self._stream = stream
        self._filter = line_filter
        self._pod = (namespace, name)

    def __iter__(self) -> Iterator[str]:
        with _pod_errors(*self._pod):
            for raw in self._stream:
                if self._filter.past_until(raw):
                    break
                line = self._filter.render(raw)
                if line is not None:
                    yield line

    def close(self) -> None:
        self._stream.close()


class SnapshotFollow:
    """A "follow" that can only return what is there (the window ended before the request)."""

    def __init__(self, lines: list[str]):
        self._lines = lines

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    def close(self) -> None:
        self._lines = []


@dataclass(frozen=True)
class ExecRequest:
    command: list[str]
    container: str | None = None
    timeout_seconds: float = 30
    working_dir: str | None = None
    environment: dict[str, str] = field(default_factory=dict)


def wrap_command(command: list[str], working_dir: str | None, environment: dict[str, str]) -> list[str]:
    """The argv that runs `command` in `working_dir` with `environment` added (exec has neither).

    The directory and the command travel as positional parameters, never through the shell's parser,
    so nothing in them is interpreted. Needs `env` and `sh` in the container when used.
    """
    argv = list(command)
    if working_dir:
        argv = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "kubilitics-exec", working_dir, *argv]
    if environment:
        argv = ["env", *(f"{key}={value}" for key, value in sorted(environment.items())), *argv]
    return argv


def exec_lease_name(context: str, namespace: str, pod: str) -> str:
    """The lease that serializes commands in one pod (across every instance)."""
    return f"exec/{context}/{namespace}/{pod}"


class PodService:
    def __init__(
        self,
        kube: KubernetesPort,
        leases: LeaseStore,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._kube = kube
        self._leases = leases
        self._clock = clock
        self._sleep = sleep

    # ---- logs ------------------------------------------------------------------------------

    def logs(self, context: Any, namespace: str, name: str, query: LogQuery) -> str:
        container = self._container(self._pod(context, namespace, name), query.container, namespace, name)
        return "".join(f"{line}\n" for line in self._snapshot(context, namespace, name, container, query))

    def follow_logs(
        self, context: Any, namespace: str, name: str, query: LogQuery
    ) -> LogFollow | SnapshotFollow:
        """The log, then every new line as it is written.

        `tail_lines` picks the lines already there, before `search` applies to them.
        """
        container = self._container(self._pod(context, namespace, name), query.container, namespace, name)
        if query.until_ns is not None and query.until_ns <= self._clock.now() * 1e9:
            return SnapshotFollow(self._snapshot(context, namespace, name, container, query))
        # Not opened here: an API server may send no headers until the first line (kwok does).
        stream = self._kube.follow_pod_logs(
            context, namespace, name, self._params(container, query, query.tail_lines)
        )
        return LogFollow(stream, query.line_filter(), namespace, name)

    def _snapshot(
        self, context: Any, namespace: str, name: str, container: str, query: LogQuery
    ) -> list[str]:
        if query.tail_lines == 0:
            return []
        scan = query.search is not None or query.until_ns is not None
        params = self._params(container, query, SCAN_LINES if scan else query.tail_lines)
        with _pod_errors(namespace, name):
            text = self._kube.pod_logs(context, namespace, name, params)
        line_filter = query.line_filter()
        raw_lines = text.split("\n")
        if raw_lines and raw_lines[-1] == "":
            raw_lines.pop()
        lines = [line for line in map(line_filter.render, raw_lines) if line is not None]
        return _newest_within(lines[-query.tail_lines :], MAX_LOG_CHARS)

    @staticmethod
    def _params(container: str, query: LogQuery, tail_lines: int) -> dict[str, Any]:
        return {
            "container": container,
            "timestamps": "true",
            "tailLines": tail_lines,
            "previous": "true" if query.previous else None,
            # whole seconds on the wire; the exact cut is made here on each line's timestamp
            "sinceTime": _rfc3339_seconds(query.since_ns) if query.since_ns is not None else None,
        }

    # ---- exec ------------------------------------------------------------------------------

    def exec(self, context: Any, namespace: str, name: str, request: ExecRequest) -> dict[str, Any]:
        """Run the command; a non-zero exit is a 500 `exec_failed` carrying the same fields."""
        deadline = time.monotonic() + request.timeout_seconds
        container = self._container(self._pod(context, namespace, name), request.container, namespace, name)
        argv = wrap_command(request.command, request.working_dir, request.environment)
        lease, owner = exec_lease_name(context.name, namespace, name), uuid.uuid4().hex
        self._wait_for_lease(lease, owner, deadline, namespace, name)
        started = time.monotonic()
        try:
            with _pod_errors(namespace, name):
                result = self._kube.exec(
                    context,
                    namespace,
                    name,
                    container,
                    argv,
                    timeout=max(0.1, deadline - started),
                    max_output_chars=MAX_OUTPUT_CHARS,  # cut while it streams: memory stays bounded
                )
            elapsed_ms = _ms_since(started)
        except KubiliticsError as exc:
            if exc.code == "exec_failed":
                exc.extra["execution_time_ms"] = _ms_since(started)
                if exc.details.get("reason") == "timeout":  # say the caller's timeout, not what was left
                    exc.message = f"Command did not finish within {request.timeout_seconds:g} s"
                    exc.details["timeout_seconds"] = request.timeout_seconds
            raise
        finally:
            self._release(lease, owner)
        stdout, stdout_cut = _capped(result.stdout, getattr(result, "stdout_truncated", False))
        stderr, stderr_cut = _capped(result.stderr, getattr(result, "stderr_truncated", False))
        body = {
            "exit_code": result.exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "execution_time_ms": elapsed_ms,
            "pod": name,
            "container": container,
            "truncated": stdout_cut or stderr_cut,
        }
        if result.exit_code != 0:
            raise KubiliticsError(
                f"Command exited with code {result.exit_code}",
                code="exec_failed",
                details={"reason": "non_zero_exit", "exit_code": result.exit_code},
                extra=body,
            )
        return body

    def _wait_for_lease(self, lease: str, owner: str, deadline: float, namespace: str, name: str) -> None:
        """One command at a time per pod: wait for the earlier one, at most until our deadline."""
        pause = 0.05
        while True:
            now = self._clock.now()
            lease_until = now + max(0.0, deadline - time.monotonic()) + LEASE_MARGIN_SECONDS
            if self._leases.acquire(lease, owner, lease_until, now):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise KubiliticsError(
                    f"Another command is still running in pod {namespace}/{name}",
                    code="resource_conflict",
                    details={"reason": "exec_in_progress", "namespace": namespace, "pod_name": name},
                    headers={"Retry-After": "1"},
                )
            self._sleep(min(pause, left))
            pause = min(pause * 2, 0.5)

    def _release(self, lease: str, owner: str) -> None:
        try:
            self._leases.release(lease, owner)
        except KubiliticsError as exc:
            # The command's outcome stands; the lease runs out by itself shortly after its deadline.
            log.warning("exec lease %s not released: %r", lease, exc)

    # ---- shared ----------------------------------------------------------------------------

    def _pod(self, context: Any, namespace: str, name: str) -> dict[str, Any]:
        with _pod_errors(namespace, name):
            return self._kube.get_path(
                context, f"/api/v1/namespaces/{segment(namespace)}/pods/{segment(name)}"
            )

    @staticmethod
    def _container(pod: dict[str, Any], requested: str | None, namespace: str, name: str) -> str:
        spec = pod.get("spec") or {}
        main = [c["name"] for c in spec.get("containers") or []]
        init = [c["name"] for c in spec.get("initContainers") or []]
        ephemeral = [c["name"] for c in spec.get("ephemeralContainers") or []]
        details = {"parameter": "container", "namespace": namespace, "pod_name": name,
                   "containers": main, "init_containers": init}  # fmt: skip
        if requested is None:
            if len(main) == 1:
                return main[0]
            raise InvalidParameter(
                f"Pod {namespace}/{name} has {len(main)} containers; choose one with the container "
                f"parameter: {', '.join(main)}",
                details=details,
            )
        if requested not in (*main, *init, *ephemeral):
            raise InvalidParameter(
                f"Container {requested!r} is not in pod {namespace}/{name}", details=details
            )
        return requested


@contextmanager
def _pod_errors(namespace: str, name: str) -> Iterator[None]:
    """A 404 from any call about the pod is the reference's not_found for that pod (spec-decisions 1)."""
    try:
        yield
    except KubiliticsError as exc:
        if exc.code != "not_found":
            raise
        raise NotFound(
            f"Pod {namespace}/{name} not found", details={"namespace": namespace, "pod_name": name}
        ) from exc


def _newest_within(lines: list[str], budget: int) -> list[str]:
    """The newest lines whose text (with newlines) fits in `budget` characters."""
    kept = 0
    for index in range(len(lines) - 1, -1, -1):
        kept += len(lines[index]) + 1
        if kept > budget:
            return lines[index + 1 :]
    return lines


def _capped(text: str, cut_already: bool = False) -> tuple[str, bool]:
    """The first MAX_OUTPUT_CHARS characters, and whether there were more (the gateway may have cut)."""
    return (text[:MAX_OUTPUT_CHARS], True) if len(text) > MAX_OUTPUT_CHARS else (text, cut_already)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
