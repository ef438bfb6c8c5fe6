"""The AsyncAPI 3.0.0 document of the WebSocket messages: /api/v1/ws, /api/v1/shell, /api/v1/ai/chat.

Built on the first GET /asyncapi.json (never at cold start: api/app.py imports this module then), for
the WebSocket routes the app serves (the local server's main app: all three; its AI app: chat). The
document describes the server: `receive` operations are what a client sends (services/
realtime_messages.py `parse`, services/chat.py `ChatRequest`), `send` operations what the server
answers (realtime_messages.py's encoders, the SUBSCRIBED/UNSUBSCRIBED acknowledgements of
services/realtime.py, the watch relay's updates, chat.py's CHAT and SESSION_ENDED). Payloads are
JSON Schema (draft-07, AsyncAPI's default schema format); fields the code may add later are allowed
beside those listed, as in the OpenAPI document.

On AWS the same messages travel over the WebSocket API's one URL (the `WebSocketUrl` output, no
path): chat messages there carry `"action": "chat"` (see the chat message's schema).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute, iter_route_contexts

from kubilitics.api.openapi import BOOL, ERROR_BODY, INT, KUBERNETES_OBJECT, N_STR, STR, array, obj
from kubilitics.services.chat import SUGGESTION_TYPES
from kubilitics.services.realtime_messages import _ID, MAX_INPUT_CHARS

ASYNCAPI_VERSION = "3.0.0"

# ---- payload schemas -----------------------------------------------------------------------------

TIME_MS = {"type": "string", "format": "date-time", "description": "RFC 3339 UTC with milliseconds"}
TIME_S = {"type": "string", "format": "date-time", "description": "RFC 3339 UTC, second precision"}
SUBSCRIPTION_ID = {"type": "string", "pattern": _ID}
NAME = {"type": "string", "minLength": 1, "maxLength": 253}
N_NAME = {"type": ["string", "null"], "maxLength": 253}


def const(value: str, description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "const": value}
    if description:
        schema["description"] = description
    return schema


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


# What a client sends (realtime_messages.py: Subscribe, Unsubscribe, Logs, ShellInit, ShellCommand).
SUBSCRIBE = obj(
    {
        "action": const("subscribe"),
        "resource_kind": {
            **NAME,
            "description": "Any kind the cluster serves: kind, plural or short name, CRDs included",
        },
        "namespace": {**N_NAME, "description": "Omitted: all namespaces; ignored for cluster-scoped kinds"},
        "label_selector": {"type": ["string", "null"], "maxLength": 4096, "description": "Kubernetes syntax"},
        "subscription_id": {**SUBSCRIPTION_ID, "description": "Generated when omitted"},
    },
    required=("action", "resource_kind"),
    description="Watch a kind (`read` scope); answered SUBSCRIBED, then ADDED / MODIFIED / DELETED.",
)
UNSUBSCRIBE = obj(
    {"action": const("unsubscribe"), "subscription_id": SUBSCRIPTION_ID},
    required=("action", "subscription_id"),
    description="Stop a watch subscription or a live log; answered UNSUBSCRIBED (404 ERROR if unknown).",
)
LOGS = obj(
    {
        "action": const("logs"),
        "namespace": NAME,
        "pod_name": NAME,
        "container": N_NAME,
        "tail_lines": {"type": "integer", "minimum": 0, "maximum": 10_000, "default": 100},
        "timestamps": {"type": "boolean", "default": True},
        "since_time": {"type": ["string", "null"], "maxLength": 64, "description": "RFC 3339"},
        "until_time": {"type": ["string", "null"], "maxLength": 64, "description": "RFC 3339"},
        "search": {"type": ["string", "null"], "maxLength": 1024},
        "follow": {"type": "boolean", "default": True},
        "subscription_id": {**SUBSCRIPTION_ID, "description": "Generated when omitted"},
    },
    required=("action", "namespace", "pod_name"),
    description="Live logs of one container (`read` scope), with the REST logs endpoint's filters.",
)
SHELL_INIT = obj(
    {
        "action": {
            "type": "string",
            "enum": ["init", "shell"],
            "description": '`init` (the reference), or `shell` with `"type": "init"` (API Gateway\'s '
            "shell route)",
        },
        "type": const("init"),
        "namespace": NAME,
        "pod_name": NAME,
        "container": N_NAME,
        "shell": {"type": "string", "minLength": 1, "maxLength": 256, "default": "/bin/sh"},
        "rows": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 24},
        "cols": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 80},
    },
    required=("action", "namespace", "pod_name"),
    description="Start a shell (`exec` scope; one per connection, 10 per user).",
)
SHELL_ACTION = {"type": "string", "const": "shell", "description": "Optional (API Gateway's shell route)"}
SHELL_INPUT = obj(
    {
        "type": const("input"),
        "action": SHELL_ACTION,
        "data": {"type": "string", "maxLength": MAX_INPUT_CHARS},
    },
    required=("type", "data"),
    description="Keystrokes to the running shell's stdin.",
)
SHELL_RESIZE = obj(
    {
        "type": const("resize"),
        "action": SHELL_ACTION,
        "rows": {"type": "integer", "minimum": 1, "maximum": 1000},
        "cols": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    required=("type", "rows", "cols"),
    description="The terminal's new size.",
)
SHELL_EXIT = obj(
    {"type": const("exit"), "action": SHELL_ACTION},
    required=("type",),
    description="End the running shell (answered by an `exit` message, reason `exit_requested`).",
)

# What the server sends (realtime_messages.py's encoders; realtime.py's acknowledgements).
SUBSCRIBED_WATCH = obj(
    {
        "type": const("SUBSCRIBED"),
        "subscription_id": STR,
        "stream": const("watch"),
        "resource_kind": STR,
        "api_version": STR,
        "namespace": N_STR,
        "label_selector": N_STR,
        "resource_version": {"type": "string", "description": "Every change after it is sent"},
        "timestamp": TIME_MS,
    },
    required=(
        "type",
        "subscription_id",
        "stream",
        "resource_kind",
        "api_version",
        "namespace",
        "label_selector",
        "resource_version",
        "timestamp",
    ),
    description="A watch subscription is in place (no initial snapshot: list the kind over REST).",
)
SUBSCRIBED_LOGS = obj(
    {
        "type": const("SUBSCRIBED"),
        "subscription_id": STR,
        "stream": const("logs"),
        "namespace": {**STR, "description": "Followed logs only"},
        "pod_name": {**STR, "description": "Followed logs only"},
        "container": {**N_STR, "description": "Followed logs only"},
        "timestamp": TIME_MS,
    },
    required=("type", "subscription_id", "stream", "timestamp"),
    description="A live log started: `log` messages follow, then `log_end`.",
)
UNSUBSCRIBED = obj(
    {"type": const("UNSUBSCRIBED"), "subscription_id": STR, "timestamp": TIME_MS},
    required=("type", "subscription_id", "timestamp"),
)
RESOURCE_CHANGE = obj(
    {
        "type": {"type": "string", "enum": ["ADDED", "MODIFIED", "DELETED"]},
        "subscription_id": STR,
        "resource": {
            **ref("KubernetesObject"),
            "description": "The object as the API server has it, without metadata.managedFields",
        },
        "timestamp": {**TIME_MS, "description": "When the server saw the change (milliseconds)"},
    },
    required=("type", "subscription_id", "resource", "timestamp"),
    description="A change after the subscription's resource_version, once each, in the API server's order.",
)
LOG_LINE = obj(
    {"type": const("log"), "subscription_id": STR, "line": STR, "timestamp": TIME_MS},
    required=("type", "subscription_id", "line", "timestamp"),
)
LOG_END = obj(
    {
        "type": const("log_end"),
        "subscription_id": STR,
        "reason": {
            "type": "string",
            "enum": ["complete", "log_ended", "unsubscribed", "session_limit", "error"],
            "description": "`complete` (follow: false), `log_ended` (the container stopped or until_time "
            "passed), `unsubscribed`, `session_limit` (AWS: subscribe again with since_time), `error` "
            "(after an ERROR)",
        },
        "timestamp": TIME_MS,
    },
    required=("type", "subscription_id", "reason", "timestamp"),
)
SHELL_OUTPUT = obj(
    {
        "type": const("output"),
        "channel": {"type": "string", "enum": ["stdout", "stderr"], "description": "With a TTY: stdout"},
        "data": STR,
    },
    required=("type", "channel", "data"),
)
SHELL_EXITED = obj(
    {
        "type": const("exit"),
        "exit_code": {"type": ["integer", "null"], "description": "Null when the server ended the session"},
        "reason": {
            "type": "string",
            "enum": ["exit_requested", "idle_timeout", "session_limit", "exec_failed", "error"],
            "description": "Why the server ended the session (absent when the shell exited by itself)",
        },
    },
    required=("type", "exit_code"),
    description="The shell ended; its slot is free again (another `init` may follow).",
)
ERROR_MESSAGE = obj(
    {
        "type": const("ERROR"),
        "subscription_id": {**N_STR, "description": "The message's or the stream's subscription, if any"},
        "status": {**INT, "description": "The HTTP status the same error has over REST"},
        "error": ref("ErrorBody"),
        "timestamp": TIME_MS,
    },
    required=("type", "subscription_id", "status", "error", "timestamp"),
    description="Anything that went wrong; the connection stays usable unless the token expired or was "
    "revoked (then the server closes the socket, 1008).",
)

# AI chat (services/chat.py).
CHAT_REQUEST = obj(
    {
        "action": {"type": "string", "const": "chat", "description": "AWS: the WebSocket API's chat route"},
        "message": {"type": "string", "minLength": 1, "maxLength": 8000},
        "context": {
            "type": ["object", "null"],
            "properties": {
                "resource_kind": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "maxLength": 253,
                    "description": "Any kind the cluster serves, or Cluster",
                },
                "namespace": N_NAME,
                "resource_name": {"type": ["string", "null"], "minLength": 1, "maxLength": 253},
            },
            "additionalProperties": False,
            "description": "Every field optional: none means the question's words decide",
        },
        "include_metrics": {**BOOL, "default": True},
        "include_logs": {**BOOL, "default": True},
    },
    required=("message",),
    description="A question (`read` scope; 50 per minute).",
)
CHAT_ANSWER = obj(
    {
        "type": const("CHAT"),
        "message_id": {"type": "string", "pattern": r"^msg-\d{8}-"},
        "response": STR,
        "suggestions": array(
            obj(
                {"type": {"type": "string", "enum": list(SUGGESTION_TYPES)}, "text": STR},
                required=("type", "text"),
            )
        ),
        "timestamp": TIME_S,
        "session_id": STR,
        "source": {"type": "string", "enum": ["llm", "rules"]},
        "model": N_STR,
        "root_cause": obj(
            {
                "category": STR,
                "summary": STR,
                "confidence": {"type": "number"},
                "subject": obj(description="The object of the top problem (roll-ups)"),
            },
            description="When something was read",
        ),
        "scope": obj(
            {
                "kind": {"type": "string", "description": "Cluster, Namespace, Node or the resource's kind"},
                "namespace": STR,
                "name": STR,
                "resource_kind": {"type": "string", "description": "A kind without a name"},
                "routed": {"type": "string", "enum": ["context", "words"]},
            },
            required=("kind", "routed"),
            description="What the answer read (when something was read)",
        ),
    },
    required=("type", "message_id", "response", "suggestions", "timestamp", "session_id", "source", "model"),
)
SESSION_ENDED = obj(
    {
        "type": const("SESSION_ENDED"),
        "session_id": STR,
        "reason": {"type": "string", "enum": ["idle_timeout"]},
        "timestamp": TIME_S,
    },
    required=("type", "session_id", "reason", "timestamp"),
    description="30 minutes without a client message ended the session; the server closes the socket.",
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "ErrorBody": ERROR_BODY,
    "KubernetesObject": KUBERNETES_OBJECT,
    "Subscribe": SUBSCRIBE,
    "Unsubscribe": UNSUBSCRIBE,
    "Logs": LOGS,
    "ShellInit": SHELL_INIT,
    "ShellInput": SHELL_INPUT,
    "ShellResize": SHELL_RESIZE,
    "ShellExitRequest": SHELL_EXIT,
    "SubscribedWatch": SUBSCRIBED_WATCH,
    "SubscribedLogs": SUBSCRIBED_LOGS,
    "Unsubscribed": UNSUBSCRIBED,
    "ResourceChange": RESOURCE_CHANGE,
    "LogLine": LOG_LINE,
    "LogEnd": LOG_END,
    "ShellOutput": SHELL_OUTPUT,
    "ShellExited": SHELL_EXITED,
    "Error": ERROR_MESSAGE,
    "ChatRequest": CHAT_REQUEST,
    "ChatAnswer": CHAT_ANSWER,
    "SessionEnded": SESSION_ENDED,
}

# message name -> (title, payload schema)
MESSAGES: dict[str, tuple[str, str]] = {
    "subscribe": ("Subscribe to a kind", "Subscribe"),
    "unsubscribe": ("Unsubscribe", "Unsubscribe"),
    "logs": ("Follow a container's log", "Logs"),
    "shellInit": ("Start a shell", "ShellInit"),
    "shellInput": ("Shell input", "ShellInput"),
    "shellResize": ("Resize the terminal", "ShellResize"),
    "shellExitRequest": ("End the shell", "ShellExitRequest"),
    "subscribedWatch": ("Watch subscription acknowledged", "SubscribedWatch"),
    "subscribedLogs": ("Live log acknowledged", "SubscribedLogs"),
    "unsubscribed": ("Unsubscription acknowledged", "Unsubscribed"),
    "resourceChange": ("A watched object changed", "ResourceChange"),
    "logLine": ("One log line", "LogLine"),
    "logEnd": ("The live log ended", "LogEnd"),
    "shellOutput": ("Shell output", "ShellOutput"),
    "shellExited": ("The shell ended", "ShellExited"),
    "error": ("Error", "Error"),
    "chatRequest": ("A chat message", "ChatRequest"),
    "chatAnswer": ("The answer", "ChatAnswer"),
    "sessionEnded": ("The chat session ended", "SessionEnded"),
}

CLIENT_REALTIME = (
    "subscribe",
    "unsubscribe",
    "logs",
    "shellInit",
    "shellInput",
    "shellResize",
    "shellExitRequest",
)
SERVER_REALTIME = (
    "subscribedWatch",
    "subscribedLogs",
    "unsubscribed",
    "resourceChange",
    "logLine",
    "logEnd",
    "shellOutput",
    "shellExited",
    "error",
)

# The connection: the token as the server reads it (the `token` query parameter, else Authorization:
# Bearer), the context (X-Kubeconfig-Context, else the `context` query parameter).
WS_BINDING = {
    "ws": {
        "method": "GET",
        "query": obj(
            {
                "token": {"type": "string", "description": "The bearer token (JWT)"},
                "context": {
                    "type": "string",
                    "description": "The kubeconfig context (the token's otherwise)",
                },
            }
        ),
        "headers": obj(
            {
                "Authorization": {
                    "type": "string",
                    "pattern": "^Bearer ",
                    "description": "Instead of ?token=",
                },
                "X-Kubeconfig-Context": {"type": "string", "description": "Instead of ?context="},
            }
        ),
        "bindingVersion": "0.1.0",
    }
}

# channel name -> (address, title, description, messages the server receives, messages it sends)
CHANNELS: dict[str, tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = {
    "realtime": (
        "/api/v1/ws",
        "Watch subscriptions and live logs",
        "Every message of /api/v1/shell is accepted here too (reference section 8).",
        CLIENT_REALTIME,
        SERVER_REALTIME,
    ),
    "shell": (
        "/api/v1/shell",
        "Interactive shells",
        "The reference's name for shells; watch and log messages are accepted here too.",
        CLIENT_REALTIME,
        SERVER_REALTIME,
    ),
    "chat": (
        "/api/v1/ai/chat",
        "AI chat",
        "One socket is one session (one of the user's 10); answers come one at a time, in order "
        "(reference section 14). Refused upgrades (401, 403, 429) get the HTTP status and the "
        "standard error body.",
        ("chatRequest",),
        ("chatAnswer", "error", "sessionEnded"),
    ),
}

DESCRIPTION = (
    "The WebSocket messages of the Kubilitics API, described from the server's side: `receive` is what "
    "a client sends, `send` what the server answers. Authentication happens before the upgrade "
    "(`token` query parameter or `Authorization: Bearer`); a refused upgrade gets the HTTP status and "
    "the standard error body, and no socket. Every message is JSON text. On AWS the same messages "
    "travel over the WebSocket API's one URL (the stack's `WebSocketUrl` output, `?token=`), chat "
    'messages with `"action": "chat"`.'
)


def describe(app: FastAPI) -> dict[str, Any]:
    """The document for the WebSocket routes `app` serves."""
    served = {
        context.path
        for context in iter_route_contexts(app.routes)  # included routers are resolved lazily
        if isinstance(context.original_route, APIWebSocketRoute)
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    used: set[str] = set()
    for name, (address, title, description, receives, sends) in CHANNELS.items():
        if address not in served:
            continue
        channels[name] = {
            "address": address,
            "title": title,
            "description": description,
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in (*receives, *sends)},
            "bindings": WS_BINDING,
        }
        for action, names in (("receive", receives), ("send", sends)):
            operations[f"{action}{name[0].upper()}{name[1:]}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{name}"},
                "title": f"{'Client' if action == 'receive' else 'Server'} messages on {address}",
                "messages": [{"$ref": f"#/channels/{name}/messages/{m}"} for m in names],
            }
        used.update((*receives, *sends))
    messages = {
        name: {
            "name": name,
            "title": title,
            "contentType": "application/json",
            "payload": ref(schema),
        }
        for name, (title, schema) in MESSAGES.items()
        if name in used
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": f"{app.title} (WebSocket)", "version": app.version, "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "description": "`kubilitics serve` (its AI API on :8081 serves /api/v1/ai/chat too)",
                "security": [
                    {"$ref": "#/components/securitySchemes/token"},
                    {"$ref": "#/components/securitySchemes/bearer"},
                ],
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": SCHEMAS,
            "messages": messages,
            "securitySchemes": {
                "token": {
                    "type": "httpApiKey",
                    "name": "token",
                    "in": "query",
                    "description": "The bearer token in the `token` query parameter (checked first)",
                },
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }
