"""What each events/ file must get back from its function on the Lambda runtime, in the order they run.

Every file of events/<function>/ must have an entry here (a new event without one fails the run). The
order matters where events build on each other: the WebSocket events share one connection; the
investigation tasks run as the state machine chains them (each gets the previous one's answer as its
state); the shell and log sessions run after that connection is gone, so they end at their first
owner check.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ERROR_BODY = {"error", "message", "details", "timestamp", "trace_id"}


@dataclass(frozen=True)
class Expect:
    status: int | None = None  # HTTP API events: the response's statusCode
    keys: tuple[str, ...] = ()  # keys the answer (an HTTP response's JSON body) must have
    error: str | None = None  # the standard error body, with this code (HTTP body or posted ERROR)
    posted: tuple[str, ...] = ()  # WebSocket events: the types of the messages posted back, in order
    chain: str | None = None  # investigation tasks: the state is this earlier event's answer...
    keep: tuple[str, ...] = ()  # ...with these keys of the file's own state
    content_type: str = "application/json"  # HTTP API events
    values: tuple[tuple[str, Any], ...] = ()  # (key, value) pairs the answer must have


OK = Expect(status=200)
WS = Expect(status=200)  # a WebSocket route answers 200; what it says goes to the connection
STATE = ("investigation_id", "progress_percent", "steps")

EXPECTATIONS: dict[str, dict[str, Expect]] = {
    "health": {"get_health.json": Expect(200, ("status", "dependencies")), "get_version.json": OK},
    "cluster": {"list_contexts.json": OK, "list_namespaces.json": Expect(200, ("items", "total_count"))},
    "resources": {
        "list_resources.json": Expect(200, ("items", "total_count")),
        "create_resource.json": Expect(201, ("metadata",)),
        "update_resource.json": Expect(200, ("metadata",)),
        "delete_resource.json": Expect(200, ("status",)),
    },
    "pods": {"get_logs.json": Expect(200, content_type="text/plain"), "exec.json": Expect(200, ("stdout",))},
    "observability": {
        "get_node_metrics.json": Expect(200, ("nodes",)),
        "get_pod_metrics.json": Expect(200, ("pods",)),
        "get_topology.json": Expect(200, ("cluster", "nodes")),
        "list_events.json": Expect(200, ("items",)),
    },
    "ai_admin": {
        "get_status.json": Expect(200, ("status", "mode")),
        "get_config.json": Expect(200, ("llm_configuration", "safety_policy")),
        "put_config.json": Expect(200, ("updated_fields",)),
        "get_usage.json": Expect(200, ("budget",)),
        "get_analytics_summary.json": Expect(200, ("investigations",)),
    },
    "ai_investigations": {
        "list_investigations.json": Expect(200, ("items", "total_count")),
        "start_investigation.json": Expect(202, ("investigation_id",)),
    },
    # No insight or action has these ids: 404 with the standard error body.
    "ai_insights": {"list_insights.json": OK, "dismiss_insight.json": Expect(404, error="not_found")},
    "ai_actions": {
        "list_pending_actions.json": Expect(200, ("pending_actions",)),
        "approve_action.json": Expect(404, error="not_found"),
        "reject_action.json": Expect(404, error="not_found"),
    },
    "websocket": {
        "connect.json": WS,
        "subscribe.json": Expect(200, posted=("SUBSCRIBED",)),
        "unsubscribe.json": Expect(200, posted=("UNSUBSCRIBED",)),
        "logs.json": Expect(200, posted=("SUBSCRIBED",)),  # the log session: an async invoke
        "shell_init.json": WS,  # the shell session: an async invoke
        "shell_input.json": WS,  # queued for the session
        "default_shell_resize.json": WS,
        "default_shell_init.json": Expect(200, error="already_exists", posted=("ERROR",)),  # one shell
        "chat.json": Expect(200, posted=("CHAT",)),
        "default_malformed.json": Expect(200, error="validation_failed", posted=("ERROR",)),
        "default_unknown_action.json": Expect(200, error="validation_failed", posted=("ERROR",)),
        "disconnect.json": WS,
    },
    # The connection is gone ($disconnect above): each session ends at its first owner check.
    "shell_session": {
        "logs.json": Expect(keys=("session_id",), values=(("reason", "client_disconnected"),)),
        "start.json": Expect(keys=("session_id", "exit_code"), values=(("reason", "client_disconnected"),)),
    },
    # Nothing to watch: the run holds the lease, idles 60 s, hands over.
    "watch_relay": {"scheduled.json": Expect(keys=("owner", "epoch"), values=(("status", "handed_over"),))},
    "insight_scanner": {"scheduled.json": Expect(keys=("scans",))},
    "investigation_tasks": {
        "gather.json": Expect(keys=STATE),
        "analyze.json": Expect(keys=STATE, chain="gather.json"),
        "reason.json": Expect(keys=(*STATE, "diagnosis"), chain="analyze.json"),
        "propose_actions.json": Expect(keys=(*STATE, "actions"), chain="reason.json"),
        "propose_actions_after_llm_fallback.json": Expect(
            keys=(*STATE, "actions"), chain="reason.json", keep=("reason_error", "llm")
        ),
        "complete.json": Expect(keys=STATE, chain="propose_actions.json"),
        "mark_failed.json": Expect(values=(("status", "failed"),)),
    },
}

# A cold start is the first invocation of a new environment: these are the events used for the cold
# starts after the first (default: the first event above, which changes nothing that later events
# read). A log session on a pod that does not exist ends at once (a real one runs until its connection
# is gone, about 5 s); $disconnect leaves the connection gone, as the sessions need it.
COLD_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "shell_session": ("logs.json", {"spec": {"pod_name": "no-such-pod"}}),
    "websocket": ("disconnect.json", {}),
}


def load(path: Path, token: str | None) -> dict[str, Any]:
    """An events/ payload with the bearer token substituted (removed when None), as tests/support.py's
    load_event does; WebSocket $connect carries it in the query string."""
    event: dict[str, Any] = json.loads(path.read_text())
    headers = event.get("headers")
    if isinstance(headers, dict) and "authorization" in headers:
        if token is None:
            headers.pop("authorization")
        else:
            headers["authorization"] = f"Bearer {token}"
    query = event.get("queryStringParameters")
    if isinstance(query, dict) and query.get("token") == "REPLACE_ME":
        query["token"] = token
        if isinstance(event.get("multiValueQueryStringParameters"), dict):
            event["multiValueQueryStringParameters"]["token"] = [token]
    return event


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        merged[key] = merge(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def needs_token(path: Path) -> bool:
    """An HTTP API event that carries a bearer token (the one to send once more without it)."""
    event = json.loads(path.read_text())
    return is_http(event) and "authorization" in (event.get("headers") or {})


def is_http(event: dict[str, Any]) -> bool:
    return "http" in event.get("requestContext", {})


def check(expect: Expect, event: dict[str, Any], answer: Any, posted: list[dict[str, Any]]) -> list[str]:
    """What is wrong with `answer` (the function's result) and the messages it posted; [] if nothing."""
    if not isinstance(answer, dict):
        return [f"answer is not a JSON object: {str(answer)[:200]}"]
    if "errorType" in answer:
        return [f"the function raised {answer['errorType']}: {answer.get('errorMessage')}"]
    problems = []
    if expect.status is not None and answer.get("statusCode") != expect.status:
        problems.append(f"statusCode {answer.get('statusCode')} (expected {expect.status})")
    body = answer
    if is_http(event):
        headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
        content_type = headers.get("content-type", "")
        if not content_type.startswith(expect.content_type):
            problems.append(f"content-type {content_type!r} (expected {expect.content_type})")
        if not content_type.startswith("application/json"):
            return problems if answer.get("body") else [*problems, "empty body"]
        try:
            body = json.loads(answer.get("body") or "null")
        except ValueError:
            return [*problems, f"body is not JSON: {str(answer.get('body'))[:200]}"]
        if expect.error:
            problems += error_body(body, expect.error, headers.get("x-request-id"))
    missing = [key for key in expect.keys if not (isinstance(body, dict) and key in body)]
    if missing:
        problems.append(f"answer lacks {missing}: {json.dumps(body)[:200]}")
    for key, value in expect.values:
        if not isinstance(body, dict) or body.get(key) != value:
            got = body.get(key) if isinstance(body, dict) else body
            problems.append(f"{key} is {got!r} (expected {value!r})")
    if not is_http(event) and (expect.posted or "requestContext" in event):
        types = tuple(message.get("type") for message in posted)
        if types != expect.posted:
            problems.append(f"posted {types} (expected {expect.posted}): {json.dumps(posted)[:300]}")
        elif expect.error:
            trace = event["requestContext"].get("requestId")
            problems += error_body(posted[-1].get("error"), expect.error, trace)
    return problems


def error_body(body: Any, code: str, trace_id: str | None) -> list[str]:
    """The standard error body: {error, message, details, timestamp, trace_id}, with this code and the
    request's trace id."""
    if not isinstance(body, dict) or not set(body) >= ERROR_BODY:
        return [f"not the standard error body {sorted(ERROR_BODY)}: {json.dumps(body)[:200]}"]
    problems = []
    if body["error"] != code:
        problems.append(f"error {body['error']!r} (expected {code!r})")
    if trace_id and body["trace_id"] != trace_id:
        problems.append(f"trace_id {body['trace_id']!r} is not the request's {trace_id!r}")
    return problems
