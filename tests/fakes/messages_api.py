"""A local HTTP server that speaks enough of the Anthropic Messages API for the real SDK.

    api = FakeMessagesAPI().start()
    api.reply_tool_use("get_object", {"kind": "Pod", "name": "web"})   # scripted turns, in order
    api.reply_text("The pod is OOMKilled.")
    api.fail(529, times=3)                                              # scripted errors
    api.stall(30)                                           # an answer that comes after 30 s
    ... AnthropicProvider(api_key=api.api_key, base_url=api.url, ...).run(...)
    api.requests[0].body["messages"]                                    # every request, recorded
    api.stop()

`POST /v1/messages` answers the next scripted reply (a text answer when the script is empty) with
usage counts: given ones, or counted here as one token per 4 characters of what was sent
(`count_tokens`), so tests and the benchmark can measure prompt size. `GET /v1/models` answers the
health probe. A wrong key (`Authorization: Bearer` or `x-api-key`) gets 401. Errors carry
`retry-after-ms: 1` by default so the SDK's retries do not slow the tests.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_API_KEY = "sk-ant-api03-fake-messages-api-key-abcd"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def count_tokens(text: str) -> int:
    """The fake's tokenizer: one token per 4 characters (rounded up)."""
    return math.ceil(len(text) / 4)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    raw: str
    body: Any

    @property
    def prompt_chars(self) -> int:
        """Characters of what the model reads: system, messages and tools."""
        return len(_prompt_text(self.body))


@dataclass
class _Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _prompt_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    parts = {key: body[key] for key in ("system", "messages", "tools") if key in body}
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


class FakeMessagesAPI:
    def __init__(self, api_key: str | None = DEFAULT_API_KEY, host: str = "127.0.0.1"):
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.models_status = 200
        self._script: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeMessagesAPI:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-messages-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeMessagesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- script ------------------------------------------------------------------------------------

    def reply_text(
        self, text: str, *, input_tokens: int | None = None, output_tokens: int | None = None
    ) -> None:
        self._push(
            {"kind": "text", "text": text, "input_tokens": input_tokens, "output_tokens": output_tokens}
        )

    def reply_tool_use(
        self,
        name: str,
        tool_input: dict[str, Any],
        *,
        text: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        self.reply_tool_uses(
            [(name, tool_input)], text=text, input_tokens=input_tokens, output_tokens=output_tokens
        )

    def reply_tool_uses(
        self,
        calls: list[tuple[str, dict[str, Any]]],
        *,
        text: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        self._push(
            {
                "kind": "tool_use",
                "calls": calls,
                "text": text,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
            }
        )

    def fail(
        self, status: int, *, times: int = 1, message: str | None = None, retry_after_ms: str | None = "1"
    ) -> None:
        for _ in range(times):
            self._push(
                {"kind": "error", "status": status, "message": message, "retry_after_ms": retry_after_ms}
            )

    def stall(self, seconds: float, *, times: int = 1) -> None:
        """The next `times` message requests are answered only after `seconds` (a hung API)."""
        for _ in range(times):
            self._push({"kind": "stall", "seconds": seconds})

    def _push(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._script.append(item)

    # -- what was received -------------------------------------------------------------------------

    @property
    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.startswith("/v1/messages")]

    def received_text(self) -> str:
        """Every request body as received, concatenated (for "never sent" assertions)."""
        return "\n".join(r.raw for r in self.requests)

    # -- serving -----------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: str) -> _Reply:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, raw, body))
        # SDK 2.x sends `Authorization: Bearer <key>`; the health probe sends `x-api-key`.
        presented = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key is not None and presented != self.api_key:
            return _error(401, "invalid API key")
        if method == "GET" and path.startswith("/v1/models"):
            if self.models_status != 200:
                return _error(self.models_status, "models unavailable")
            model = {"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
                     "created_at": "2025-09-29T00:00:00Z"}  # fmt: skip
            return _Reply(
                200, {"data": [model], "has_more": False, "first_id": model["id"], "last_id": model["id"]}
            )
        if method != "POST" or not path.startswith("/v1/messages"):
            return _error(404, f"no route {method} {path}")
        if not isinstance(body, dict) or "messages" not in body or "max_tokens" not in body:
            return _error(400, "messages and max_tokens are required")
        with self._lock:
            step = (
                self._script.popleft() if self._script else {"kind": "text", "text": "No further findings."}
            )
        if step["kind"] == "stall":
            time.sleep(step["seconds"])
            step = {"kind": "text", "text": "An answer too late to matter.", "input_tokens": None,
                    "output_tokens": None}  # fmt: skip
        if step["kind"] == "error":
            reply = _error(step["status"], step["message"] or f"scripted {step['status']}")
            if step["retry_after_ms"] is not None:
                reply.headers["retry-after-ms"] = step["retry_after_ms"]
            return reply
        content: list[dict[str, Any]] = []
        if step.get("text"):
            content.append({"type": "text", "text": step["text"]})
        for name, tool_input in step.get("calls", []):
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:20]}",
                    "name": name,
                    "input": tool_input,
                }
            )
        output_text = json.dumps(content, separators=(",", ":"))
        usage = {
            "input_tokens": step["input_tokens"]
            if step["input_tokens"] is not None
            else count_tokens(_prompt_text(body)),
            "output_tokens": step["output_tokens"]
            if step["output_tokens"] is not None
            else count_tokens(output_text),
        }
        return _Reply(
            200,
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "claude-sonnet-4-5"),
                "content": content,
                "stop_reason": "tool_use" if step["kind"] == "tool_use" else "end_turn",
                "stop_sequence": None,
                "usage": usage,
            },
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode("utf-8") if length else ""
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = fake._answer(self.command, self.path, headers, raw)
                # A stalled answer may find the client gone (it gave up waiting): nothing to say.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._reply(reply)

            def _reply(self, reply: _Reply) -> None:
                payload = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.send_header("request-id", f"req_{uuid.uuid4().hex[:20]}")
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler


def _error(status: int, message: str) -> _Reply:
    kind = ERROR_TYPES.get(status, "api_error")
    return _Reply(status, {"type": "error", "error": {"type": kind, "message": message}})
