"""Cluster events (reference section 6, GET /api/v1/events).

Filters the API server can apply go into a field selector (kind, name, type); the time window and
the "Error" type are applied here, over events read page by page as raw JSON.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.clock import rfc3339
from kubilitics.errors import InvalidParameter
from kubilitics.ports import KubernetesPort
from kubilitics.services.cluster import check_namespace_name, namespace_path, require_namespace
from kubilitics.services.resources import ResourcesService

DEFAULT_WINDOW_SECONDS = 3600
PAGE_SIZE = 500
EVENT_TYPES = {"normal": "Normal", "warning": "Warning", "error": "Error"}
# Kubernetes has only Normal and Warning events. "Error" selects the Warnings whose reason names a
# failure (Failed*, *Error*, BackOff, OOMKilling, Evicted, InvalidImageName, Unhealthy, NodeNotReady).
_FAILURE_REASON = re.compile(r"Fail|Err|BackOff|OOM|Evict|Invalid|Unhealthy|NotReady")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(value: str, parameter: str) -> float:
    """Epoch seconds of an RFC 3339 date-time; anything else is a 400 naming the parameter."""
    text = value.strip()
    try:
        if not _RFC3339.match(text):
            raise ValueError(text)
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            f"{parameter} must be an RFC 3339 timestamp such as 2026-02-10T14:23:45Z, not {value!r}",
            details={"parameter": parameter, "value": value},
        ) from None
    return moment.timestamp()


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return None


def escape_selector_value(value: str) -> str:
    """Field selector values escape backslash, comma and equals (apimachinery fields.EscapeValue)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def event_times(event: dict[str, Any]) -> tuple[float, float, int]:
    """(first, last, count) for core events and for events.k8s.io-style ones (eventTime + series)."""
    series = event.get("series") or {}
    created = event.get("metadata", {}).get("creationTimestamp")
    first = _epoch(event.get("firstTimestamp")) or _epoch(event.get("eventTime")) or _epoch(created) or 0.0
    last = _epoch(series.get("lastObservedTime")) or _epoch(event.get("lastTimestamp")) or first
    count = int(series.get("count") or event.get("count") or 1)
    return first, max(first, last), count


def is_failure(event: dict[str, Any]) -> bool:
    return event.get("type") == "Warning" and bool(_FAILURE_REASON.search(event.get("reason") or ""))


def event_item(event: dict[str, Any], times: tuple[float, float, int] | None = None) -> dict[str, Any]:
    """One event in the reference's shape."""
    first, last, count = times or event_times(event)
    involved = event.get("involvedObject") or event.get("regarding") or {}
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or event.get("reportingController")
    return {
        "type": event.get("type") or "Normal",
        "reason": event.get("reason") or "",
        "message": event.get("message") or event.get("note") or "",
        "involved_object": {
            k: v
            for k, v in {
                "kind": involved.get("kind"),
                "namespace": involved.get("namespace"),
                "name": involved.get("name"),
                "uid": involved.get("uid"),
            }.items()
            if v
        },
        "first_timestamp": rfc3339(first),
        "last_timestamp": rfc3339(last),
        "count": count,
        "source": {k: v for k, v in {"component": component, "host": source.get("host")}.items() if v},
    }


class EventsService:
    def __init__(self, kube: KubernetesPort):
        self._kube = kube

    def list_events(
        self,
        context: ContextConfig,
        *,
        now: float,
        namespace: str | None = None,
        resource_kind: str | None = None,
        resource_name: str | None = None,
        event_type: str | None = None,
        since_time: str | None = None,
        until_time: str | None = None,
        limit: int = 100,
        sort_order: str = "desc",
    ) -> dict[str, Any]:
        until = parse_rfc3339(until_time, "until_time") if until_time else now
        since = parse_rfc3339(since_time, "since_time") if since_time else until - DEFAULT_WINDOW_SECONDS
        if since > until:
            raise InvalidParameter(
                "since_time is after until_time",
                details={"parameter": "since_time", "since_time": since_time, "until_time": until_time},
            )
        wanted_type = None
        if event_type:
            wanted_type = EVENT_TYPES.get(event_type.strip().lower())
            if wanted_type is None:
                raise InvalidParameter(
                    f"event_type must be Normal, Warning or Error, not {event_type!r}",
                    details={"parameter": "event_type", "allowed": ["Normal", "Warning", "Error"]},
                )
        selector = []
        if resource_kind:
            # "pods", "po", "Pod" and a group-qualified name ("deployments.apps") all mean the kind the
            # API server records, as in /resources (400 if unknown).
            kind = ResourcesService(self._kube).resolve(context, resource_kind).kind
            selector.append(f"involvedObject.kind={kind}")
        if resource_name:
            selector.append(f"involvedObject.name={escape_selector_value(resource_name)}")
        if wanted_type:
            selector.append(f"type={'Warning' if wanted_type == 'Error' else wanted_type}")
        if namespace:
            check_namespace_name(namespace)
            require_namespace(self._kube, context, namespace)

        matched = []
        for event in self._read_all(context, namespace, ",".join(selector) or None):
            if wanted_type == "Error" and not is_failure(event):
                continue
            times = event_times(event)
            # An event belongs to the window when any of its occurrences may fall in it.
            if times[1] < since or times[0] > until:
                continue
            matched.append((times, event))
        matched.sort(key=lambda pair: (pair[0][1], pair[0][0]), reverse=sort_order == "desc")
        return {
            "total_count": len(matched),
            "items": [event_item(event, times) for times, event in matched[:limit]],
        }

    def _read_all(self, context: ContextConfig, namespace: str | None, selector: str | None) -> list[Any]:
        path = f"{namespace_path(namespace)}/events" if namespace else "/api/v1/events"
        events: list[Any] = []
        token = None
        while True:
            page = self._kube.get_path(
                context, path, params={"fieldSelector": selector, "limit": PAGE_SIZE, "continue": token}
            )
            events.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return events
