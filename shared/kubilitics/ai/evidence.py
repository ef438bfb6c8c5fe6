"""What an investigation gathered about its target: raw Kubernetes JSON, events and log tails.

`gather.gather_evidence` fills it from the cluster; analyzers only read it (no I/O), so unit tests
build one from JSON documents. Every item has a stable key (`Pod/ns/name`, `Event/ns/name`,
`Log/ns/pod/container[/previous]`) that findings cite. It serializes to plain JSON (`to_dict` /
`from_dict`) so that the gather and analyze steps of the state machine can run in different Lambdas.

ConfigMaps and Secrets are kept by name and key list only: `add()` drops their values whatever the
caller passes, so a Secret value can never reach an analyzer, a finding or an LLM prompt.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubilitics.ai.kube_json import event_last_seen, involved, meta

# Annotations that copy the whole object (a Secret's data included) or are pure noise.
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


@dataclass(frozen=True, order=True)
class ObjectRef:
    """A Kubernetes object by kind, namespace and name (namespace None for cluster-scoped kinds)."""

    kind: str
    name: str
    namespace: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    def __str__(self) -> str:
        return self.key

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectRef:
        md = meta(obj)
        return cls(str(obj.get("kind") or ""), str(md.get("name") or ""), md.get("namespace") or None)

    @classmethod
    def involved_in(cls, event: dict[str, Any]) -> ObjectRef:
        io = involved(event)
        return cls(str(io.get("kind") or ""), str(io.get("name") or ""), io.get("namespace") or None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectRef:
        return cls(str(data["kind"]), str(data["name"]), data.get("namespace") or None)


@dataclass(frozen=True)
class LogTail:
    """The last lines of one container's log (current run, or the previous one when `previous`)."""

    namespace: str
    pod: str
    container: str
    previous: bool = False
    lines: tuple[str, ...] = ()
    init: bool = False
    error: str | None = None  # why the log could not be read (container never started, ...)

    @property
    def key(self) -> str:
        base = f"Log/{self.namespace}/{self.pod}/{self.container}"
        return f"{base}/previous" if self.previous else base

    @property
    def pod_ref(self) -> ObjectRef:
        return ObjectRef("Pod", self.pod, self.namespace)

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "pod": self.pod,
            "container": self.container,
            "previous": self.previous,
            "init": self.init,
            "lines": list(self.lines),
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogTail:
        return cls(
            namespace=data["namespace"],
            pod=data["pod"],
            container=data["container"],
            previous=bool(data.get("previous")),
            lines=tuple(data.get("lines") or ()),
            init=bool(data.get("init")),
            error=data.get("error"),
        )


def sanitize(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to keep: Secret/ConfigMap values replaced by their key list, bulky metadata dropped."""
    kind = obj.get("kind")
    md = dict(meta(obj))
    md.pop("managedFields", None)
    if md.get("annotations"):
        md["annotations"] = {k: v for k, v in md["annotations"].items() if k not in _DROPPED_ANNOTATIONS}
    if kind in ("Secret", "ConfigMap"):
        keys = sorted(
            {*(obj.get("data") or {}), *(obj.get("binaryData") or {}), *(obj.get("stringData") or {})}
            | set(obj.get("keys") or [])  # already sanitized: evidence read back from JSON
        )
        kept = {"apiVersion": obj.get("apiVersion", "v1"), "kind": kind, "metadata": md, "keys": keys}
        if kind == "Secret":
            kept["type"] = obj.get("type", "Opaque")
        if "immutable" in obj:
            kept["immutable"] = obj["immutable"]
        return kept
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "metadata"}
    out["metadata"] = copy.deepcopy(md)
    return out


@dataclass
class Evidence:
    """Everything gathered for one investigation target."""

    target: ObjectRef
    collected_at: float  # epoch seconds; analyzers measure "recent" against this, never the wall clock
    window_minutes: int = 60
    context: str | None = None
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: list[ObjectRef] = field(default_factory=list)  # the target's owner chain, nearest first
    absent: list[ObjectRef] = field(default_factory=list)  # referenced but not found in the cluster
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: list[LogTail] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be gathered, and why
    # Pods that are not part of the target, by labels, owner, phase and readiness only: the
    # namespace's pods when a Service selects none, the pods on a Node.
    nearby_pods: list[dict[str, Any]] = field(default_factory=list)

    # ---- building ----------------------------------------------------------------------------------

    def add(self, obj: dict[str, Any], kind: str | None = None) -> ObjectRef:
        """Keep an object (sanitized); `kind` fills in list items that come without one."""
        if kind and not obj.get("kind"):
            obj = {**obj, "kind": kind}
        ref = ObjectRef.of(obj)
        self.objects[ref.key] = sanitize(obj)
        return ref

    def add_absent(self, ref: ObjectRef) -> None:
        if ref not in self.absent and ref.key not in self.objects:
            self.absent.append(ref)

    def add_events(self, events: Iterable[dict[str, Any]]) -> None:
        seen = {meta(e).get("uid") or id(e) for e in self.events}
        for event in events:
            uid = meta(event).get("uid") or id(event)
            if uid not in seen:
                seen.add(uid)
                self.events.append(copy.deepcopy(event))

    # ---- reading ------------------------------------------------------------------------------------

    @property
    def target_object(self) -> dict[str, Any] | None:
        return self.objects.get(self.target.key)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.objects.get(ObjectRef(kind, name, namespace).key)

    def get_ref(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self.objects.get(ref.key)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects.values() if obj.get("kind") == kind]

    @property
    def pods(self) -> list[dict[str, Any]]:
        return self.of_kind("Pod")

    def is_absent(self, kind: str, name: str, namespace: str | None = None) -> bool:
        return ObjectRef(kind, name, namespace) in self.absent

    def events_for(
        self, ref: ObjectRef | dict[str, Any], *, reason: str | None = None, type: str | None = None
    ) -> list[dict[str, Any]]:
        """Events about one object, newest first."""
        if isinstance(ref, dict):
            uid = meta(ref).get("uid")
            ref = ObjectRef.of(ref)
        else:
            uid = None
        out = []
        for event in self.events:
            io = involved(event)
            if io.get("kind") != ref.kind or io.get("name") != ref.name:
                continue
            if ref.namespace and (io.get("namespace") or None) not in (ref.namespace, None):
                continue
            # An event about an earlier object of the same name (a pod recreated by a StatefulSet).
            if uid and io.get("uid") and io.get("uid") != uid:
                continue
            if reason and event.get("reason") != reason:
                continue
            if type and event.get("type") != type:
                continue
            out.append(event)
        return sorted(out, key=lambda e: event_last_seen(e) or 0.0, reverse=True)

    def event_age(self, event: dict[str, Any]) -> float | None:
        """Seconds between the event's last occurrence and the gathering."""
        seen = event_last_seen(event)
        return None if seen is None else max(0.0, self.collected_at - seen)

    def logs_for(
        self,
        pod: str,
        namespace: str | None = None,
        container: str | None = None,
        previous: bool | None = None,
    ) -> list[LogTail]:
        return [
            t
            for t in self.logs
            if t.pod == pod
            and (namespace is None or t.namespace == namespace)
            and (container is None or t.container == container)
            and (previous is None or t.previous == previous)
        ]

    # ---- serialization ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.to_dict(),
            "collected_at": self.collected_at,
            "window_minutes": self.window_minutes,
            "context": self.context,
            "objects": self.objects,
            "owners": [o.to_dict() for o in self.owners],
            "absent": [a.to_dict() for a in self.absent],
            "events": self.events,
            "logs": [t.to_dict() for t in self.logs],
            "notes": self.notes,
            "nearby_pods": self.nearby_pods,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        ev = cls(
            target=ObjectRef.from_dict(data["target"]),
            collected_at=float(data["collected_at"]),
            window_minutes=int(data.get("window_minutes") or 60),
            context=data.get("context"),
            owners=[ObjectRef.from_dict(o) for o in data.get("owners") or []],
            absent=[ObjectRef.from_dict(a) for a in data.get("absent") or []],
            events=list(data.get("events") or []),
            logs=[LogTail.from_dict(t) for t in data.get("logs") or []],
            notes=list(data.get("notes") or []),
            nearby_pods=list(data.get("nearby_pods") or []),
        )
        for obj in (data.get("objects") or {}).values():
            ev.add(obj)
        return ev

    @classmethod
    def build(
        cls,
        target: ObjectRef,
        objects: Iterable[dict[str, Any]] = (),
        events: Iterable[dict[str, Any]] = (),
        logs: Iterable[LogTail] = (),
        *,
        collected_at: float,
        absent: Iterable[ObjectRef] = (),
        owners: Iterable[ObjectRef] = (),
        nearby_pods: Iterable[dict[str, Any]] = (),
    ) -> Evidence:
        """Evidence from documents (for tests and for callers that fetched the JSON themselves)."""
        ev = cls(target=target, collected_at=collected_at)
        for obj in objects:
            ev.add(obj)
        ev.add_events(events)
        ev.logs.extend(logs)
        for ref in absent:
            ev.add_absent(ref)
        ev.owners.extend(owners)
        ev.nearby_pods.extend(nearby_pods)
        return ev
