"""Small readers over raw Kubernetes JSON (dicts as the API server returns them). No I/O."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_CPU_UNITS = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}
_MEM_UNITS = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "m": 1e-3,
    "": 1.0,
}
_QUANTITY = re.compile(r"^\s*([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_quantity(value: Any, *, cpu: bool = False) -> float | None:
    """A Kubernetes quantity as a number (cores for cpu, bytes otherwise); None if unparsable."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    m = _QUANTITY.match(str(value))
    if not m:
        return None
    number, suffix = float(m.group(1)), m.group(2)
    units = _CPU_UNITS if cpu else _MEM_UNITS
    if suffix not in units:
        return None
    return number * units[suffix]


def format_bytes(value: float) -> str:
    """Bytes as the Mi/Gi quantity a user would write (rounded up to a whole unit)."""
    for unit, size in (("Gi", 1024**3), ("Mi", 1024**2)):
        if value >= size and (value / size >= 2 or unit == "Mi"):
            whole = -(-value // size)
            return f"{int(whole)}{unit}"
    return f"{int(-(-value // 1024))}Ki"


def parse_time(value: Any) -> float | None:
    """RFC 3339 (with or without fractions) -> epoch seconds."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    # Python < 3.11 style fractions longer than 6 digits (MicroTime is 6) are trimmed.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj.get("metadata")
    return md if isinstance(md, dict) else {}


def name_of(obj: dict[str, Any]) -> str:
    return str(meta(obj).get("name") or "")


def namespace_of(obj: dict[str, Any]) -> str | None:
    ns = meta(obj).get("namespace")
    return str(ns) if ns else None


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The controlling ownerReference (or the first one when none is marked controller)."""
    refs = meta(obj).get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return dict(ref)
    return dict(refs[0]) if refs else None


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


# ---- label selectors ---------------------------------------------------------------------------


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector ({matchLabels, matchExpressions}) against labels. An empty selector matches all."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and (not present or labels[key] not in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def map_selector_matches(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """A Service-style selector (a plain map); an empty map selects nothing."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def selector_string(selector: dict[str, Any] | None) -> str:
    """A LabelSelector as the string the API's labelSelector parameter takes."""
    if not selector:
        return ""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return ",".join(f"{k}={v}" for k, v in selector.items())  # a Service's plain map
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


# ---- pods and containers -------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerView:
    """One container of a pod: its spec and its status side by side."""

    pod: dict[str, Any]
    spec: dict[str, Any]
    status: dict[str, Any]
    init: bool
    index: int

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.status.get("name") or "")

    @property
    def waiting(self) -> dict[str, Any]:
        return dict((self.status.get("state") or {}).get("waiting") or {})

    @property
    def running(self) -> dict[str, Any]:
        return dict((self.status.get("state") or {}).get("running") or {})

    @property
    def terminated(self) -> dict[str, Any]:
        return dict((self.status.get("state") or {}).get("terminated") or {})

    @property
    def last_terminated(self) -> dict[str, Any]:
        return dict((self.status.get("lastState") or {}).get("terminated") or {})

    @property
    def restarts(self) -> int:
        return int(self.status.get("restartCount") or 0)

    @property
    def ready(self) -> bool:
        return bool(self.status.get("ready"))

    @property
    def sidecar(self) -> bool:
        return self.init and self.spec.get("restartPolicy") == "Always"

    @property
    def status_path(self) -> str:
        """The JSON path of this container's status, for citations."""
        kind = "initContainerStatuses" if self.init else "containerStatuses"
        return f"status.{kind}[{self.name}]"

    @property
    def spec_path(self) -> str:
        kind = "initContainers" if self.init else "containers"
        return f"spec.{kind}[{self.name}]"

    def recent_termination(self) -> tuple[dict[str, Any], str]:
        """The latest termination (current state first, then lastState) and its status path."""
        if self.terminated:
            return self.terminated, f"{self.status_path}.state.terminated"
        if self.last_terminated:
            return self.last_terminated, f"{self.status_path}.lastState.terminated"
        return {}, ""


def containers(pod: dict[str, Any], *, init: bool | None = None) -> Iterator[ContainerView]:
    """Every container of a pod (init containers first) with its status ({} before the kubelet reports)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    groups = []
    if init in (None, True):
        groups.append((True, spec.get("initContainers") or [], status.get("initContainerStatuses") or []))
    if init in (None, False):
        groups.append((False, spec.get("containers") or [], status.get("containerStatuses") or []))
    for is_init, specs, statuses in groups:
        by_name = {s.get("name"): s for s in statuses}
        for i, cspec in enumerate(specs):
            yield ContainerView(pod, cspec, dict(by_name.get(cspec.get("name")) or {}), is_init, i)


def pod_is_ready(pod: dict[str, Any]) -> bool:
    cond = condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def pod_phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def pod_finished(pod: dict[str, Any]) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def pod_node(pod: dict[str, Any]) -> str | None:
    return (pod.get("spec") or {}).get("nodeName") or None


def container_requests(cspec: dict[str, Any], resource: str) -> Any:
    return ((cspec.get("resources") or {}).get("requests") or {}).get(resource)


def container_limits(cspec: dict[str, Any], resource: str) -> Any:
    return ((cspec.get("resources") or {}).get("limits") or {}).get(resource)


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod template of a workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob)."""
    spec = workload.get("spec") or {}
    if workload.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return dict(spec.get("template") or {})


def node_condition(node: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return condition(node, ctype)


# ---- events ------------------------------------------------------------------------------------------


def event_last_seen(event: dict[str, Any]) -> float | None:
    """When an event last happened (core/v1 and events.k8s.io shapes both fill some of these)."""
    series = event.get("series") or {}
    for value in (
        event.get("lastTimestamp"),
        series.get("lastObservedTime"),
        event.get("eventTime"),
        event.get("firstTimestamp"),
        meta(event).get("creationTimestamp"),
    ):
        ts = parse_time(value)
        if ts is not None:
            return ts
    return None


def event_count(event: dict[str, Any]) -> int:
    series = event.get("series") or {}
    return int(event.get("count") or series.get("count") or 1)


def involved(event: dict[str, Any]) -> dict[str, Any]:
    return dict(event.get("involvedObject") or event.get("regarding") or {})


def event_field_container(event: dict[str, Any]) -> str | None:
    """The container an event is about, from involvedObject.fieldPath (spec.containers{app})."""
    path = involved(event).get("fieldPath") or ""
    m = re.search(r"\{([^}]+)\}", path)
    return m.group(1) if m else None
