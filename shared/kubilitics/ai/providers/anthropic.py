"""Claude through the `anthropic` SDK: the Messages API with tool use, metered and redacted.

The SDK is imported only when a client is first needed (it costs cold-start time, and functions
without a configured key never need it). A model call is retried here (429, 529, 5xx, connection
errors, with backoff and `retry-after`, as the SDK would) within one deadline: `timeout` bounds the
call with its retries, so an API that hangs costs `timeout` once, not once per retry (the SDK's own
retries give every attempt the whole timeout again). What still fails becomes `LlmApiError` (502),
which the investigation state machine catches to fall back to the rule-based result.

API version 2026-10-21 (what SDK 2.x sends) rejects sampling parameters (`temperature`, `top_p`,
`top_k`), so none are sent: the configuration keeps them only for the reference's sake. Assistant
turns are sent back exactly as received (thinking blocks included), as tool use requires.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from kubilitics.ai.providers.base import AIRequest, AIResult, Tool, ToolCall, ToolCallback, Usage
from kubilitics.ai.redaction import Redactor
from kubilitics.errors import KubiliticsError, LlmApiError
from kubilitics.ports import BudgetMeter

PROVIDER_NAME = "Anthropic"
DEFAULT_MAX_RETRIES = 2
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx (529 overloaded included), as the SDK
MAX_BACKOFF_SECONDS = 8.0


@lru_cache(maxsize=4)
def _client(api_key: str, base_url: str | None, timeout: float, max_retries: int) -> Any:
    import anthropic  # deferred: see the module docstring

    return anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)


class AnthropicProvider:
    name = PROVIDER_NAME

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        max_tokens: int = 2048,
        timeout: float = 60.0,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ):
        self.model: str | None = model
        self._api_key = api_key
        self._base_url = base_url
        self._max_tokens = max_tokens
        self._timeout = timeout
        self._max_retries = max_retries

    def run(
        self,
        request: AIRequest,
        *,
        meter: BudgetMeter,
        tools: Sequence[Tool] = (),
        call_tool: ToolCallback | None = None,
        redactor: Redactor | None = None,
    ) -> AIResult:
        if tools and call_tool is None:
            raise ValueError("tools need a call_tool callback")
        redactor = redactor or Redactor()
        messages: list[dict[str, Any]] = [{"role": "user", "content": self._first_message(request, redactor)}]
        system = redactor.redact_text(request.system)
        tool_specs = [tool.to_api() for tool in tools]
        usage, cost, calls = Usage(), 0, 0
        tool_calls: list[ToolCall] = []
        stop_reason = "max_turns"
        text = ""
        for turn in range(1, request.max_turns + 1):
            last_turn = turn == request.max_turns
            params: dict[str, Any] = {
                "model": self.model,
                "max_tokens": self._max_tokens,
                "system": system,
                "messages": messages,
            }
            if tool_specs:
                params["tools"] = tool_specs
                if last_turn:
                    params["tool_choice"] = {"type": "none"}  # the turn budget is spent: answer now
            response, call_usage, call_cost = self._call(params, meter)
            calls += 1
            usage += call_usage
            cost += call_cost
            text = "".join(block.text for block in response.content if block.type == "text")
            uses = [
                {"id": block.id, "name": block.name, "input": block.input}
                for block in response.content
                if block.type == "tool_use"
            ]
            if response.stop_reason != "tool_use" or not uses or last_turn:
                stop_reason = response.stop_reason if not (uses and last_turn) else "max_turns"
                break
            messages.append(
                {"role": "assistant", "content": [block.to_dict(mode="json") for block in response.content]}
            )
            results = []
            for use in uses:
                result, call = self._run_tool(use, call_tool, redactor, request.max_tool_result_chars)
                results.append(result)
                tool_calls.append(call)
            messages.append({"role": "user", "content": results})
        return AIResult(
            text=redactor.restore(text),
            provider=self.name,
            model=self.model,
            usage=usage,
            calls=calls,
            tool_calls=tuple(tool_calls),
            stop_reason=stop_reason or "end_turn",
            redacted_values=redactor.count,
            cost_micro_usd=cost,
        )

    # -- one model call -------------------------------------------------------------------------

    def _call(self, params: dict[str, Any], meter: BudgetMeter) -> tuple[Any, Usage, int]:
        # Worst case: a tokenizer never yields more tokens than the request has UTF-8 bytes.
        body_bytes = len(json.dumps(params, ensure_ascii=False, separators=(",", ":")).encode())
        reservation = meter.reserve(
            model=str(self.model), max_input_tokens=body_bytes, max_output_tokens=self._max_tokens
        )
        started = time.monotonic()
        try:
            client = _client(self._api_key, self._base_url, self._timeout, 0)
            started = time.monotonic()  # the API's time: importing the SDK (cold start) is not
            response = self._create(client, params)
        except Exception as exc:
            meter.settle(
                reservation, input_tokens=0, output_tokens=0, success=False, latency_ms=_ms_since(started)
            )
            raise self._api_error(exc) from exc
        raw = response.usage
        call_usage = Usage(
            input_tokens=int(raw.input_tokens or 0)
            + int(getattr(raw, "cache_creation_input_tokens", 0) or 0)
            + int(getattr(raw, "cache_read_input_tokens", 0) or 0),
            output_tokens=int(raw.output_tokens or 0),
        )
        record = meter.settle(
            reservation,
            input_tokens=call_usage.input_tokens,
            output_tokens=call_usage.output_tokens,
            success=True,
            latency_ms=_ms_since(started),
        )
        return response, call_usage, int(getattr(record, "cost_micro_usd", 0))

    def _create(self, client: Any, params: dict[str, Any]) -> Any:
        """`messages.create` with retries, every attempt within what is left of the timeout."""
        import anthropic

        deadline = time.monotonic() + self._timeout
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            try:
                return client.messages.create(**params, timeout=max(left, 0.01))
            except anthropic.APITimeoutError:
                raise  # it used the time left: no retry can finish before the deadline
            except (anthropic.APIStatusError, anthropic.APIConnectionError) as exc:
                if attempt >= self._max_retries or not _retryable(exc):
                    raise
                wait = _retry_after(exc)
                if wait is None:
                    wait = min(0.5 * 2**attempt, MAX_BACKOFF_SECONDS) * (1 - 0.25 * random.random())
                if time.monotonic() + wait >= deadline:
                    raise  # waiting would outlast the deadline: fail now
                time.sleep(wait)
                attempt += 1

    def _api_error(self, exc: Exception) -> Exception:
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            reason = {429: "rate_limited", 529: "overloaded", 401: "authentication_failed"}.get(status)
            reason = reason or ("server_error" if status >= 500 else "request_rejected")
        elif isinstance(exc, anthropic.APITimeoutError):
            status, reason = None, "timeout"
        elif isinstance(exc, anthropic.APIConnectionError):
            status, reason = None, "connection_error"
        else:
            return exc  # a bug of ours, not the provider's: let it surface as is
        return LlmApiError(
            f"The Anthropic API failed ({reason})",
            details={
                "provider": self.name,
                "status": status,
                "reason": reason,
                "retries": self._max_retries,
                "request_id": getattr(exc, "request_id", None),
            },
        )

    # -- tools ----------------------------------------------------------------------------------

    @staticmethod
    def _run_tool(
        use: dict[str, Any], call_tool: ToolCallback | None, redactor: Redactor, limit: int
    ) -> tuple[dict[str, Any], ToolCall]:
        arguments = redactor.restore_object(dict(use.get("input") or {}))
        is_error = False
        try:
            assert call_tool is not None
            result: Any = call_tool(use["name"], arguments)
        except KubiliticsError as exc:
            is_error, result = True, {"error": exc.code, "message": exc.message, "details": exc.details}
        except Exception as exc:
            is_error, result = True, {"error": type(exc).__name__, "message": str(exc)}
        # Redact before cutting, so a cut can never leave half a secret unmasked.
        if isinstance(result, str):
            content = redactor.redact_text(result)
        else:
            content = json.dumps(
                redactor.redact(result), default=str, ensure_ascii=False, separators=(",", ":")
            )
        if len(content) > limit:
            content = f"{content[:limit]}\n[truncated: {len(content) - limit} more characters]"
        block = {"type": "tool_result", "tool_use_id": use["id"], "content": content}
        if is_error:
            block["is_error"] = True
        return block, ToolCall(use["name"], arguments, is_error, len(content))

    @staticmethod
    def _first_message(request: AIRequest, redactor: Redactor) -> str:
        task = redactor.redact_text(request.task)
        if not request.context:
            return task
        context = json.dumps(
            redactor.redact(dict(request.context)), default=str, ensure_ascii=False, indent=1
        )
        return f"{task}\n\nFindings so far (JSON):\n{context}"


def _retryable(exc: Exception) -> bool:
    headers: Any = getattr(getattr(exc, "response", None), "headers", None) or {}
    should = str(headers.get("x-should-retry") or "").lower()
    if should in ("true", "false"):
        return should == "true"  # the API's own word, as the SDK honours it
    status = getattr(exc, "status_code", None)
    return status is None or status in RETRY_STATUSES or status >= 500  # None: a connection error


def _retry_after(exc: Exception) -> float | None:
    """The server's `retry-after-ms` / `retry-after` (seconds), when it gives a usable one."""
    response = getattr(exc, "response", None)
    headers: Any = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name)) * scale
        except (TypeError, ValueError):
            continue
        if 0 <= value <= 60:
            return value
    return None


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
