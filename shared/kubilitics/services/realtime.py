"""One WebSocket connection's life, for every transport: connect (auth), messages, disconnect.

The API Gateway Lambda (functions/websocket) and the local server's router (api/routers/realtime.py)
both call this; replies go out through the `ConnectionNotifier` they wire in. Anything a client gets
wrong is answered with an `ERROR` message carrying the standard error body, and the connection stays
usable; only a token that has expired or been revoked ends it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kubilitics.auth.access import AuthServices, authenticate_token, require_scope, resolve_context
from kubilitics.auth.tokens import Principal
from kubilitics.errors import KubiliticsError, RateLimitExceeded, Unauthorized
from kubilitics.ports import Clock, ConnectionNotifier, RealtimeStore
from kubilitics.services import realtime_messages as messages
from kubilitics.services.live_logs import LogsSpec, open_follow, snapshot
from kubilitics.services.pods import PodService
from kubilitics.services.ratelimit import RateLimiter
from kubilitics.services.realtime_messages import Logs, ShellCommand, ShellInit, Subscribe, Unsubscribe
from kubilitics.services.realtime_model import Connection
from kubilitics.services.sessions import Sessions
from kubilitics.services.shell import ShellSpec
from kubilitics.services.watch import Subscriptions

log = logging.getLogger(__name__)

# A token that stops being valid ends the connection (after an ERROR saying why).
_FATAL = frozenset({"unauthorized", "token_expired", "token_revoked"})


class RealtimeService:
    def __init__(
        self,
        *,
        auth: AuthServices,
        store: RealtimeStore,
        notifier: ConnectionNotifier,
        subscriptions: Subscriptions,
        sessions: Sessions,
        pods: PodService,
        # (caller, context name) -> the context as the caller reaches it (their RBAC)
        contexts: Callable[[Principal, str], Any],
        rate_limiter: RateLimiter,
        clock: Clock,
        on_subscriptions_changed: Callable[[bool], None] | None = None,
    ):
        self._auth = auth
        self._store = store
        self._notifier = notifier
        self._subscriptions = subscriptions
        self._sessions = sessions
        self._pods = pods
        self._contexts = contexts
        self._rate_limiter = rate_limiter
        self._clock = clock
        self._on_subscriptions_changed = on_subscriptions_changed

    # ---- connection lifecycle ------------------------------------------------------------------

    def connect(self, connection_id: str, token: str | None, requested_context: str | None) -> Connection:
        """Authenticate the upgrade request; 401/403 errors refuse the connection."""
        principal = authenticate_token(self._auth, token)
        context = resolve_context(self._auth, principal, requested_context)
        connection = Connection.of(connection_id, principal, context.name, self._clock.now())
        self._store.put_connection(connection)
        return connection

    def connection(self, connection_id: str) -> Connection | None:
        found: Connection | None = self._store.get_connection(connection_id)
        return found

    def disconnect(self, connection_id: str) -> None:
        pointers = self._store.delete_connection(connection_id)
        self._sessions.close_all(pointers)
        if any(p.stream == "watch" for p in pointers) and self._on_subscriptions_changed:
            self._on_subscriptions_changed(False)

    # ---- messages ------------------------------------------------------------------------------

    def handle(
        self, connection_id: str, connection: Connection | None, raw: str | bytes | None, trace_id: str
    ) -> None:
        """Act on one client message; every answer (or ERROR) is posted to the connection."""
        try:
            if connection is None:
                raise Unauthorized("This connection is not registered (expired or closed); reconnect")
            self._check_token(connection)
            self._dispatch(connection, messages.parse(raw), trace_id)
        except KubiliticsError as exc:
            self._notifier.post(
                connection_id, messages.error_message(exc, trace_id, messages.subscription_id_of(raw))
            )
            if exc.code in _FATAL:
                self._notifier.close(connection_id)
        except Exception:
            log.exception("WebSocket message failed (trace_id=%s)", trace_id)
            unexpected = KubiliticsError("Unexpected server error", code="internal_server_error")
            self._notifier.post(connection_id, messages.error_message(unexpected, trace_id))

    def _check_token(self, connection: Connection) -> None:
        if connection.expires_at <= self._clock.now():
            raise KubiliticsError("The bearer token has expired", code="token_expired")
        if self._auth.revocations.is_revoked(connection):
            raise KubiliticsError("The bearer token has been revoked", code="token_revoked")

    def _dispatch(self, connection: Connection, message: Any, trace_id: str) -> None:
        if isinstance(message, Subscribe):
            self._subscribe(connection, message)
        elif isinstance(message, Unsubscribe):
            self._unsubscribe(connection, message)
        elif isinstance(message, Logs):
            self._logs(connection, message)
        elif isinstance(message, ShellInit):
            self._shell_init(connection, message)
        elif isinstance(message, ShellCommand):
            self._sessions.send_shell(connection, message)

    def _count(self, connection: Connection, category: str) -> None:
        decision = self._rate_limiter.hit(connection.principal, category)
        if not decision.allowed:
            raise RateLimitExceeded(
                f"Rate limit of {decision.limit} per minute exceeded; retry after {decision.reset_after} s",
                details={"limit": decision.limit, "reset_after_seconds": decision.reset_after},
            )

    def _subscribe(self, connection: Connection, request: Subscribe) -> None:
        require_scope(connection.principal, "read")
        self._count(connection, "read")
        done = self._subscriptions.subscribe(connection, request)
        # The acknowledgement goes out before the relay hears of the subscription: it comes first.
        self._notifier.post(
            connection.connection_id,
            messages.ack(
                "SUBSCRIBED",
                done.subscription_id,
                stream="watch",
                **done.watch_set.describe(),
                resource_version=done.from_rv,
            ),
        )
        if self._on_subscriptions_changed:
            self._on_subscriptions_changed(done.new_set)

    def _unsubscribe(self, connection: Connection, request: Unsubscribe) -> None:
        pointer = self._subscriptions.unsubscribe(connection, request.subscription_id)
        if pointer is None:
            raise KubiliticsError(
                f"No subscription {request.subscription_id!r} on this connection",
                code="not_found",
                details={"subscription_id": request.subscription_id},
            )
        if pointer.stream == "logs":
            self._sessions.stop(pointer)
        elif self._on_subscriptions_changed:
            self._on_subscriptions_changed(False)
        self._notifier.post(connection.connection_id, messages.ack("UNSUBSCRIBED", request.subscription_id))

    def _logs(self, connection: Connection, request: Logs) -> None:
        require_scope(connection.principal, "read")
        if not request.follow:
            self._count(connection, "logs")  # a follow takes a concurrency slot instead, as over REST
        subscription_id = (
            request.subscription_id or f"logs-{connection.connection_id[-6:]}-{int(self._clock.now() * 1000)}"
        )
        context = self._contexts(connection.principal, connection.context)
        spec = LogsSpec.of(connection.context, subscription_id, request, context.acting_as_record)
        if not request.follow:
            lines = snapshot(self._pods, context, spec)
            post = self._notifier.post
            post(connection.connection_id, messages.ack("SUBSCRIBED", subscription_id, stream="logs"))
            for line in lines:
                post(connection.connection_id, messages.log_line(subscription_id, line))
            post(connection.connection_id, messages.log_end(subscription_id, "complete"))
            return
        # Opened here so that a missing pod or container is answered now; the worker opens its own.
        open_follow(self._pods, context, spec).close()
        self._rate_limiter.acquire_slot(connection.principal, "logs")
        try:
            self._notifier.post(
                connection.connection_id,
                messages.ack(
                    "SUBSCRIBED",
                    subscription_id,
                    stream="logs",
                    namespace=spec.namespace,
                    pod_name=spec.pod_name,
                    container=spec.container,
                ),
            )
            self._sessions.start_logs(connection, spec)
        except Exception:
            self._rate_limiter.release_slot(connection.sub, "logs")
            raise

    def _shell_init(self, connection: Connection, request: ShellInit) -> None:
        require_scope(connection.principal, "exec")
        context = self._contexts(connection.principal, connection.context)
        # The pods service answers a missing pod (404 not_found) and a wrong container (400) as REST does.
        pod = self._pods._pod(context, request.namespace, request.pod_name)
        container = self._pods._container(pod, request.container, request.namespace, request.pod_name)
        spec = ShellSpec(
            connection.context,
            request.namespace,
            request.pod_name,
            container,
            request.shell,
            request.rows,
            request.cols,
            context.acting_as_record,
        )
        self._rate_limiter.acquire_slot(connection.principal, "shells")
        try:
            self._sessions.start_shell(connection, spec)
        except Exception:
            self._rate_limiter.release_slot(connection.sub, "shells")
            raise
