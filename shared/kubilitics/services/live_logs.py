"""Live logs over the WebSocket API: one container followed with the REST logs endpoint's filters.

The filters (container, tail_lines, timestamps, since_time, until_time, search) are those of
`GET /api/v1/pods/{namespace}/{name}/logs`, applied by the same code (services.pods). Each line is a
`log` message; `log_end` says why the stream stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from kubilitics.ports import Clock
from kubilitics.services import realtime_messages as messages
from kubilitics.services.pods import LogQuery, PodService
from kubilitics.services.realtime_messages import Logs
from kubilitics.services.shell import SessionInputs


@dataclass(frozen=True)
class LogsSpec:
    context: str
    subscription_id: str
    namespace: str
    pod_name: str
    container: str | None
    tail_lines: int
    timestamps: bool
    since_time: str | None
    until_time: str | None
    search: str | None
    # The caller the session streams as (their RBAC), as a record; None: the service's identity.
    acting_as: dict[str, Any] | None = None

    @classmethod
    def of(
        cls, context: str, subscription_id: str, request: Logs, acting_as: dict[str, Any] | None = None
    ) -> LogsSpec:
        return cls(
            context=context,
            subscription_id=subscription_id,
            namespace=request.namespace,
            pod_name=request.pod_name,
            container=request.container,
            tail_lines=request.tail_lines,
            timestamps=request.timestamps,
            since_time=request.since_time,
            until_time=request.until_time,
            search=request.search,
            acting_as=acting_as,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LogsSpec:
        fields: dict[str, Any] = {name: raw.get(name) for name in cls.__dataclass_fields__}
        return cls(**fields)

    def query(self) -> LogQuery:
        """The REST endpoint's query (400 invalid_parameter on a bad time, as there)."""
        return LogQuery.parse(
            container=self.container,
            tail_lines=self.tail_lines,
            timestamps=self.timestamps,
            since_time=self.since_time,
            until_time=self.until_time,
            search=self.search,
        )


def open_follow(pods: PodService, context: Any, spec: LogsSpec) -> Any:
    """The followed, filtered log; a missing pod or container raises here, before any line is sent."""
    return pods.follow_logs(context, spec.namespace, spec.pod_name, spec.query())


def snapshot(pods: PodService, context: Any, spec: LogsSpec) -> list[str]:
    """The lines there are now (for `follow: false`)."""
    text = pods.logs(context, spec.namespace, spec.pod_name, spec.query())
    return text.splitlines()


def stream_lines(
    follow: Any,
    spec: LogsSpec,
    emit: Callable[[str], bool],
    inputs: SessionInputs,
    clock: Clock,
    max_seconds: float | None = None,
) -> str:
    """Send every line until the log ends or the client stops it; the reason (the caller sends `log_end`)."""
    outcome: dict[str, str] = {}

    def pump() -> None:
        for line in follow:
            if not emit(messages.log_line(spec.subscription_id, line)):
                outcome.setdefault("reason", "client_disconnected")
                return
        outcome.setdefault("reason", "log_ended")

    reader = threading.Thread(target=pump, name="live-logs", daemon=True)
    reader.start()
    started = clock.now()
    while reader.is_alive():
        command = inputs.get(timeout=0.2)
        if command is not None and command.type in ("close", "exit"):
            outcome.setdefault("reason", "client_disconnected" if command.type == "close" else "unsubscribed")
            break
        if max_seconds is not None and clock.now() - started >= max_seconds:
            outcome.setdefault("reason", "session_limit")
            break
    follow.close()
    reader.join(timeout=5)
    return outcome.get("reason", "log_ended")
