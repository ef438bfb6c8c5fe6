"""AI chat (reference section 14): one conversation per session, over either transport.

The local server serves `/api/v1/ai/chat` natively (api/routers/ai_chat.py: a session is the socket);
on AWS the WebSocket API's `chat` route reaches functions/websocket, where a session is the first
chat message's connection (a `chat` pointer on it holds the session id and the concurrency slot).

A turn: check the token, validate the message, count it (chat: 50/min), read the session's recent
history (the configured context window), gather evidence and diagnose when the message names a
resource, then answer: Claude when a key is configured and the budget allows (the prompt is redacted
and metered by the provider), otherwise the analyzers' findings in plain language. The exchange is
stored (one write). Every problem is an `ERROR` message with the standard error body; only a token
that expired or was revoked ends the session.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubilitics.ai.redaction import redact_for_storage
from kubilitics.auth.access import require_scope
from kubilitics.auth.tokens import Principal
from kubilitics.clock import rfc3339
from kubilitics.errors import KubiliticsError, RateLimitExceeded
from kubilitics.kube_paths import segment
from kubilitics.ports import ChatHistory, Clock, KubernetesPort
from kubilitics.services import realtime_messages as messages

log = logging.getLogger(__name__)

HISTORY_RETENTION_SECONDS = 7 * 86400
OPERATION = "WS /api/v1/ai/chat"
POINTER = "chat"
_FATAL = frozenset({"unauthorized", "token_expired", "token_revoked"})

CHAT_SYSTEM_PROMPT = (
    "You are Kubilitics, a Kubernetes assistant in a chat. You explain and advise; you never change "
    "the cluster yourself. When the user names a resource, rule-based findings and evidence about it "
    "are attached: rely on them, cite the objects, events and log lines you use, and say when the "
    "evidence is not enough. Values shown as [[KIND_N]] were redacted; refer to them by placeholder. "
    'Reply with one JSON object and nothing else: {"response": "<your answer>", "suggestions": '
    '[{"type": "investigate"|"action"|"follow_up", "text": "<one line>"}]} with up to three suggestions.'
)


class ChatContext(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    resource_kind: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, max_length=253)
    resource_name: str | None = Field(default=None, min_length=1, max_length=253)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    message: str = Field(min_length=1, max_length=8000)
    context: ChatContext | None = None
    include_metrics: bool = True
    include_logs: bool = True


@dataclass
class ChatSession:
    session_id: str
    principal: Principal
    context: str  # kubeconfig context name
    started_at: float
    last_activity: float = 0.0
    turns: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    text: str  # the message to send
    close: bool = False  # the session must end (token expired or revoked)


def is_chat_message(route_key: str | None, raw: str | bytes | None) -> bool:
    """On API Gateway: the `chat` route, or a reference-format chat message ({"message": ...} with no
    action or type) that landed on $default."""
    if route_key == "chat":
        return True
    try:
        document = json.loads(raw or "")
    except (ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(document, dict)
        and "message" in document
        and document.get("type") is None
        and document.get("action") in (None, "chat")
    )


class ChatService:
    def __init__(
        self,
        *,
        kube: KubernetesPort,
        # (caller, context name) -> the context as the caller reaches it: chat reads with their RBAC
        contexts: Callable[[Principal, str], Any],
        history: ChatHistory,
        ledger: Any,  # ai.budget.BudgetLedger
        provider: Callable[[], Any],  # -> ports.AIProvider, built per turn (key/model changes apply)
        config: Any,  # services.ai_admin.AiConfigService
        rate_limiter: Any,  # services.ratelimit.RateLimiter
        revocations: Any,  # auth.revocation.RevocationList
        clock: Clock,
        idle_seconds: float = 1800.0,
        realtime_store: Any = None,  # ports.RealtimeStore: sessions on API Gateway connections
    ):
        self._kube = kube
        self._contexts = contexts
        self._history = history
        self._ledger = ledger
        self._provider = provider
        self._config = config
        self._rate_limiter = rate_limiter
        self._revocations = revocations
        self._clock = clock
        self.idle_seconds = idle_seconds
        self._store = realtime_store

    # ---- sessions ------------------------------------------------------------------------------

    def open(self, principal: Principal, context: str) -> ChatSession:
        """Start a session: takes one of the user's 10 chat slots (429 when all are taken)."""
        self._rate_limiter.acquire_slot(principal, "chat")
        now = self._clock.now()
        return ChatSession(f"chat-{uuid.uuid4().hex[:16]}", principal, context, now, now)

    def close(self, session: ChatSession) -> None:
        self._rate_limiter.release_slot(session.principal.sub, "chat")

    def ended_message(self, session: ChatSession, reason: str) -> str:
        return messages.encode(
            {
                "type": "SESSION_ENDED",
                "session_id": session.session_id,
                "reason": reason,
                "timestamp": rfc3339(self._clock.now()),
            }
        )

    # ---- sessions on API Gateway connections (functions/websocket) --------------------------------

    def on_connection_message(
        self, connection: Any, raw: str | bytes | None, trace_id: str, notifier: Any
    ) -> None:
        """A chat message on an API Gateway connection; the answer goes out with post_to_connection."""
        connection_id = connection.connection_id if connection is not None else None
        try:
            if connection is None:
                raise KubiliticsError(
                    "This connection is not registered (expired or closed); reconnect", code="unauthorized"
                )
            self._check_token(connection.principal)
            session = self._connection_session(connection)
        except KubiliticsError as exc:
            if connection_id:
                notifier.post(connection_id, messages.error_message(exc, trace_id))
                if exc.code in _FATAL:
                    notifier.close(connection_id)
            return
        reply = self.answer(session, raw, trace_id)
        notifier.post(connection.connection_id, reply.text)
        if reply.close:
            notifier.close(connection.connection_id)

    def end_connection(self, connection_id: str) -> None:
        """The connection closed: its chat session (if any) gives its slot back."""
        pointer = self._store.delete_pointer(connection_id, POINTER)
        if pointer is not None and pointer.sub:
            self._rate_limiter.release_slot(pointer.sub, "chat")

    def _connection_session(self, connection: Any) -> ChatSession:
        from kubilitics.services.realtime_model import Pointer

        now = self._clock.now()
        pointer = self._store.get_pointer(connection.connection_id, POINTER)
        if pointer is None:
            # The connection's first chat message starts its session (one of the user's 10 slots).
            self._rate_limiter.acquire_slot(connection.principal, "chat")
            fresh = Pointer(POINTER, "chat", session_id=f"chat-{uuid.uuid4().hex[:16]}", sub=connection.sub)
            try:
                self._store.put_pointer(connection.connection_id, fresh, connection.expires_at)
                pointer = fresh
            except KubiliticsError as exc:
                self._rate_limiter.release_slot(connection.sub, "chat")
                if exc.code != "already_exists":
                    raise
                pointer = self._store.get_pointer(connection.connection_id, POINTER)  # a parallel message won
        session_id = str(pointer.session_id)
        last = self._history.recent(session_id, 1)
        if last and now - float(last[-1]["at"]) > self.idle_seconds:
            # 30 minutes idle ended that session; the connection's next message starts a new one.
            renewed = Pointer(POINTER, "chat", session_id=f"chat-{uuid.uuid4().hex[:16]}", sub=connection.sub)
            self._store.delete_pointer(connection.connection_id, POINTER)
            self._store.put_pointer(connection.connection_id, renewed, connection.expires_at)
            session_id = str(renewed.session_id)
        return ChatSession(session_id, connection.principal, connection.context, now, now)

    # ---- one turn ------------------------------------------------------------------------------

    def answer(self, session: ChatSession, raw: str | bytes | None, trace_id: str) -> Reply:
        try:
            self._check_token(session.principal)
            require_scope(session.principal, "read")
            request = _parse(raw)
            decision = self._rate_limiter.hit(session.principal, "chat", OPERATION)
            if not decision.allowed:
                raise RateLimitExceeded(
                    f"Chat is limited to {decision.limit} messages per minute; retry after "
                    f"{decision.reset_after} s",
                    details={"limit": decision.limit, "reset_after_seconds": decision.reset_after},
                )
            session.last_activity = self._clock.now()
            return Reply(self._turn(session, request))
        except KubiliticsError as exc:
            return Reply(messages.error_message(exc, trace_id), close=exc.code in _FATAL)
        except Exception:
            log.exception("chat turn failed (trace_id=%s)", trace_id)
            unexpected = KubiliticsError("Unexpected server error", code="internal_server_error")
            return Reply(messages.error_message(unexpected, trace_id))

    def _check_token(self, principal: Principal) -> None:
        if principal.expires_at <= self._clock.now():
            raise KubiliticsError("The bearer token has expired", code="token_expired")
        if self._revocations.is_revoked(principal):
            raise KubiliticsError("The bearer token has been revoked", code="token_revoked")

    def _turn(self, session: ChatSession, request: ChatRequest) -> str:
        window = self._config.effective().chat_settings.context_window_messages
        past = self._history.recent(session.session_id, math.ceil(window / 2))
        conversation = [m for x in past for m in (("user", x["user"]), ("assistant", x["assistant"]))]
        conversation = conversation[-window:] if window else []
        facts = self._facts(session, request) if request.context else None
        provider = self._provider()
        source, model, note = "rules", None, None
        answer: dict[str, Any] | None = None
        if getattr(provider, "name", "") != "offline (rules)":
            try:
                answer = self._ask_model(session, request, conversation, facts, provider)
                source, model = "llm", provider.model
            except KubiliticsError as exc:
                if exc.code != "llm_api_error":
                    raise  # token_budget_exhausted and the like: the client is told
                note = "Claude could not be reached; this answer comes from the rule-based analyzers."
        if answer is None:
            answer = rules_answer(request, facts)
            if note:
                answer["response"] = f"{answer['response']}\n\n({note})"
        now = self._clock.now()
        message_id = f"msg-{datetime.fromtimestamp(now, UTC):%Y%m%d}-{uuid.uuid4().hex[:12]}"
        reply: dict[str, Any] = {
            "type": "CHAT",
            "message_id": message_id,
            "response": answer["response"],
            "suggestions": answer["suggestions"],
            "timestamp": rfc3339(now),
            "session_id": session.session_id,
            "source": source,
            "model": model,
        }
        if facts:
            reply["root_cause"] = facts["root_cause"]
        # History is kept for a week: credentials typed into a message (or quoted in the answer) are
        # masked before it is written; one redactor for both, so a value keeps one placeholder.
        kept = redact_for_storage({"user": request.message, "assistant": answer["response"]})
        self._history.append(
            session.session_id,
            {
                "message_id": message_id,
                "at": now,
                "user": kept["user"],
                "assistant": kept["assistant"],
                "context": request.context.model_dump() if request.context else None,
                "source": source,
            },
            int(now + HISTORY_RETENTION_SECONDS),
        )
        session.turns += 1
        return messages.encode(reply)

    # ---- what the answer rests on --------------------------------------------------------------

    def _facts(self, session: ChatSession, request: ChatRequest) -> dict[str, Any]:
        from kubilitics.ai.diagnosis import diagnose
        from kubilitics.ai.gather import gather_evidence

        assert request.context is not None
        ctx = request.context
        context = self._contexts(session.principal, session.context)
        rtype = self._kube.resource_type(context, ctx.resource_kind)  # 400 invalid_resource_kind
        name = ctx.resource_name or (ctx.namespace if rtype.kind == "Namespace" else None)
        if not name:
            raise KubiliticsError(
                "Required field missing: context.resource_name",
                code="missing_required_field",
                details={"field": "context.resource_name"},
            )
        namespace = (ctx.namespace or session.principal.namespace or "default") if rtype.namespaced else None
        evidence = gather_evidence(
            self._kube, context, rtype.kind, namespace, name, 60, clock=self._clock.now
        )
        if not request.include_logs:
            evidence.logs = []
        diagnosis = diagnose(evidence)
        facts: dict[str, Any] = {
            "resource": {"kind": rtype.kind, "namespace": namespace, "name": name},
            "root_cause": diagnosis.root_cause.to_dict(),
            "severity": diagnosis.severity,
            "findings_summary": diagnosis.findings_summary,
            "evidence": [c.to_dict() | {"message": c.describe()} for c in diagnosis.evidence],
            "recommendations": diagnosis.recommendations,
            "problems": diagnosis.problems,
            "notes": diagnosis.notes,
        }
        if request.include_metrics and evidence.pods:
            facts["metrics"] = self._metrics(
                context, namespace, [p["metadata"]["name"] for p in evidence.pods]
            )
        return facts

    def _metrics(self, context: Any, namespace: str | None, pods: list[str]) -> dict[str, Any]:
        path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{segment(namespace)}/pods" if namespace else None
        if not path:
            return {}
        try:
            items = self._kube.get_path(context, path).get("items") or []
        except KubiliticsError as exc:
            return {"unavailable": exc.message}
        wanted = set(pods)
        return {
            item["metadata"]["name"]: {c.get("name"): c.get("usage") for c in item.get("containers") or []}
            for item in items
            if item.get("metadata", {}).get("name") in wanted
        }

    def _ask_model(
        self,
        session: ChatSession,
        request: ChatRequest,
        conversation: list[tuple[str, str]],
        facts: dict[str, Any] | None,
        provider: Any,
    ) -> dict[str, Any]:
        from kubilitics.ai.providers import AIRequest

        lines = [f"{role}: {text}" for role, text in conversation]
        task = (
            "Conversation so far:\n" + "\n".join(lines) + "\n\n" if lines else ""
        ) + f"user: {request.message}"
        namespace = (facts or {}).get("resource", {}).get("namespace")
        meter = self._ledger.meter(
            operation="chat",
            user=session.principal.sub,
            namespace=namespace,
            reference=session.session_id,
            cluster=session.context,
        )
        result = provider.run(
            AIRequest(task=task, context=facts, system=CHAT_SYSTEM_PROMPT, max_turns=1),
            meter=meter,
        )
        return parse_model_answer(result.text, request, facts)


# ---- parsing and rule-based answers --------------------------------------------------------------


def _parse(raw: str | bytes | None) -> ChatRequest:
    try:
        document = json.loads(raw or "")
    except (ValueError, UnicodeDecodeError) as exc:
        raise KubiliticsError(
            "Message is not valid JSON", code="validation_failed", details={"reason": str(exc)[:200]}
        ) from exc
    if not isinstance(document, dict):
        raise KubiliticsError("Message must be a JSON object", code="validation_failed")
    try:
        return ChatRequest.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "type": ""}
        field_name = ".".join(str(p) for p in first.get("loc", ()))
        violations = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "reason": e.get("type"),
                "message": e.get("msg"),
            }
            for e in errors
        ]
        if first.get("type") == "missing":
            raise KubiliticsError(
                f"Required field missing: {field_name}",
                code="missing_required_field",
                details={"field": field_name, "violations": violations},
            ) from exc
        raise KubiliticsError(
            f"Invalid field {field_name}: {first.get('msg', '')}",
            code="validation_failed",
            details={"field": field_name, "violations": violations},
        ) from exc


SUGGESTION_TYPES = ("investigate", "action", "follow_up")
_JSON_BLOCK = re.compile(r"\{.*\}", re.S)


def parse_model_answer(text: str, request: ChatRequest, facts: dict[str, Any] | None) -> dict[str, Any]:
    """The model's JSON reply; plain text (a model that ignored the format) is kept as the response."""
    document: Any = None
    match = _JSON_BLOCK.search(text or "")
    if match:
        try:
            document = json.loads(match.group(0))
        except ValueError:
            document = None
    if isinstance(document, dict) and isinstance(document.get("response"), str):
        suggestions = [
            {"type": s["type"], "text": str(s["text"])[:500]}
            for s in document.get("suggestions") or []
            if isinstance(s, dict) and s.get("type") in SUGGESTION_TYPES and s.get("text")
        ]
        return {"response": document["response"], "suggestions": suggestions[:3] or suggest(request, facts)}
    return {"response": (text or "").strip() or "(no answer)", "suggestions": suggest(request, facts)}


def rules_answer(request: ChatRequest, facts: dict[str, Any] | None) -> dict[str, Any]:
    """An answer from the analyzers alone (no model configured, or it could not be reached)."""
    from kubilitics.ai.providers.offline import explain

    if facts is None:
        response = (
            "No AI model is configured, so I answer from Kubilitics' rule-based analyzers, which work on "
            "a specific resource. Send your question with a context, for example "
            '{"message": "...", "context": {"resource_kind": "Deployment", "namespace": "default", '
            '"resource_name": "web"}}, and I will check its status, events and logs.'
        )
        return {"response": response, "suggestions": suggest(request, None)}
    resource = facts["resource"]
    where = (
        f"{resource['kind']} {resource['namespace'] + '/' if resource['namespace'] else ''}{resource['name']}"
    )
    text = explain(facts)
    metrics = facts.get("metrics") or {}
    if metrics and "unavailable" not in metrics:
        usage = "; ".join(
            f"{pod}/{container}: cpu {u.get('cpu')}, memory {u.get('memory')}"
            for pod, containers in list(metrics.items())[:5]
            for container, u in (containers or {}).items()
            if u
        )
        if usage:
            text += f"\nCurrent usage: {usage}."
    return {"response": f"About {where}:\n{text}", "suggestions": suggest(request, facts)}


def suggest(request: ChatRequest, facts: dict[str, Any] | None) -> list[dict[str, str]]:
    """Typed suggestions from the diagnosis: investigate, action, follow_up."""
    if facts is None:
        return [
            {"type": "follow_up", "text": "Which resource should I look at (kind, namespace, name)?"},
            {"type": "investigate", "text": "List the current insights (GET /api/v1/ai/insights)"},
        ]
    resource = facts["resource"]
    target = f"{resource['kind']} {resource['name']}"
    category = facts["root_cause"]["category"]
    out: list[dict[str, str]] = []
    if category == "healthy":
        out.append({"type": "follow_up", "text": f"Is {target} slower or less available than expected?"})
        out.append({"type": "investigate", "text": f"Check the metrics of {target} over time"})
        return out
    out.append(
        {
            "type": "investigate",
            "text": f"Investigate {target}: {category.replace('_', ' ')}"
            if category != "unknown"
            else f"Start a full investigation of {target}",
        }
    )
    recommendations = facts.get("recommendations") or []
    if recommendations:
        out.append(
            {"type": "action", "text": str(recommendations[0].get("details") or recommendations[0])[:300]}
        )
    out.append({"type": "follow_up", "text": f"What changed in {target} recently (image, config, limits)?"})
    return out
