"""The ports services depend on. Adapters implement them; tests may substitute in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class RateLimitStore(Protocol):
    def increment_window(self, key: str, expires_at: int, usage: Any = None) -> int:
        """Add one to the counter `key` atomically and return the new value. `usage`
        (services.ratelimit.UsageMark) is stored on the same item for engagement analytics."""
        ...

    def acquire_slot(self, key: str, limit: int, lease_until: int) -> bool:
        """Take one of `limit` concurrency slots atomically; False when all are taken."""
        ...

    def release_slot(self, key: str) -> None: ...

    def reset_stale_slots(self, key: str, now: int, lease_until: int) -> bool:
        """Start `key` afresh at one holder if its lease ran out (leaked slots); True if reset."""
        ...


class RevocationStore(Protocol):
    def is_revoked(self, jti: str) -> bool: ...

    def revoke(self, jti: str, expires_at: int, revoked_by: str) -> None: ...

    def subject_revoked_before(self, sub: str) -> int:
        """The subject's tokens issued before this Unix time are revoked (0: none)."""
        ...

    def revoke_subject(self, sub: str, before: int, revoked_by: str) -> None:
        """Revoke the subject's tokens issued before `before` (a later cutoff is never moved back)."""
        ...


class LeaseStore(Protocol):
    """Named leases shared by every instance (e.g. one command at a time per pod)."""

    def acquire(self, name: str, owner: str, lease_until: float, now: float) -> bool:
        """Take the lease if it is free or its holder's lease ran out; False while someone holds it."""
        ...

    def release(self, name: str, owner: str) -> None:
        """Give the lease back (only if `owner` still holds it)."""
        ...


class LogStream(Protocol):
    """Lines of a followed log; `close()` may be called from another thread to end it."""

    def __iter__(self) -> Iterator[str]: ...

    def __next__(self) -> str: ...

    def close(self) -> None: ...


class HealthProbe(Protocol):
    """Something /health can check: returns a dict of facts or raises."""

    def __call__(self) -> dict[str, Any]: ...


class ClusterInfoSource(Protocol):
    """What health and version need from a Kubernetes context."""

    def version(self, context: str | None, timeout: float) -> dict[str, Any]: ...

    def node_count(self, context: str | None, timeout: float) -> int: ...

    def cluster_name(self, context: str | None) -> str | None: ...


class KubernetesPort(Protocol):
    """What services need from a cluster (implemented by adapters.kubernetes.KubernetesGateway).

    `context` is a resolved kubeconfig context (adapters.kubeconfig.ContextConfig); `rtype` a
    discovered kind (adapters.kubernetes.ResourceType). Objects are raw Kubernetes JSON (dicts).
    """

    timeout: float

    def resource_types(self, context: Any, *, max_age: float = ...) -> list[Any]: ...

    def resource_type(self, context: Any, kind: str) -> Any: ...

    def list_objects(
        self,
        context: Any,
        rtype: Any,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        timeout: float | None = None,
        rows_only: bool = False,
        raw_items: bool = False,
    ) -> dict[str, Any]: ...

    def get(self, context: Any, rtype: Any, namespace: str | None, name: str) -> dict[str, Any]: ...

    def create(
        self, context: Any, rtype: Any, namespace: str | None, body: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]: ...

    def replace(
        self,
        context: Any,
        rtype: Any,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        dry_run: bool = False,
    ) -> dict[str, Any]: ...

    def patch(
        self,
        context: Any,
        rtype: Any,
        namespace: str | None,
        name: str,
        body: Any,
        patch_type: str,
        dry_run: bool = False,
    ) -> dict[str, Any]: ...

    def delete(
        self,
        context: Any,
        rtype: Any,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        propagation: str = "Background",
        dry_run: bool = False,
        uid: str | None = None,  # delete only the object with this uid (409 resource_conflict otherwise)
    ) -> dict[str, Any]: ...

    def get_path(
        self, context: Any, path: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]: ...

    def list_metadata(
        self, context: Any, path: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]: ...

    def list_table(
        self, context: Any, path: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]: ...

    def may(self, context: Any, verb: str, rtype: Any, namespace: str | None) -> bool: ...

    def pod_logs(self, context: Any, namespace: str, name: str, params: dict[str, Any]) -> str: ...

    def follow_pod_logs(
        self, context: Any, namespace: str, name: str, params: dict[str, Any], read_timeout: float = ...
    ) -> LogStream: ...

    def exec(
        self,
        context: Any,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        timeout: float,
        max_output_chars: int | None = None,
    ) -> Any:
        """Run a command; each stream keeps its first `max_output_chars` characters (`*_truncated`)."""
        ...

    def open_exec(
        self,
        context: Any,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        *,
        stdin: bool,
        tty: bool,
    ) -> Any:
        """An exec WebSocket (v4.channel.k8s.io): a context manager with send(bytes) and recv(timeout)."""
        ...

    def open_terminal(
        self,
        context: Any,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        *,
        rows: int,
        cols: int,
    ) -> Any:
        """An interactive exec session (adapters.kubernetes.ExecSession): write, resize, read, exit_code."""
        ...

    def watch_objects(
        self,
        context: Any,
        rtype: Any,
        *,
        namespace: str | None,
        label_selector: str | None,
        resource_version: str,
        timeout_seconds: int,
    ) -> LogStream:
        """Watch events (one JSON document per line) after `resource_version`, bookmarks included."""
        ...


# -- AI: providers, budget ledger, configuration ------------------------------------------------


class BudgetMeter(Protocol):
    """The budget ledger bound to one caller (kubilitics.ai.budget.BudgetMeter): every LLM call
    reserves its worst case before it is sent and settles its real usage after it returns."""

    def reserve(self, *, model: str, max_input_tokens: int, max_output_tokens: int) -> Any:
        """Returns a reservation; raises TokenBudgetExhausted when it does not fit."""
        ...

    def settle(
        self, reservation: Any, *, input_tokens: int, output_tokens: int, success: bool, latency_ms: int
    ) -> Any: ...


class AIProvider(Protocol):
    """An LLM (or the offline explainer) behind one interface (kubilitics.ai.providers).

    `run` redacts everything it sends, executes the model's read-only tool calls through
    `call_tool`, bounds the turns, and meters every call through `meter`.
    """

    name: str
    model: str | None

    def run(
        self,
        request: Any,
        *,
        meter: BudgetMeter,
        tools: Sequence[Any] = (),
        call_tool: Callable[[str, dict[str, Any]], Any] | None = None,
        redactor: Any = None,
    ) -> Any: ...


class BudgetStore(Protocol):
    """Month ledgers and usage records (adapters.dynamodb.DynamoBudgetStore). Amounts are integers
    (micro-USD and tokens)."""

    def reserve(
        self,
        month: str,
        reservation_id: str,
        *,
        cost: int,
        tokens: int,
        max_committed_cost: int,
        max_committed_tokens: int,
        created_at: float,
        expires_at: int,
    ) -> bool:
        """Add to `committed` only if it stays within the maxima, atomically; False if it does not fit."""
        ...

    def settle(
        self,
        month: str,
        reservation_id: str,
        *,
        reserved_cost: int,
        reserved_tokens: int,
        cost: int,
        tokens: int,
        success: bool,
        at: float,
        expires_at: int,
    ) -> dict[str, Any]:
        """Swap the reservation for the real usage; returns the month's new totals."""
        ...

    def totals(self, month: str) -> dict[str, Any]: ...

    def reservations(self, month: str) -> list[dict[str, Any]]: ...

    def release(self, month: str, reservation_id: str, *, cost: int, tokens: int) -> bool: ...

    def mark_alert(self, month: str, threshold: int, at: float) -> bool:
        """Record that `threshold` was crossed; False if it was recorded already."""
        ...

    def put_usage(self, month: str, record: dict[str, Any], expires_at: int) -> None: ...

    def usage(self, month: str, start: float, end: float) -> list[dict[str, Any]]: ...


class AiConfigStore(Protocol):
    """The stored AI configuration overrides (a JSON document) with optimistic versioning."""

    def load(self) -> tuple[dict[str, Any], int]:
        """(overrides, version); ({}, 0) when nothing is stored."""
        ...

    def save(self, overrides: dict[str, Any], expected_version: int, updated_by: str, at: float) -> bool:
        """False when someone else saved since `expected_version` was read."""
        ...


class SecretValueStore(Protocol):
    """One secret's value (the AI provider key in Secrets Manager)."""

    def get(self) -> str | None: ...

    def put(self, value: str) -> None: ...


# -- Real time: WebSocket connections, watch sets, session queues ------------------------------


class ConnectionNotifier(Protocol):
    """Pushes messages to WebSocket connections (API Gateway's post_to_connection, or local sockets)."""

    def post(self, connection_id: str, message: str) -> bool:
        """Send one text message; False when the connection is gone (API Gateway's 410)."""
        ...

    def post_batch(self, connection_id: str, messages: list[str]) -> bool:
        """Send several messages in order (one hand-off where the transport allows it)."""
        ...

    def close(self, connection_id: str) -> None: ...


class RealtimeStore(Protocol):
    """Connections, their subscriptions, the watch sets they share, and the relay's lease.

    Implemented by adapters.dynamodb.DynamoRealtimeStore; the records are services.realtime_model's.
    """

    def put_connection(self, connection: Any) -> None: ...

    def get_connection(self, connection_id: str) -> Any: ...

    def get_connections(self, connection_ids: list[str]) -> list[Any]:
        """The registered ones among `connection_ids` (in batches: the relay checks many at once)."""
        ...

    def delete_connection(self, connection_id: str) -> list[Any]:
        """Remove the connection, its subscriptions and pointers; returns the pointers it had."""
        ...

    def add_subscription(
        self,
        connection_id: str,
        subscription_id: str,
        watch_set: Any,
        initial_rv: Callable[[], str],
        expires_at: int,
        *,
        owner: str = "",
        max_per_connection: int | None = None,
        max_per_user: int | None = None,
    ) -> str:
        """Store a subscription; returns the resourceVersion after which its events are delivered.

        429 rate_limit_exceeded when the connection already holds `max_per_connection` watch
        subscriptions, or `owner` holds `max_per_user` across their connections.
        """
        ...

    def put_pointer(self, connection_id: str, pointer: Any, expires_at: int) -> None: ...

    def get_pointer(self, connection_id: str, name: str) -> Any: ...

    def delete_pointer(self, connection_id: str, name: str) -> Any: ...

    def list_sets(self) -> list[Any]: ...

    def get_set(self, key: str) -> Any: ...

    def list_members(self, key: str) -> list[Any]: ...

    def checkpoint(self, key: str, resource_version: str, at: float, epoch: int) -> bool: ...

    def delete_set_if_unused(self, key: str, generation: int) -> bool: ...

    def acquire_lease(self, owner: str, now: float, lease_until: float, ends_at: float) -> int | None:
        """Take the relay lease if free or expired; the new fencing epoch, or None while held."""
        ...

    def renew_lease(self, owner: str, lease_until: float) -> bool: ...

    def release_lease(self, owner: str) -> None: ...

    def read_lease(self) -> dict[str, Any] | None: ...


class SessionQueue(Protocol):
    """Client input for a shell or live-log session held by another process (the session Lambda)."""

    def append(self, session_id: str, command: dict[str, Any]) -> int:
        """Queue one command; its sequence number. 404 not_found when the session has ended."""
        ...

    def read(self, session_id: str, after: int) -> list[tuple[int, dict[str, Any]]]: ...

    def open(self, session_id: str, connection_id: str, expires_at: int) -> None: ...

    def finish(self, session_id: str) -> None: ...


class AsyncInvoker(Protocol):
    def invoke_async(self, function: str, payload: dict[str, Any]) -> None: ...


# -- Investigations (Step Functions) and remediation actions -----------------------------------


class WorkflowStarter(Protocol):
    """Starts a named execution of the investigation workflow (adapters.stepfunctions)."""

    def start(self, name: str, payload: dict[str, Any]) -> str:
        """Start the execution `name` (unique: the investigation id) with `payload`; its id (ARN)."""
        ...


class InvestigationStore(Protocol):
    """Investigation records, their details and their large documents (adapters.dynamodb)."""

    def create(self, record: dict[str, Any]) -> None: ...

    def get(self, investigation_id: str) -> dict[str, Any] | None: ...

    def update(self, investigation_id: str, fields: dict[str, Any]) -> None:
        """Set these fields of the record (a `status` moves it between the status listings)."""
        ...

    def claim_slot_release(self, investigation_id: str) -> bool:
        """True exactly once per investigation: the caller gives the concurrency slot back."""
        ...

    def list(self, statuses: Sequence[str]) -> list[dict[str, Any]]: ...

    def count(self, status: str) -> int: ...

    def put_detail(self, investigation_id: str, detail: dict[str, Any], expires_at: int) -> None: ...

    def details(self, investigation_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def put_document(self, investigation_id: str, name: str, document: Any, expires_at: int) -> int:
        """Store a JSON document of any size (compressed, in chunks); its compressed size in bytes."""
        ...

    def get_document(self, investigation_id: str, name: str) -> Any: ...


class ActionStore(Protocol):
    """Proposed actions and their audit trail (adapters.dynamodb)."""

    def put(self, action: dict[str, Any]) -> None: ...

    def get(self, action_id: str) -> dict[str, Any] | None: ...

    def transition(
        self,
        action_id: str,
        from_status: str,
        to_status: str,
        fields: dict[str, Any],
        *,
        open_until_after: float | None = None,
        execution_status: str | None = None,
    ) -> bool:
        """Move the action from `from_status` to `to_status` atomically (False if it is not in
        `from_status`, or, with `open_until_after`, if its approval window closed before then, or,
        with `execution_status`, if its execution_status is another)."""
        ...

    def update(self, action_id: str, fields: dict[str, Any]) -> None: ...

    def list_status(self, status: str) -> list[dict[str, Any]]: ...

    def add_audit(self, action_id: str, record: dict[str, Any], expires_at: int) -> None: ...

    def audit(self, action_id: str) -> list[dict[str, Any]]: ...


# -- AI insights, chat history, analytics -------------------------------------------------------


class InsightStore(Protocol):
    """Insights as records (plain dicts; adapters.dynamodb.DynamoInsightStore)."""

    def list(self, context: str | None = None) -> list[dict[str, Any]]:
        """Every insight of a kubeconfig context (None: of every context)."""
        ...

    def get(self, insight_id: str) -> dict[str, Any] | None: ...

    def put(self, record: dict[str, Any], first_detected: float) -> None:
        """Create or refresh what the scanner saw; never changes dismissal fields."""
        ...

    def resolve(self, insight_id: str, at: float, expires_at: int) -> bool: ...

    def dismiss(
        self, insight_id: str, by: str, reason: str, notes: str | None, at: float
    ) -> dict[str, Any] | None:
        """Dismiss atomically; None when the insight is missing or dismissed already."""
        ...

    def put_scan(self, context: str, report: dict[str, Any]) -> None: ...

    def get_scan(self, context: str) -> dict[str, Any] | None: ...


class ChatHistory(Protocol):
    """The exchanges of a chat session (adapters.dynamodb.DynamoChatHistory)."""

    def append(self, session_id: str, exchange: dict[str, Any], expires_at: int) -> None: ...

    def recent(self, session_id: str, count: int) -> list[dict[str, Any]]:
        """The last `count` exchanges, oldest first."""
        ...


class EngagementStore(Protocol):
    """Per-minute request counters by user and category (the rate-limit counters)."""

    def windows(self, start: float, end: float) -> list[dict[str, Any]]:
        """Counters of windows in [start, end]: sub, category, window_start, n, op#<operation>."""
        ...


class InvestigationHistory(Protocol):
    """Investigations and proposed actions as analytics reads them (built by the investigations work).

    investigations: {"status", "severity", "created_at", "completed_at" (epoch or None), "context"}
    actions: {"status": "pending"|"approved"|"rejected"|"expired"|..., "created_at", "context"}
    ("context": the kubeconfig context, which a cluster-bound token's figures are filtered by)
    """

    def investigations(self, start: float, end: float) -> list[dict[str, Any]]: ...

    def actions(self, start: float, end: float) -> list[dict[str, Any]]: ...
