"""The investigation state machine's steps (statemachine/investigation.asl.json), one per invocation
of the investigation tasks Lambda: gather -> analyze -> reason -> propose_actions -> complete (or
mark_failed). A step gets the execution state and returns it whole, updated. Large documents (the
evidence, the diagnosis, the LLM's reasoning) live in the store, not in the state: Step Functions
passes at most 256 KB between states. A step raises the domain error classes of kubilitics/errors.py:
their class names are the state machine's `ErrorEquals` names (KubernetesApiError is retried,
LlmApiError and TokenBudgetExhausted make the reason step fall back to the rule result).

Apart from services/investigations.py (the API side) so that listing investigations does not load
the analyzers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubilitics.ai.cluster_triage import (
    cluster_evidence,
    diagnose_cluster,
    gather_cluster,
    is_cluster_document,
)
from kubilitics.ai.diagnosis import diagnose
from kubilitics.ai.evidence import Evidence
from kubilitics.ai.gather import GatherLimits, gather_evidence
from kubilitics.ai.node_triage import diagnose_node, evidence_of, gather_node, is_node_document
from kubilitics.ai.redaction import redact_for_storage
from kubilitics.ai.triage import diagnose_namespace, gather_namespace, is_namespace_document, merged_evidence
from kubilitics.clock import rfc3339_ms
from kubilitics.errors import (
    DatabaseError,
    KubernetesApiError,
    KubiliticsError,
    LlmApiError,
    TokenBudgetExhausted,
)
from kubilitics.ports import AIProvider, Clock, InvestigationStore, KubernetesPort
from kubilitics.services.actions import ActionService
from kubilitics.services.investigations import PROGRESS, release_slots
from kubilitics.services.ratelimit import RateLimiter

log = logging.getLogger(__name__)

GATHER_LIMITS = {
    "quick": GatherLimits(max_pods=4, max_log_pods=2, log_lines=30, max_events=150),
    "standard": GatherLimits(),
    "deep": GatherLimits(max_pods=20, max_log_pods=6, log_lines=120, max_events=600),
}
RECENT_DOCUMENTS = 24  # documents a task process keeps in memory for the next step
# The domain error class a step raises for each code: the state machine matches on class names.
STEP_ERRORS: dict[str, type[KubiliticsError]] = {
    "kubernetes_api_error": KubernetesApiError,
    "llm_api_error": LlmApiError,
    "token_budget_exhausted": TokenBudgetExhausted,
    "database_error": DatabaseError,
}


# ---- the LLM step ----------------------------------------------------------------------------------


class LlmReasoner:
    """Runs the provider over the rule result (ai/reasoning.py decides how far its answer counts)."""

    def __init__(self, provider: AIProvider, ledger: Any, kube: KubernetesPort):
        self._provider = provider
        self._ledger = ledger  # ai.budget.BudgetLedger: every model call reserves, then settles
        self._kube = kube

    def reason(
        self,
        investigation_id: str,
        state: dict[str, Any],
        diagnosis: dict[str, Any],
        evidence: Evidence,
        context: Any,
    ) -> dict[str, Any]:
        from kubilitics.ai.providers import kubernetes_toolset
        from kubilitics.ai.reasoning import build_request, explanation_text, merge, parse_verdict
        from kubilitics.ai.redaction import Redactor
        from kubilitics.ai.toolbox import KubernetesToolbox

        resource = state.get("resource") or {}
        request = build_request(
            state, diagnosis, evidence, str(state.get("investigation_scope") or "standard")
        )
        meter = self._ledger.meter(
            operation="investigation",
            user=str(state.get("requested_by") or "unknown"),
            namespace=resource.get("namespace"),
            reference=investigation_id,
            cluster=getattr(context, "name", None) or state.get("context"),
        )
        toolbox = KubernetesToolbox(self._kube, context, resource.get("namespace"))
        result = self._provider.run(
            request, meter=meter, tools=kubernetes_toolset(), call_tool=toolbox, redactor=Redactor()
        )
        verdict = parse_verdict(result.text)
        root, outcome = merge(diagnosis["root_cause"], verdict)
        return {
            "provider": result.provider,
            "model": result.model,
            "explanation": explanation_text(result.text),
            "root_cause": root,
            "outcome": outcome,
            "usage": {"input_tokens": result.usage.input_tokens, "output_tokens": result.usage.output_tokens},
            "calls": result.calls,
            "tool_calls": [call.name for call in result.tool_calls],
            "redacted_values": result.redacted_values,
            "cost_micro_usd": result.cost_micro_usd,
        }


# ---- the state machine's steps ---------------------------------------------------------------------


class InvestigationTasks:
    """`handle(event)`: one step of one investigation (the investigation tasks Lambda)."""

    def __init__(
        self,
        *,
        kube: KubernetesPort,
        store: InvestigationStore,
        # (context name, the requester's identity record) -> the context acting as the requester
        contexts: Callable[[str | None, dict[str, Any] | None], Any],
        actions: Callable[[], ActionService],
        reasoner: Callable[[], LlmReasoner | None],  # None when no key is configured: rules only
        rate_limiter: RateLimiter,
        clock: Clock,
        retention_seconds: int,
    ):
        self._kube = kube
        self._store = store
        self._contexts = contexts
        self._actions = actions
        self._reasoner = reasoner
        self._limiter = rate_limiter
        self._clock = clock
        self._retention = retention_seconds
        self._recent: dict[tuple[str, str], str] = {}  # (investigation, document) -> JSON, oldest first
        self._recent_lock = threading.Lock()

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        task = str(event.get("task"))
        investigation_id = str(event.get("investigation_id"))
        state = dict(event.get("state") or {})
        step = getattr(self, f"_{task}", None)
        if task not in (*PROGRESS, "mark_failed") or step is None:
            raise ValueError(f"unknown investigation task {task!r}")
        started = time.monotonic()
        try:
            result: dict[str, Any] = step(investigation_id, state, event)
        except KubiliticsError as exc:
            cls = STEP_ERRORS.get(exc.code)
            if cls is not None and type(exc) is not cls:
                raise cls(exc.message, details=exc.details) from exc
            raise
        log.info("investigation %s: %s done in %.2f s", investigation_id, task, time.monotonic() - started)
        return result

    # -- steps ------------------------------------------------------------------------------------

    def _gather(self, investigation_id: str, state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        resource = state["resource"]
        ctx = self._contexts(state.get("context"), state.get("acting_as"))
        if resource["kind"] == "Cluster":
            # Nodes, the API server's readiness, every namespace rolled up (ai/cluster_triage.py).
            window = int(state.get("search_window_minutes") or 60)
            document = gather_cluster(self._kube, ctx, window, clock=self._clock.now)
            stored = self._put_document(investigation_id, "evidence", document)
            summary = {
                **document["counts"],
                "examined": sum(len(n["members"]) for n in document["namespaces"]),
            }
            summary["stored_bytes"] = stored
            return self._advance(investigation_id, state, "gather", started, {"evidence": summary})
        rtype = self._kube.resource_type(ctx, resource["kind"])
        ns = resource.get("namespace") if rtype.namespaced else None
        try:
            # An API server that does not answer must fail this step (and be retried), not turn into
            # an investigation of nothing: gathering itself records failed reads as notes.
            self._kube.get(ctx, rtype, ns, resource["name"])
        except KubiliticsError as exc:
            if exc.code != "not_found":
                raise
        scope = state.get("investigation_scope") or "standard"
        limits = GATHER_LIMITS.get(scope, GATHER_LIMITS["standard"])
        window = int(state.get("search_window_minutes") or 60)
        if rtype.kind == "Node":
            # Conditions, taints, allocation and the pods failing because of it (ai/node_triage.py).
            document = gather_node(self._kube, ctx, resource["name"], window, clock=self._clock.now)
            stored = self._put_document(investigation_id, "evidence", document)
            summary = {
                "pods": len(document["pods"]),
                "pending": len(document["pending"]),
                "events": len(document["events"]),
                "stored_bytes": stored,
            }
            return self._advance(investigation_id, state, "gather", started, {"evidence": summary})
        if rtype.kind == "Namespace":
            # Triage: every workload of the namespace, the failing ones gathered in full (ai/triage.py).
            document = gather_namespace(
                self._kube, ctx, resource["name"], window, member_limits=limits, clock=self._clock.now
            )
            stored = self._put_document(investigation_id, "evidence", document)
            members = [m["evidence"] for m in document["members"]]
            summary = {
                "workloads": len(document["inventory"]),
                "examined": len(members),
                "objects": sum(len(m["objects"]) for m in members),
                "events": sum(len(m["events"]) for m in members),
                "logs": sum(len(m["logs"]) for m in members),
                "stored_bytes": stored,
            }
            return self._advance(investigation_id, state, "gather", started, {"evidence": summary})
        evidence = gather_evidence(
            self._kube, ctx, rtype.kind, ns, resource["name"], window, limits=limits, clock=self._clock.now
        )
        stored = self._put_document(investigation_id, "evidence", evidence.to_dict())
        summary = {
            "objects": len(evidence.objects),
            "events": len(evidence.events),
            "logs": len(evidence.logs),
            "stored_bytes": stored,
        }
        return self._advance(investigation_id, state, "gather", started, {"evidence": summary})

    def _analyze(self, investigation_id: str, state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        document = self._evidence_document(investigation_id)
        if is_namespace_document(document):
            diagnosis = diagnose_namespace(document)
        elif is_node_document(document):
            diagnosis = diagnose_node(document)
        elif is_cluster_document(document):
            diagnosis = diagnose_cluster(document)
        else:
            diagnosis = diagnose(Evidence.from_dict(document)).to_dict()
        self._put_document(investigation_id, "diagnosis", diagnosis)
        root = diagnosis["root_cause"]
        summary = {
            "category": root["category"],
            "confidence": root["confidence"],
            "severity": diagnosis["severity"],
            "settled": diagnosis["settled"],
        }
        return self._advance(investigation_id, state, "analyze", started, {"diagnosis": summary})

    def _reason(self, investigation_id: str, state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        reasoner = self._reasoner()
        if reasoner is None:
            llm = {"used": False, "reason": "not_configured"}
            return self._advance(investigation_id, state, "reason", started, {"llm": llm})
        diagnosis = self._get_document(investigation_id, "diagnosis")
        evidence = self._evidence(investigation_id)
        ctx = self._contexts(state.get("context"), state.get("acting_as"))
        reasoning = reasoner.reason(investigation_id, state, diagnosis, evidence, ctx)
        self._put_document(investigation_id, "reasoning", reasoning)
        llm = {
            "used": True,
            "model": reasoning.get("model"),
            "outcome": reasoning["outcome"]["outcome"],
            "input_tokens": reasoning["usage"]["input_tokens"],
            "output_tokens": reasoning["usage"]["output_tokens"],
        }
        return self._advance(investigation_id, state, "reason", started, {"llm": llm})

    def _propose_actions(
        self, investigation_id: str, state: dict[str, Any], event: dict[str, Any]
    ) -> dict[str, Any]:
        started = time.monotonic()
        diagnosis = self._get_document(investigation_id, "diagnosis")
        evidence = self._evidence(investigation_id)
        investigation = {
            "investigation_id": investigation_id,
            "requested_by": state.get("requested_by"),
            "acting_as": state.get("acting_as"),
        }
        actions = self._actions().propose(investigation, diagnosis, evidence, state.get("context"))
        return self._advance(investigation_id, state, "propose_actions", started, {"actions": actions})

    def _complete(
        self, investigation_id: str, state: dict[str, Any], event: dict[str, Any]
    ) -> dict[str, Any]:
        started = time.monotonic()
        diagnosis = self._get_document(investigation_id, "diagnosis")
        llm = state.get("llm") or {}
        reasoning = self._get_document(investigation_id, "reasoning") if llm.get("used") else None
        result = compose_result(diagnosis, reasoning, state)
        now = self._clock.now()
        self._store.put_detail(investigation_id, result["detail"], self._expires())
        state = self._advance(
            investigation_id,
            state,
            "complete",
            started,
            {"status": "completed"},
            record={**result["record"], "status": "completed", "completion_time": now},
        )
        self._release_slot(investigation_id, state)
        return state

    def _mark_failed(
        self, investigation_id: str, state: dict[str, Any], event: dict[str, Any]
    ) -> dict[str, Any]:
        error = event.get("error") or state.get("error") or {}
        name = str(error.get("Error") or "InvestigationFailed")
        message = _cause_message(error.get("Cause")) or name
        last = (state.get("steps") or [{}])[-1].get("step") if state.get("steps") else None
        failed_step = _next_step(last)
        self._store.update(
            investigation_id,
            {
                "status": "failed",
                "completion_time": self._clock.now(),
                "error": {
                    "error": "investigation_failed",
                    "message": f"The {failed_step} step failed: {message}",
                    "details": {"step": failed_step, "error_type": name},
                },
            },
        )
        self._release_slot(investigation_id, state)
        return {**state, "status": "failed"}

    # -- helpers ----------------------------------------------------------------------------------

    def _advance(
        self,
        investigation_id: str,
        state: dict[str, Any],
        step: str,
        started: float,
        changes: dict[str, Any],
        record: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        progress = PROGRESS[step]
        steps = [
            *(state.get("steps") or []),
            {
                "step": step,
                "progress": progress,
                "at": rfc3339_ms(self._clock.now()),
                "seconds": round(time.monotonic() - started, 3),
            },
        ]
        self._store.update(investigation_id, {**(record or {}), "progress_percent": progress, "steps": steps})
        return {**state, **changes, "progress_percent": progress, "steps": steps}

    def _put_document(self, investigation_id: str, name: str, document: Any) -> int:
        # Kept for the retention period (90 days by default): credentials (env values, tokens in log
        # tails) are masked first, names and keys kept. Later steps read this copy: what is stored.
        document = redact_for_storage(document)
        text = json.dumps(document, separators=(",", ":"), default=str)
        stored = self._store.put_document(investigation_id, name, document, self._expires())
        self._remember((investigation_id, name), text)
        return stored

    def _get_document(self, investigation_id: str, name: str) -> Any:
        # The steps of one investigation mostly run in one process (a warm Lambda container, the
        # local server): what this process wrote is read back from memory, not from DynamoDB.
        text = self._recent.get((investigation_id, name))
        if text is not None:
            return json.loads(text)
        return self._store.get_document(investigation_id, name)

    def _remember(self, key: tuple[str, str], text: str) -> None:
        with self._recent_lock:
            self._recent[key] = text
            while len(self._recent) > RECENT_DOCUMENTS:
                self._recent.pop(next(iter(self._recent)))

    def _evidence_document(self, investigation_id: str) -> dict[str, Any]:
        document = self._get_document(investigation_id, "evidence")
        if document is None:
            raise KubiliticsError(
                "The investigation's evidence is missing",
                code="investigation_failed",
                details={"investigation_id": investigation_id},
            )
        return dict(document)

    def _evidence(self, investigation_id: str) -> Evidence:
        document = self._evidence_document(investigation_id)
        if is_namespace_document(document):
            return merged_evidence(document)  # one view over every suspect (LLM digest, actions)
        if is_node_document(document):
            return evidence_of(document, [document["node"], *document["pods"]])
        if is_cluster_document(document):
            return cluster_evidence(document)
        return Evidence.from_dict(document)

    def _release_slot(self, investigation_id: str, state: dict[str, Any]) -> None:
        # Once per investigation, however often the step is retried.
        if state.get("requested_by") and self._store.claim_slot_release(investigation_id):
            release_slots(self._limiter, str(state["requested_by"]))

    def _expires(self) -> int:
        return int(self._clock.now()) + self._retention


def compose_result(
    diagnosis: dict[str, Any], reasoning: dict[str, Any] | None, state: dict[str, Any]
) -> dict[str, Any]:
    """The investigation's result from the rule diagnosis and, when it ran, the LLM's reasoning."""
    root = dict(diagnosis["root_cause"])
    summary = diagnosis["findings_summary"]
    outcome = (reasoning or {}).get("outcome") or {}
    if reasoning is not None:
        root = dict(reasoning["root_cause"])
        if outcome.get("outcome") == "adopted":
            summary = f"{root['summary']} (the AI model's hypothesis: the rules found no cause)"
        explanation = reasoning.get("explanation") or offline_explanation(diagnosis, root)
    else:
        explanation = offline_explanation(diagnosis, root)
    actions = state.get("actions") or []
    by_recommendation = {a["recommendation"]: a["action_id"] for a in actions if a.get("recommendation")}
    recommendations = []
    for rec in diagnosis.get("recommendations") or []:
        public = {"priority": rec["priority"], "action": rec["action"], "details": rec["details"]}
        if rec["action"] in by_recommendation:
            public["action_id"] = by_recommendation.pop(rec["action"])
        recommendations.append(public)
    llm = state.get("llm") or {}
    analysis: dict[str, Any] = {"mode": "rules+llm" if llm.get("used") else "rules", "llm": llm}
    if state.get("reason_error"):
        error = state["reason_error"]
        analysis["llm_fallback"] = {
            "error": error.get("Error"),
            "message": _cause_message(error.get("Cause")),
        }
    if reasoning is not None:
        analysis["llm_outcome"] = outcome
        analysis["tool_calls"] = reasoning.get("tool_calls") or []
    findings = [
        {k: f.get(k) for k in ("category", "summary", "confidence", "severity", "subject", "analyzer")}
        | ({"affects": f["affects"]} if f.get("affects") else {})  # node and cluster scope: the pods hit
        for f in diagnosis.get("findings") or []
    ]
    return {
        "record": {
            "severity": diagnosis["severity"],
            "findings_summary": summary,
            "recommendations": recommendations,
            "root_cause": root,
            "actions": [{k: a.get(k) for k in ("action_id", "action_type", "status")} for a in actions],
        },
        "detail": {
            "evidence": diagnosis.get("evidence") or [],
            "findings": findings,
            "explanation": explanation,
            "analysis": analysis,
            "settled": diagnosis.get("settled", True),
            "problems": diagnosis.get("problems") or [],
            **({"triage": diagnosis["triage"]} if diagnosis.get("triage") else {}),
        },
    }


def offline_explanation(diagnosis: dict[str, Any], root: dict[str, Any]) -> str:
    """The rule result in plain language (the offline provider's text: no model, no cost)."""
    from kubilitics.ai.findings import Citation
    from kubilitics.ai.providers.offline import explain

    cited = [Citation.from_dict(c).describe() for c in diagnosis.get("evidence") or []]
    return explain(
        {"root_cause": root, "evidence": cited, "recommendations": diagnosis.get("recommendations")}
    )


def _cause_message(cause: Any) -> str:
    """The message inside a Step Functions error cause (a Lambda error is JSON with errorMessage)."""
    if not cause:
        return ""
    try:
        parsed = json.loads(cause) if isinstance(cause, str) else cause
    except ValueError:
        return str(cause)[:500]
    if isinstance(parsed, dict):
        return str(parsed.get("errorMessage") or parsed.get("message") or parsed)[:500]
    return str(parsed)[:500]


def _next_step(last: str | None) -> str:
    order = list(PROGRESS)
    if last is None:
        return order[0]
    index = order.index(last) + 1 if last in order else len(order) - 1
    return order[min(index, len(order) - 1)]
