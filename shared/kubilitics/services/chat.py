"""AI chat (reference section 14): one conversation per session, over either transport.

The local server serves `/api/v1/ai/chat` natively (api/routers/ai_chat.py: a session is the socket);
on AWS the WebSocket API's `chat` route reaches functions/websocket, where a session is the first
chat message's connection (a `chat` pointer on it holds the session id and the concurrency slot).

A turn: check the token, validate the message, count it (chat: 50/min), read the session's recent
history (the configured context window), decide what the message is about (services/chat_scope.py:
its context, however partial, or the names in its words) and read it as the caller: a resource's
evidence and diagnosis, or the roll-up of a namespace, a node or the cluster (the investigations'
triage). Then answer: Claude when a key is configured and the budget allows (the prompt is redacted
and metered by the provider; the model may call the investigation's read-only tools, as the caller,
for at most CHAT_MAX_TURNS model calls), otherwise the analyzers' findings in plain language (a
roll-up: ranked, one `investigate` suggestion per problem). The exchange is stored (one write). Every
problem is an `ERROR` message with the standard error body; only a token that expired or was revoked
ends the session.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
from kubilitics.services.chat_scope import (
    NAME_LIST_LIMIT,
    WORKLOAD_KINDS,
    Scope,
    asks_about_state,
    candidates,
    is_rollup,
    kind_hint,
    match_namespace,
    match_workload,
    rollup_answer,
    rollup_suggestions,
    slim_rollup,
    words,
)

log = logging.getLogger(__name__)

HISTORY_RETENTION_SECONDS = 7 * 86400
OPERATION = "WS /api/v1/ai/chat"
POINTER = "chat"
_FATAL = frozenset({"unauthorized", "token_expired", "token_revoked"})
# Model calls in one answer, tool calls in between (the last is told to answer without tools): three
# calls of at most chat_request_timeout_seconds (25 s) fit the WebSocket function's 90 s.
CHAT_MAX_TURNS = 3
WINDOW_MINUTES = 60  # events and restarts a chat answer looks back on

CHAT_SYSTEM_PROMPT = (
    "You are Kubilitics, a Kubernetes assistant in a chat. You explain and advise; you never change "
    "the cluster yourself. When the question is about a resource, rule-based findings and evidence "
    "about it are attached; when it is about a namespace, a node or the whole cluster, the rule-based "
    "roll-up of what is broken there is attached (problems ranked, most severe first). Rely on them, "
    "use the read-only tools to look closer when they are not enough (they read the cluster with the "
    "user's own permissions), cite the objects, events and log lines you use, and say when the "
    "evidence is not enough. Values shown as [[KIND_N]] were redacted; refer to them by placeholder. "
    'Reply with one JSON object and nothing else: {"response": "<your answer>", "suggestions": '
    '[{"type": "investigate"|"action"|"follow_up", "text": "<one line>"}]} with up to three suggestions.'
)


class ChatContext(BaseModel):
    """Every field optional: none means the cluster, `namespace` alone that namespace, a kind without a
    name every object of that kind there (services/chat_scope.py)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    resource_kind: str | None = Field(default=None, min_length=1, max_length=253)
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
        max_turns: int = CHAT_MAX_TURNS,
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
        self._max_turns = max_turns

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
        context = self._contexts(session.principal, session.context)
        scope = self._scope(session, request, context)
        facts = self._facts(session, request, context, scope) if scope else None
        provider = self._provider()
        source, model, note = "rules", None, None
        answer: dict[str, Any] | None = None
        if getattr(provider, "name", "") != "offline (rules)":
            try:
                answer = self._ask_model(session, request, conversation, facts, provider, context, scope)
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
            reply["scope"] = facts["scope"]
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
                "scope": facts["scope"] if facts else None,
                "source": source,
            },
            int(now + HISTORY_RETENTION_SECONDS),
        )
        session.turns += 1
        return messages.encode(reply)

    # ---- what the answer rests on --------------------------------------------------------------

    def _scope(self, session: ChatSession, request: ChatRequest, context: Any) -> Scope | None:
        """What the message is about: its context (however partial), else the names in its words."""
        ctx = request.context
        if ctx is not None and ctx.resource_kind:
            return self._scope_of_context(session, ctx, context)
        if ctx is not None and ctx.resource_name:
            raise KubiliticsError(
                "Required field missing: context.resource_kind (a name needs its kind)",
                code="missing_required_field",
                details={"field": "context.resource_kind"},
            )
        if ctx is not None and ctx.namespace:
            return Scope("Namespace", ctx.namespace)
        return self._scope_of_words(session, request.message, context)

    def _scope_of_context(self, session: ChatSession, ctx: ChatContext, context: Any) -> Scope:
        kind = str(ctx.resource_kind)
        if kind.lower() == "cluster":
            return Scope("Cluster")
        rtype = self._kube.resource_type(context, kind)  # 400 invalid_resource_kind
        if rtype.kind == "Namespace":
            name = ctx.resource_name or ctx.namespace
            return Scope("Namespace", name) if name else Scope("Cluster")
        if rtype.kind == "Node":
            return (
                Scope("Node", ctx.resource_name) if ctx.resource_name else Scope("Cluster", only_kind="Node")
            )
        namespace = (ctx.namespace or self._home(session, context)) if rtype.namespaced else None
        if ctx.resource_name:
            return Scope(rtype.kind, ctx.resource_name, namespace)
        if namespace is None:  # every PersistentVolume, every StorageClass: no roll-up of those
            raise KubiliticsError(
                f"Required field missing: context.resource_name ({rtype.kind} is cluster-scoped)",
                code="missing_required_field",
                details={"field": "context.resource_name"},
            )
        return Scope("Namespace", namespace, only_kind=rtype.kind)

    def _scope_of_words(self, session: ChatSession, message: str, context: Any) -> Scope | None:
        """A namespace the caller may see, or a workload of that namespace (else of their default one),
        named in the question; the cluster for a question about how things are that names nothing."""
        tokens = words(message)
        names = candidates(tokens)
        hint = kind_hint(tokens)
        about_state = asks_about_state(tokens)
        fallback = Scope("Cluster", routed="words") if about_state or hint == "Cluster" else None
        if not names:
            return fallback
        if hint == "Node":
            nodes = self._names(context, "Node", None, forbidden_ok=True)
            node = match_namespace(names, nodes)
            if node:
                return Scope("Node", node, routed="words")
        namespace = match_namespace(names, self._visible_namespaces(session, context))
        rest = [n for n in names if n != namespace]
        if rest and hint not in ("Namespace", "Cluster", "Node"):
            home = namespace or self._home(session, context)
            kinds = (hint,) if hint else WORKLOAD_KINDS
            with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
                pages = pool.map(lambda kind: self._names(context, kind, home, forbidden_ok=True), kinds)
                listed = dict(zip(kinds, pages, strict=True))
            hit = match_workload(rest, listed, hint)
            if hit:
                return Scope(hit[0], hit[1], home, routed="words")
        if namespace:
            return Scope(
                "Namespace", namespace, only_kind=hint if hint in WORKLOAD_KINDS else None, routed="words"
            )
        return fallback

    def _home(self, session: ChatSession, context: Any) -> str:
        """The namespace a caller means when they name none."""
        return str(session.principal.namespace or getattr(context, "namespace", None) or "default")

    def _visible_namespaces(self, session: ChatSession, context: Any) -> set[str]:
        """The namespaces the caller may list; a caller who may list none has their default ones."""
        try:
            return self._names(context, "Namespace", None)
        except KubiliticsError as exc:
            if exc.code != "forbidden":
                raise
        return {n for n in (session.principal.namespace, getattr(context, "namespace", None)) if n}

    def _names(self, context: Any, kind: str, namespace: str | None, forbidden_ok: bool = False) -> set[str]:
        """The names of one page of `kind` (at most NAME_LIST_LIMIT), read as the caller."""
        try:
            rtype = self._kube.resource_type(context, kind)
            page = self._kube.list_objects(context, rtype, namespace=namespace, limit=NAME_LIST_LIMIT)
        except KubiliticsError as exc:
            if forbidden_ok and exc.code in ("forbidden", "invalid_resource_kind"):
                return set()
            raise
        return {str((item.get("metadata") or {}).get("name")) for item in page.get("items") or []}

    def _facts(
        self, session: ChatSession, request: ChatRequest, context: Any, scope: Scope
    ) -> dict[str, Any]:
        if scope.rollup:
            return self._rollup(session, request, context, scope)
        from kubilitics.ai.diagnosis import diagnose
        from kubilitics.ai.gather import gather_evidence

        evidence = gather_evidence(
            self._kube,
            context,
            scope.kind,
            scope.namespace,
            str(scope.name),
            WINDOW_MINUTES,
            clock=self._clock.now,
        )
        if not request.include_logs:
            evidence.logs = []
        diagnosis = diagnose(evidence)
        facts: dict[str, Any] = {
            "scope": scope.to_dict(),
            "resource": {"kind": scope.kind, "namespace": scope.namespace, "name": scope.name},
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
                context, scope.namespace, [p["metadata"]["name"] for p in evidence.pods]
            )
        return facts

    def _rollup(
        self, session: ChatSession, request: ChatRequest, context: Any, scope: Scope
    ) -> dict[str, Any]:
        """The investigations' roll-up of a namespace, a node or the cluster, read as the caller. A
        caller who may not read the whole cluster gets their default namespace's, said so."""
        from kubilitics.ai.cluster_triage import diagnose_cluster, gather_cluster
        from kubilitics.ai.node_triage import diagnose_node, gather_node
        from kubilitics.ai.triage import diagnose_namespace, gather_namespace

        now = self._clock.now
        if scope.kind == "Node":
            diagnosis = diagnose_node(
                gather_node(self._kube, context, str(scope.name), WINDOW_MINUTES, clock=now)
            )
            return slim_rollup(scope, diagnosis)
        if scope.kind == "Cluster":
            try:
                document = gather_cluster(self._kube, context, WINDOW_MINUTES, clock=now)
            except KubiliticsError as exc:
                home = session.principal.namespace or getattr(context, "namespace", None)
                if exc.code != "forbidden" or not home or scope.only_kind:
                    raise
                facts = self._rollup(session, request, context, Scope("Namespace", home, routed=scope.routed))
                facts["fallback"] = (
                    f"You may not read the whole cluster ({exc.message}); here is your default "
                    f"namespace, {home}."
                )
                return facts
            if scope.only_kind == "Node":
                document["namespaces"] = []
            for ns_doc in document["namespaces"]:
                self._drop_logs(request, ns_doc["members"])
            diagnosis = diagnose_cluster(document)
            if scope.only_kind == "Node" and diagnosis["root_cause"]["category"] == "healthy":
                total = diagnosis["triage"]["nodes"]["total"]
                diagnosis["root_cause"]["summary"] = (
                    f"The cluster's {total} node(s) are healthy: all ready, none under pressure."
                )
            return slim_rollup(scope, diagnosis)
        self._namespace_exists(context, str(scope.name))
        document = gather_namespace(self._kube, context, str(scope.name), WINDOW_MINUTES, clock=now)
        if scope.only_kind:
            document["inventory"] = [r for r in document["inventory"] if r["kind"] == scope.only_kind]
            document["members"] = [m for m in document["members"] if m["subject"]["kind"] == scope.only_kind]
        self._drop_logs(request, document["members"])
        return slim_rollup(scope, diagnose_namespace(document))

    def _namespace_exists(self, context: Any, name: str) -> None:
        """404 for a namespace that is not there (its lists would be empty: healthy). Whether the caller
        may read it is for the lists to say (the API server's 403)."""
        try:
            self._kube.get(context, self._kube.resource_type(context, "Namespace"), None, name)
        except KubiliticsError as exc:
            if exc.code == "not_found":
                raise KubiliticsError(
                    f"Namespace {name!r} not found", code="not_found", details={"namespace": name}
                ) from exc
            if exc.code != "forbidden":
                raise

    @staticmethod
    def _drop_logs(request: ChatRequest, members: list[dict[str, Any]]) -> None:
        if not request.include_logs:
            for member in members:
                member["evidence"]["logs"] = []

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
        context: Any,
        scope: Scope | None,
    ) -> dict[str, Any]:
        from kubilitics.ai.providers import AIRequest, kubernetes_toolset
        from kubilitics.ai.redaction import Redactor
        from kubilitics.ai.toolbox import KubernetesToolbox

        lines = [f"{role}: {text}" for role, text in conversation]
        task = (
            "Conversation so far:\n" + "\n".join(lines) + "\n\n" if lines else ""
        ) + f"user: {request.message}"
        namespace = None
        if scope is not None:
            namespace = scope.name if scope.kind == "Namespace" else scope.namespace
        meter = self._ledger.meter(
            operation="chat",
            user=session.principal.sub,
            namespace=namespace,
            reference=session.session_id,
            cluster=session.context,
        )
        # The tools read with the caller's context: what their RBAC refuses, the model is refused too.
        toolbox = KubernetesToolbox(self._kube, context, namespace or self._home(session, context))
        result = provider.run(
            AIRequest(task=task, context=facts, system=CHAT_SYSTEM_PROMPT, max_turns=self._max_turns),
            meter=meter,
            tools=kubernetes_toolset(),
            call_tool=toolbox,
            redactor=Redactor(),
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
            "No AI model is configured, so I answer from Kubilitics' rule-based analyzers. Ask what is "
            'broken in the cluster, name a namespace or a workload in your question ("what is broken '
            'in shop?", "why is the orders deployment failing?"), or send a context: a resource '
            '({"resource_kind": "Deployment", "namespace": "default", "resource_name": "web"}), a '
            'namespace ({"namespace": "shop"}) or a node ({"resource_kind": "Node", "resource_name": '
            '"node-1"}), and I will check its status, events and logs.'
        )
        return {"response": response, "suggestions": suggest(request, None)}
    if is_rollup(facts):
        return {"response": rollup_answer(facts), "suggestions": rollup_suggestions(facts)}
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
            {"type": "investigate", "text": "What is broken in the cluster?"},
        ]
    if is_rollup(facts):
        return rollup_suggestions(facts)
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
