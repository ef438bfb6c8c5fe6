"""Watch subscriptions and the relay that serves them (reference section 8, `/api/v1/ws`).

A subscription names a watch set: (context, kind, namespace, label selector). Every set with members
gets one Kubernetes watch, whatever the number of subscribers; the API server applies the selector.
The relay fans each event out to the members as `ADDED` / `MODIFIED` / `DELETED` messages.

Delivery bookkeeping, which makes handovers exact:
- each member has a cursor: the position up to which it has been sent events. A new member starts at
  its `from_rv`, the set's checkpoint when it subscribed (written in one transaction with that
  checkpoint as a condition), so it receives every change after the resourceVersion it was told;
- the set's checkpoint is written after delivery: every member the relay knew then has been sent every
  event up to it. A run that ends stops its watches, delivers what it has read, writes the
  checkpoints, reads the members once more (consistently) to serve late subscribers from its buffer
  of recent events, and only then gives the lease away. The next run resumes every watch from the
  checkpoint, so no event is lost or sent twice. A run that crashes instead leaves checkpoints at most
  `checkpoint_seconds` behind: its successor may repeat those events (never loses them).
- a watch that expires (410 Gone) is resumed by listing again and sending what changed, computed
  from the objects the watch had seen (by uid and resourceVersion).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubilitics.auth.tokens import Principal
from kubilitics.errors import InvalidParameter, KubiliticsError
from kubilitics.ports import Clock, ConnectionNotifier, KubernetesPort, RealtimeStore
from kubilitics.services import realtime_messages as messages
from kubilitics.services.access import AccessReviews
from kubilitics.services.realtime_messages import Subscribe
from kubilitics.services.realtime_model import (
    Connection,
    Member,
    Pointer,
    WatchSet,
    rv_number,
    subscription_pointer,
)
from kubilitics.services.selectors import is_dns1123_label, validate_label_selector

log = logging.getLogger(__name__)

# Position of an event in its set: (resourceVersion, index in a resync batch). A member's cursor is
# the position it has been served up to; "everything at resourceVersion R" is (R, LAST).
Position = tuple[int, int]
LAST = 1 << 62


def _at(resource_version: str) -> Position:
    return (rv_number(resource_version), LAST)


# ---- subscribing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionCaps:
    """Watch subscriptions a connection, and a user across connections, may hold (429 beyond)."""

    per_connection: int = 50
    per_user: int = 200  # times the token's rate multiplier (service 5, admin 10)


@dataclass(frozen=True)
class Subscribed:
    subscription_id: str
    watch_set: WatchSet
    from_rv: str
    new_set: bool  # the first subscription of its set: the relay has a new watch to start


class Subscriptions:
    """Stores subscriptions; the kind, selector and namespace are checked before anything is stored."""

    def __init__(
        self,
        store: RealtimeStore,
        kube: KubernetesPort,
        contexts: Callable[[Principal, str], Any],  # (caller, name) -> the context as the caller
        access: AccessReviews,
        caps: SubscriptionCaps | None = None,
    ):
        self._store = store
        self._kube = kube
        self._contexts = contexts
        self._access = access
        self._caps = caps or SubscriptionCaps()

    def subscribe(self, connection: Connection, request: Subscribe) -> Subscribed:
        """Store the subscription; its events are those after `Subscribed.from_rv`."""
        context = self._contexts(connection.principal, connection.context)
        rtype = self._kube.resource_type(context, request.resource_kind)
        if "watch" not in rtype.verbs:
            raise KubiliticsError(
                f"Kind {rtype.kind} cannot be watched",
                code="invalid_resource_kind",
                details={"kind": request.resource_kind, "verbs": list(rtype.verbs)},
            )
        selector = validate_label_selector(request.label_selector)
        namespace = request.namespace or None if rtype.namespaced else None
        if namespace is not None and not is_dns1123_label(namespace):
            raise InvalidParameter(
                f"Invalid namespace {namespace!r}", details={"parameter": "namespace", "value": namespace}
            )
        # The relay watches as the service, for every member of the set: each caller joins only
        # where their own RBAC lets them watch this kind there (403 forbidden otherwise).
        self._access.require(context, "watch", rtype.kind, namespace)
        watch_set = WatchSet(
            context=context.name,
            group=rtype.group,
            version=rtype.version,
            kind=rtype.kind,
            plural=rtype.plural,
            namespaced=rtype.namespaced,
            namespace=namespace,
            label_selector=selector,
        )
        subscription_id = request.subscription_id or f"sub-{uuid.uuid4().hex[:12]}"
        created: list[bool] = []

        def initial_rv() -> str:
            # A one-item list is the cheapest way to learn "now" for this set (it also checks RBAC).
            page = self._kube.list_objects(
                context, rtype, namespace=namespace, label_selector=selector, limit=1
            )
            created.append(True)
            return str(page.get("metadata", {}).get("resourceVersion", ""))

        # The caps are checked in the store's write, atomically with it (a burst cannot overshoot).
        from_rv = self._store.add_subscription(
            connection.connection_id,
            subscription_id,
            watch_set,
            initial_rv,
            connection.expires_at,
            owner=connection.sub,
            max_per_connection=self._caps.per_connection,
            max_per_user=self._caps.per_user * connection.principal.rate_multiplier,
        )
        return Subscribed(subscription_id, watch_set, from_rv, new_set=bool(created))

    def unsubscribe(self, connection: Connection, subscription_id: str) -> Pointer | None:
        pointer: Pointer | None = self._store.delete_pointer(
            connection.connection_id, subscription_pointer(subscription_id)
        )
        return pointer


# ---- the relay ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelayOptions:
    refresh_seconds: float = 1.0  # how often members and sets are read again
    checkpoint_seconds: float = 0.5
    lease_seconds: float = 30.0
    renew_seconds: float = 5.0
    watch_timeout_seconds: int = 240  # the API server ends a watch after this; it is resumed at once
    ring_seconds: float = 120.0  # recent events kept to serve members discovered late
    ring_max: int = 50_000
    delivery_workers: int = 0  # 0: post inline (local sockets); >0: in parallel across connections
    idle_exit_seconds: float | None = None  # end a run that has had nothing to watch this long
    # How often listening connections' tokens are checked again (+ the 20 s cache: revoked within 30 s).
    token_check_seconds: float = 10.0
    takeover_window_seconds: float = 90.0
    retry_seconds: float = 1.0


@dataclass
class RelayStats:
    events: int = 0
    deliveries: int = 0
    resyncs: int = 0
    gone_connections: int = 0
    watch_errors: int = 0
    sets: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Change:
    type: str
    obj: dict[str, Any]
    resource_version: str
    observed_at: float


@dataclass(frozen=True)
class _Resync:
    changes: list[_Change]
    resource_version: str


@dataclass(frozen=True)
class _Bookmark:
    resource_version: str


@dataclass(frozen=True)
class _Failure:
    error: KubiliticsError


class _Expired(Exception):
    """The watch's resourceVersion is older than the API server keeps (410 Gone)."""


def _is_expired(exc: KubiliticsError) -> bool:
    return exc.code == "resource_conflict" and exc.details.get("reason") == "Expired"


def _as_error(exc: Exception) -> KubiliticsError:
    if isinstance(exc, KubiliticsError):
        return exc
    return KubiliticsError(f"Watch failed: {type(exc).__name__}", code="kubernetes_api_error")


def _trimmed(obj: dict[str, Any]) -> dict[str, Any]:
    # managedFields is server bookkeeping, often the larger part of an object: not worth sending.
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and "managedFields" in metadata:
        obj = {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
    return obj


def _uid(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("uid") or f"{metadata.get('namespace')}/{metadata.get('name')}")


def _object_rv(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class _Watcher:
    """One Kubernetes watch for one set, on its own thread; what it reads goes to the relay's queue."""

    def __init__(
        self,
        relay: WatchRelay,
        key: str,
        context: Any,
        rtype: Any,
        watch_set: WatchSet,
        start_rv: str,
    ):
        self.key = key
        self.token = uuid.uuid4().hex
        self._relay = relay
        self._context = context
        self._rtype = rtype
        self._set = watch_set
        self._start_rv = start_rv
        self._stopped = threading.Event()
        self._stream: Any = None
        self.thread = threading.Thread(target=self._run, name=f"watch-{watch_set.kind}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopped.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def _emit(self, item: Any) -> None:
        if not self._stopped.is_set():
            self._relay._events.put((self.key, self.token, item))

    def _list(self, **params: Any) -> dict[str, Any]:
        path = self._rtype.path(self._set.namespace)
        query = {"labelSelector": self._set.label_selector or None, **params}
        page: dict[str, Any] = self._relay._kube.get_path(self._context, path, params=query, timeout=60)
        return page

    def _run(self) -> None:
        kube, options = self._relay._kube, self._relay.options
        resource_version = self._start_rv
        known: dict[str, dict[str, Any]] | None = None
        failing = False
        while not self._stopped.is_set():
            try:
                if known is None:
                    known, resource_version = self._baseline(resource_version)
                self._stream = kube.watch_objects(
                    self._context,
                    self._rtype,
                    namespace=self._set.namespace,
                    label_selector=self._set.label_selector,
                    resource_version=resource_version,
                    timeout_seconds=options.watch_timeout_seconds,
                )
                self._stream.open()
                failing = False
                for line in self._stream:
                    if self._stopped.is_set():
                        return
                    if line.strip():
                        resource_version = self._read(json.loads(line), known, resource_version)
            except Exception as exc:
                if self._stopped.is_set():
                    return
                if isinstance(exc, _Expired) or (isinstance(exc, KubiliticsError) and _is_expired(exc)):
                    try:
                        resource_version = self._resync(known or {})
                        continue
                    except Exception as resync_exc:
                        exc = resync_exc
                if not failing:
                    log.warning("watch %s failed: %r", self.key, exc)
                    self._emit(_Failure(_as_error(exc)))
                    failing = True
                self._stopped.wait(options.retry_seconds)

    def _read(self, event: dict[str, Any], known: dict[str, dict[str, Any]], resource_version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired()
            raise KubiliticsError(
                str(obj.get("message") or "watch error"),
                code="kubernetes_api_error",
                details={"status": obj.get("code"), "reason": obj.get("reason")},
            )
        new_rv = _object_rv(obj) or resource_version
        if kind == "BOOKMARK":
            self._emit(_Bookmark(new_rv))
            return new_rv
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return resource_version
        obj = _trimmed(obj)
        if kind == "DELETED":
            known.pop(_uid(obj), None)
        else:
            known[_uid(obj)] = obj
        self._emit(_Change(kind, obj, new_rv, self._relay._clock.now()))
        return new_rv

    def _baseline(self, resource_version: str) -> tuple[dict[str, dict[str, Any]], str]:
        """The objects as they were at `resource_version` (what the members know), to diff after a 410."""
        try:
            page = self._list(resourceVersion=resource_version, resourceVersionMatch="Exact")
            return {_uid(o): _trimmed(o) for o in page.get("items") or []}, resource_version
        except KubiliticsError as exc:
            if not _is_expired(exc):
                raise
        # The checkpoint is older than the API server keeps (the relay was down for minutes): resume
        # from now and send what changed since as MODIFIED (ADDED when created after the checkpoint).
        # Deletions in that window cannot be known.
        page = self._list()
        now_rv = str(page.get("metadata", {}).get("resourceVersion", ""))
        since = rv_number(resource_version)
        objects = [_trimmed(o) for o in page.get("items") or []]
        changed = sorted(
            (o for o in objects if rv_number(_object_rv(o)) > since), key=lambda o: rv_number(_object_rv(o))
        )
        observed = self._relay._clock.now()
        changes = [
            _Change(
                "ADDED" if _created_after(o, self._set.checkpoint_at) else "MODIFIED",
                o,
                _object_rv(o),
                observed,
            )
            for o in changed
        ]
        log.warning(
            "watch %s resumed from a fresh list: checkpoint %s was compacted", self.key, resource_version
        )
        self._emit(_Resync(changes, now_rv))
        return {_uid(o): o for o in objects}, now_rv

    def _resync(self, known: dict[str, dict[str, Any]]) -> str:
        page = self._list()
        now_rv = str(page.get("metadata", {}).get("resourceVersion", ""))
        current = {_uid(o): _trimmed(o) for o in page.get("items") or []}
        observed = self._relay._clock.now()
        changes = [
            _Change("ADDED" if uid not in known else "MODIFIED", obj, _object_rv(obj), observed)
            for uid, obj in current.items()
            if uid not in known or _object_rv(known[uid]) != _object_rv(obj)
        ]
        changes.sort(key=lambda c: rv_number(c.resource_version))
        changes += [
            _Change("DELETED", obj, _object_rv(obj), observed)
            for uid, obj in known.items()
            if uid not in current
        ]
        known.clear()
        known.update(current)
        self._emit(_Resync(changes, now_rv))
        return now_rv


def _created_after(obj: dict[str, Any], moment: float) -> bool:
    created = str((obj.get("metadata") or {}).get("creationTimestamp") or "")
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() >= moment - 1
    except ValueError:
        return False


@dataclass
class _RingEntry:
    position: Position
    type: str
    suffix: str  # the message after the subscription id: resource and timestamp
    observed_at: float


class _ActiveSet:
    def __init__(self, watch_set: WatchSet, watcher: _Watcher):
        self.set = watch_set
        self.watcher = watcher
        self.position_rv = watch_set.checkpoint_rv
        self.position: Position = _at(watch_set.checkpoint_rv)
        self.start: Position = self.position
        self.written_rv = watch_set.checkpoint_rv
        self.cursors: dict[tuple[str, str], Position] = {}
        self.ring: deque[_RingEntry] = deque()
        self.ring_floor: Position = self.position  # events at or before this are not in the ring


class WatchRelay:
    """Holds the watches of every set that has members and fans their events out (see module doc)."""

    def __init__(
        self,
        store: RealtimeStore,
        kube: KubernetesPort,
        contexts: Callable[[str], Any],
        notifier: ConnectionNotifier,
        clock: Clock,
        owner: str,
        options: RelayOptions | None = None,
        revoked: Callable[[Connection], bool] | None = None,
    ):
        self._store = store
        self._revoked = revoked  # connection -> its token revoked?; None: only expiry is checked
        self._kube = kube
        self._contexts = contexts
        self._notifier = notifier
        self._clock = clock
        self.owner = owner
        self.options = options or RelayOptions()
        self._events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self._sets: dict[str, _ActiveSet] = {}
        self._start_failures: dict[str, str] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._epoch = 0
        self._fenced = False
        self._pool: ThreadPoolExecutor | None = None
        self.stats = RelayStats()

    # ---- control -------------------------------------------------------------------------------

    def wake(self) -> None:
        """Read members and sets now (a subscription was added or removed in this process)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self, deadline: float | None = None) -> dict[str, Any]:
        """Take the lease and relay until `deadline` (epoch seconds) or stop(); then hand over."""
        epoch = self._acquire(deadline)
        if epoch is None:
            return {"status": "standby", "owner": self.owner}
        self._epoch = epoch
        if self.options.delivery_workers:
            self._pool = ThreadPoolExecutor(self.options.delivery_workers, thread_name_prefix="relay-post")
        try:
            self._loop(deadline)
        finally:
            self._finish()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        return {
            "status": "fenced" if self._fenced else "handed_over",
            "owner": self.owner,
            "epoch": epoch,
            "events": self.stats.events,
            "deliveries": self.stats.deliveries,
            "resyncs": self.stats.resyncs,
            "gone_connections": self.stats.gone_connections,
            "sets": len(self.stats.sets),
        }

    def _acquire(self, deadline: float | None) -> int | None:
        """The lease; a run that starts shortly before the holder's end waits for it (the handover)."""
        while not self._stopping.is_set():
            now = self._clock.now()
            if deadline is not None and now >= deadline:
                return None
            ends_at = deadline if deadline is not None else now + 10 * 365 * 86400
            epoch = self._store.acquire_lease(self.owner, now, now + self.options.lease_seconds, ends_at)
            if epoch is not None:
                return epoch
            lease = self._store.read_lease() or {}
            if float(lease.get("ends_at", 0)) - now > self.options.takeover_window_seconds:
                return None  # the holder has long to go: the next scheduled run will take over
            self._stopping.wait(0.05)
        return None

    # ---- the loop ------------------------------------------------------------------------------

    def _loop(self, deadline: float | None) -> None:
        options = self.options
        last_refresh = last_checkpoint = last_renew = idle_since = last_tokens = self._clock.now()
        self._refresh()
        while not self._stopping.is_set():
            now = self._clock.now()
            if deadline is not None and now >= deadline:
                return
            if now - last_renew >= options.renew_seconds:
                if not self._store.renew_lease(self.owner, now + options.lease_seconds):
                    log.warning("relay %s lost its lease; stopping without checkpoints", self.owner)
                    self._fenced = True
                    return
                last_renew = now
            if self._wake.is_set() or now - last_refresh >= options.refresh_seconds:
                self._wake.clear()
                self._refresh()
                last_refresh = now
            if self._sets:
                idle_since = now
            elif options.idle_exit_seconds is not None and now - idle_since >= options.idle_exit_seconds:
                return
            self._pump(timeout=0.05)
            if now - last_checkpoint >= options.checkpoint_seconds:
                self._checkpoint()
                last_checkpoint = now
            if now - last_tokens >= options.token_check_seconds:
                self._check_tokens()
                last_tokens = now

    def _finish(self) -> None:
        """Stop reading, deliver what was read, checkpoint, serve late members, then give the lease up."""
        for active in self._sets.values():
            active.watcher.stop()
        for active in self._sets.values():
            active.watcher.thread.join(timeout=2)
        while self._pump(timeout=0, in_loop=False):  # no refresh here: it could start watches again
            pass
        if self._fenced:
            return
        self._checkpoint()
        outbox: dict[str, list[str]] = {}
        for key, active in list(self._sets.items()):
            members = self._store.list_members(key)
            self._sync_members(active, members, outbox)
        self._flush(outbox)
        self._sets.clear()
        self._store.release_lease(self.owner)

    def _pump(self, timeout: float, in_loop: bool = True) -> bool:
        """Deliver what the watches have read; False when there was nothing."""
        try:
            first = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
        except queue.Empty:
            return False
        batch = [first]
        while len(batch) < 2000:
            try:
                batch.append(self._events.get_nowait())
            except queue.Empty:
                break
        if in_loop and self._wake.is_set():
            # A subscription changed in this process (its ack is already out): deliver to the members
            # as they are now, or an unsubscribed client would still get these events.
            self._wake.clear()
            self._refresh()
        outbox: dict[str, list[str]] = {}
        for key, token, item in batch:
            active = self._sets.get(key)
            if active is not None and active.watcher.token == token:
                self._apply(active, item, outbox)
        self._flush(outbox)
        return True

    def _apply(self, active: _ActiveSet, item: Any, outbox: dict[str, list[str]]) -> None:
        if isinstance(item, _Change):
            position = (rv_number(item.resource_version), 0)
            self._deliver(active, position, item, outbox)
            active.position, active.position_rv = position, item.resource_version
        elif isinstance(item, _Resync):
            self.stats.resyncs += 1
            base = rv_number(item.resource_version)
            for index, change in enumerate(item.changes):
                self._deliver(active, (base, index), change, outbox)
            active.position, active.position_rv = (base, LAST), item.resource_version
        elif isinstance(item, _Bookmark):
            active.position, active.position_rv = _at(item.resource_version), item.resource_version
        elif isinstance(item, _Failure):
            self.stats.watch_errors += 1
            for connection_id, subscription_id in active.cursors:
                outbox.setdefault(connection_id, []).append(
                    messages.error_message(item.error, None, subscription_id)
                )
        self._trim_ring(active)

    def _deliver(
        self, active: _ActiveSet, position: Position, change: _Change, outbox: dict[str, list[str]]
    ) -> None:
        suffix = messages.update_suffix(messages.encode(change.obj), change.observed_at)
        active.ring.append(_RingEntry(position, change.type, suffix, change.observed_at))
        self.stats.events += 1
        for member, cursor in active.cursors.items():
            if cursor < position:
                outbox.setdefault(member[0], []).append(
                    messages.update_prefix(change.type, member[1]) + suffix
                )
                active.cursors[member] = position

    def _trim_ring(self, active: _ActiveSet) -> None:
        oldest = self._clock.now() - self.options.ring_seconds
        while active.ring and (
            len(active.ring) > self.options.ring_max or active.ring[0].observed_at < oldest
        ):
            active.ring_floor = active.ring.popleft().position

    def _flush(self, outbox: dict[str, list[str]]) -> None:
        if not outbox:
            return
        if self._pool is not None and len(outbox) > 1:
            results = list(self._pool.map(lambda item: (item[0], self._post_all(*item)), outbox.items()))
        else:
            results = [
                (connection_id, self._post_all(connection_id, batch))
                for connection_id, batch in outbox.items()
            ]
        for connection_id, alive in results:
            if alive:
                self.stats.deliveries += len(outbox[connection_id])
            else:
                self._drop_connection(connection_id)

    def _post_all(self, connection_id: str, batch: list[str]) -> bool:
        """Post in order; False as soon as the connection turns out to be gone."""
        return self._notifier.post_batch(connection_id, batch)

    def _drop_connection(self, connection_id: str) -> None:
        """The client is gone (410): forget it here and remove its records."""
        self.stats.gone_connections += 1
        for active in self._sets.values():
            for member in [m for m in active.cursors if m[0] == connection_id]:
                del active.cursors[member]
        try:
            self._store.delete_connection(connection_id)
        except KubiliticsError as exc:
            log.warning("could not remove gone connection %s: %r", connection_id, exc)

    # ---- sets and members ----------------------------------------------------------------------

    def _refresh(self) -> None:
        now = self._clock.now()
        try:
            sets = {s.key: s for s in self._store.list_sets()}
        except KubiliticsError as exc:
            log.warning("relay could not read watch sets: %r", exc)
            return
        for key in [k for k in self._sets if k not in sets]:
            self._stop_set(key)
        outbox: dict[str, list[str]] = {}
        expired: set[str] = set()
        for key, listed in sets.items():
            members = []
            for member in self._store.list_members(key):
                if member.expires_at > now:
                    members.append(member)
                else:
                    expired.add(member.connection_id)
            if not members:
                self._stop_set(key)
                self._store.delete_set_if_unused(key, listed.generation)
                continue
            active = self._sets.get(key) or self._start_set(key, members, outbox)
            if active is not None:
                self._sync_members(active, members, outbox)
        self._flush(outbox)
        for connection_id in expired:
            self._end_connection(connection_id, "token_expired", "The bearer token has expired")

    def _check_tokens(self) -> None:
        """A client that only listens sends nothing to be refused with: end it when its token is revoked."""
        if self._revoked is None:
            return
        listening = sorted({member[0] for active in self._sets.values() for member in active.cursors})
        for connection in self._store.get_connections(listening):
            if self._revoked(connection):
                self._end_connection(
                    connection.connection_id, "token_revoked", "The bearer token has been revoked"
                )

    def _end_connection(self, connection_id: str, code: str, message: str) -> None:
        self._notifier.post(connection_id, messages.error_message(KubiliticsError(message, code=code), None))
        self._notifier.close(connection_id)
        self._drop_connection(connection_id)

    def _start_set(self, key: str, members: list[Member], outbox: dict[str, list[str]]) -> _ActiveSet | None:
        watch_set = self._store.get_set(key)  # consistent: the checkpoint the previous run left
        if watch_set is None:
            return None
        try:
            context = self._contexts(watch_set.context)
            rtype = next(
                (
                    t
                    for t in self._kube.resource_types(context)
                    if t.group == watch_set.group and t.plural == watch_set.plural
                ),
                None,
            )
            if rtype is None:
                raise KubiliticsError(
                    f"Kind {watch_set.kind} is no longer served by the cluster",
                    code="invalid_resource_kind",
                    details={"kind": watch_set.kind, "api_version": watch_set.api_version},
                )
        except KubiliticsError as exc:
            # Tell the members once per failure, then keep trying at every refresh.
            if self._start_failures.get(key) != exc.code:
                self._start_failures[key] = exc.code
                for member in members:
                    outbox.setdefault(member.connection_id, []).append(
                        messages.error_message(exc, None, member.subscription_id)
                    )
            return None
        self._start_failures.pop(key, None)
        active = _ActiveSet(
            watch_set, _Watcher(self, key, context, rtype, watch_set, watch_set.checkpoint_rv)
        )
        self._sets[key] = active
        self.stats.sets.add(key)
        active.watcher.start()
        return active

    def _stop_set(self, key: str) -> None:
        active = self._sets.pop(key, None)
        if active is not None:
            active.watcher.stop()

    def _sync_members(self, active: _ActiveSet, members: list[Member], outbox: dict[str, list[str]]) -> None:
        current = {(m.connection_id, m.subscription_id): m for m in members}
        for stale in [m for m in active.cursors if m not in current]:
            del active.cursors[stale]
        for member_key, member in current.items():
            if member_key in active.cursors:
                continue
            # Members the previous run knew were served up to the checkpoint this run started from.
            cursor = max(_at(member.from_rv), active.start)
            if cursor < active.ring_floor:
                log.warning("member %s joined after its events left the buffer", member_key)
            for entry in active.ring:
                if entry.position > cursor:
                    outbox.setdefault(member.connection_id, []).append(
                        messages.update_prefix(entry.type, member.subscription_id) + entry.suffix
                    )
                    cursor = entry.position
            active.cursors[member_key] = cursor

    def _checkpoint(self) -> None:
        now = self._clock.now()
        for key, active in list(self._sets.items()):
            if active.position_rv == active.written_rv:
                continue
            if self._store.checkpoint(key, active.position_rv, now, self._epoch):
                active.written_rv = active.position_rv
            elif (self._store.read_lease() or {}).get("owner") != self.owner:
                log.warning("relay %s was fenced off by a newer run", self.owner)
                self._fenced = True
                self._stopping.set()
                return
