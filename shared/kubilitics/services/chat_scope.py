"""What a chat message is about, and the roll-up answer for a namespace, a node or the cluster.

A message's `context` is optional and may be partial (services/chat.py decides with these pieces):

- a kind and a name: that object (Namespace, Node: their roll-ups; anything else: its diagnosis);
- a kind without a name: every object of that kind in the namespace (the namespace's roll-up kept to
  that kind); Node without a name: the cluster's nodes; Namespace without a name: the cluster;
- `namespace` alone: that namespace's roll-up;
- no context: the words of the question. A word that is a namespace the caller may see routes the
  question there, a word that is a workload's name in that namespace (or the caller's default one)
  routes it to that workload; a question that names nothing but asks how things are ("what is broken
  in my cluster?") is about the cluster. A greeting or a general question reads nothing.

Routing reads at most one list of namespaces and one list per workload kind of one namespace (each
one page), only when the question has a word that could be a name; words are cut with a plain
character filter (no regular expression), at most MAX_WORDS of them.

The roll-ups are the investigations' (ai/triage.py, ai/node_triage.py, ai/cluster_triage.py), read
with the caller's context: what their RBAC refuses is the API server's 403.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

MAX_WORDS = 200
MAX_SUGGESTED_PROBLEMS = 10  # `investigate` suggestions in one answer (one per problem, ranked)
MAX_LISTED_PROBLEMS = 10  # problems spelled out in a rules answer
ROLLUP_KINDS = ("Cluster", "Namespace", "Node")
# The kinds whose names a question is matched against (one list each in the namespace), in the order
# a name found in several is taken; Pods only when the question says "pod".
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job", "Service")
NAME_LIST_LIMIT = 500  # objects per list read for routing


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


KIND_WORDS: Mapping[str, str] = {
    **dict.fromkeys(("deployment", "deployments", "deploy", "deploys"), "Deployment"),
    **dict.fromkeys(("statefulset", "statefulsets", "sts"), "StatefulSet"),
    **dict.fromkeys(("daemonset", "daemonsets", "ds"), "DaemonSet"),
    **dict.fromkeys(("cronjob", "cronjobs"), "CronJob"),
    **dict.fromkeys(("job", "jobs"), "Job"),
    **dict.fromkeys(("service", "services", "svc"), "Service"),
    **dict.fromkeys(("pod", "pods"), "Pod"),
    **dict.fromkeys(("node", "nodes"), "Node"),
    **dict.fromkeys(("namespace", "namespaces", "ns"), "Namespace"),
    **dict.fromkeys(("cluster", "clusters"), "Cluster"),
}
# Words that ask how things are: a question with one of them and no name is about the cluster.
STATE_WORDS = _word_set(
    """broken break breaks breaking fail fails failing failed failure failures wrong health healthy
    unhealthy status problem problems issue issues error errors erroring crash crashes crashing
    crashloop crashloopbackoff down outage why working happening triage investigate diagnose
    pending stuck slow degraded ready notready restarting restarts trouble ok okay fine"""
)
# Common words that are never taken for a name (so "hi" or "and now?" reads nothing).
STOP_WORDS = _word_set(
    """a an and are as at be been but by can could did do does doing for from get got has have
    having he hello help her hey hi him his how i if in into is it its itself just let me mine my
    no not now of off on once only or our out over please same she should so some still than
    thank thanks that the their them then there these they this those through to too try under
    until up us very was we were what when where which while who whom why will with would yes
    you your again all any anything everything something nothing more most other look looks
    see show tell explain here right going go new old last first one two three time
    today yesterday since after before about above below against between each few further
    own such both also use used using want need know think make made"""
)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


@dataclass(frozen=True)
class Scope:
    """What an answer reads: `kind` Cluster, Namespace, Node (roll-ups) or a resource kind."""

    kind: str
    name: str | None = None
    namespace: str | None = None
    only_kind: str | None = None  # a kind without a name: every object of that kind
    routed: str = "context"  # "context" (the message's context) or "words" (named in the question)

    @property
    def rollup(self) -> bool:
        return self.kind in ROLLUP_KINDS

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.name:
            out["name"] = self.name
        if self.only_kind:
            out["resource_kind"] = self.only_kind
        out["routed"] = self.routed
        return out


# ---- words -----------------------------------------------------------------------------------------


def words(message: str) -> list[str]:
    """The message's words as Kubernetes names could be spelled (lower case, letters, digits, '-' and
    '.'), at most MAX_WORDS: a character filter and a split, linear in the message."""
    cleaned = "".join(c if c in _NAME_CHARS else " " for c in message.lower())
    out: list[str] = []
    for word in cleaned.split():
        word = word.strip(".-")
        if word and len(word) <= 253:
            out.append(word)
            if len(out) >= MAX_WORDS:
                break
    return out


def candidates(tokens: list[str]) -> list[str]:
    """The words that could be a namespace's or a workload's name, in order, once each."""
    seen: dict[str, None] = {}
    for t in tokens:
        if (
            len(t) >= 2
            and t not in STOP_WORDS
            and t not in KIND_WORDS
            and t not in STATE_WORDS
            and any(c.isalpha() for c in t)
        ):
            seen.setdefault(t, None)
    return list(seen)


def kind_hint(tokens: list[str]) -> str | None:
    """The first kind the question names ("the orders deployment": Deployment)."""
    return next((KIND_WORDS[t] for t in tokens if t in KIND_WORDS), None)


def asks_about_state(tokens: list[str]) -> bool:
    return any(t in STATE_WORDS for t in tokens)


def match_namespace(names: list[str], namespaces: Collection[str]) -> str | None:
    return next((n for n in names if n in namespaces), None)


def match_workload(
    names: list[str], listed: Mapping[str, Collection[str]], hint: str | None
) -> tuple[str, str] | None:
    """(kind, name) of the first listed object a word names; the kind the question names first."""
    order = sorted(listed, key=lambda kind: kind != hint)  # stable: the hinted kind first
    for kind in order:
        for name in names:
            if name in listed[kind]:
                return kind, name
    return None


# ---- the roll-up in plain language -----------------------------------------------------------------


def is_rollup(facts: Mapping[str, Any] | None) -> bool:
    return bool(facts) and (facts or {}).get("scope", {}).get("kind") in ROLLUP_KINDS


def problems_of(facts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ranked problems (findings with citations; a node roll-up also lists the pods each one
    affects, which are not problems of their own)."""
    return [f for f in facts.get("findings") or [] if "citations" in f]


def subject_label(subject: Mapping[str, Any]) -> str:
    ns = subject.get("namespace")
    return f"{subject.get('kind')} {ns + '/' if ns else ''}{subject.get('name')}"


def scope_label(scope: Mapping[str, Any]) -> str:
    if scope["kind"] == "Cluster":
        return "the cluster" + (" (its nodes)" if scope.get("resource_kind") == "Node" else "")
    label = f"{scope['kind']} {scope.get('name')}"
    if scope.get("resource_kind"):
        label += f" ({scope['resource_kind']} objects only)"
    return label


def _words_of(category: str) -> str:
    return category.replace("_", " ")


def _own_summary(problem: Mapping[str, Any]) -> str:
    """A cluster roll-up prefixes each summary with its namespace and subject: said once here."""
    subject = problem.get("subject") or {}
    text = str(problem.get("summary") or "")
    prefix = f"Namespace {subject.get('namespace')}: {subject.get('kind')} {subject.get('name')}: "
    if text.startswith(prefix):
        return text[len(prefix) :]
    prefix = f"{subject.get('kind')} {subject.get('name')}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _headline(facts: Mapping[str, Any], problems: list[dict[str, Any]]) -> str:
    triage = facts.get("triage") or {}
    kind = facts["scope"]["kind"]
    if kind == "Namespace":
        return (
            f"{triage.get('affected')} of {triage.get('workloads')} workload(s) affected, "
            f"{len(problems)} problem(s)"
        )
    if kind == "Cluster":
        nodes = triage.get("nodes") or {}
        return (
            f"{len(nodes.get('not_ready') or [])} of {nodes.get('total')} node(s) not ready, "
            f"{triage.get('namespaces_affected')} of {triage.get('namespaces_total')} namespace(s) "
            f"with problems, {len(problems)} problem(s)"
        )
    return f"{len(problems)} problem(s)"


def rollup_answer(facts: Mapping[str, Any]) -> str:
    """The ranked roll-up in plain language: the headline, each problem most severe first, where to
    start, and what was not looked at."""
    scope = facts["scope"]
    where = scope_label(scope)
    problems = problems_of(facts)
    lines: list[str] = []
    if facts.get("fallback"):
        lines.append(str(facts["fallback"]))
    if not problems:
        lines.append(str(facts["root_cause"]["summary"]))
    else:
        lines.append(f"What is broken in {where}: {_headline(facts, problems)}, most severe first:")
        for i, p in enumerate(problems[:MAX_LISTED_PROBLEMS], start=1):
            affects = f" (takes down {', '.join(p['affects'][:3])})" if p.get("affects") else ""
            lines.append(
                f"{i}. {subject_label(p['subject'])} [{p.get('severity')}, {_words_of(p['category'])}]"
                f"{affects}: {_own_summary(p)}"
            )
        if len(problems) > MAX_LISTED_PROBLEMS:
            lines.append(f"... and {len(problems) - MAX_LISTED_PROBLEMS} more.")
        recommendations = facts.get("recommendations") or []
        if recommendations:
            first = recommendations[0]
            advice = first.get("details") or first.get("action") if isinstance(first, dict) else first
            lines.append(f"Start with {subject_label(problems[0]['subject'])}: {advice}")
    unexamined = [n for n in (facts.get("triage") or {}).get("namespaces") or [] if not n.get("examined")]
    if unexamined:
        lines.append(
            "Also suspect but not examined (bound reached): "
            + "; ".join(f"{n['namespace']} ({n.get('suspects')} suspect(s))" for n in unexamined[:5])
        )
    if problems:
        lines.append("Ask me about any of them, or start an investigation for the full evidence.")
    return "\n".join(lines)


def rollup_suggestions(facts: Mapping[str, Any]) -> list[dict[str, str]]:
    """One `investigate` suggestion per problem (ranked, at most MAX_SUGGESTED_PROBLEMS), then the top
    recommendation as an action and a follow-up question."""
    where = scope_label(facts["scope"])
    problems = problems_of(facts)
    if not problems:
        return [
            {"type": "follow_up", "text": f"Is anything in {where} slower or less available than expected?"},
            {"type": "investigate", "text": "List the current insights (GET /api/v1/ai/insights)"},
        ]
    out = [
        {
            "type": "investigate",
            "text": f"Investigate {subject_label(p['subject'])}: {_words_of(p['category'])}"
            if p["category"] != "unknown"
            else f"Start a full investigation of {subject_label(p['subject'])}",
        }
        for p in problems[:MAX_SUGGESTED_PROBLEMS]
    ]
    recommendations = facts.get("recommendations") or []
    if recommendations:
        first = recommendations[0]
        out.append({"type": "action", "text": str(first.get("details") or first)[:300]})
    top = subject_label(problems[0]["subject"])
    out.append({"type": "follow_up", "text": f"What changed in {top} recently (image, config, limits)?"})
    return out


def slim_rollup(scope: Scope, diagnosis: Mapping[str, Any]) -> dict[str, Any]:
    """The chat's facts from a roll-up diagnosis: what the rules answer and the model read."""
    return {
        "scope": scope.to_dict(),
        "resource": diagnosis.get("resource"),
        "root_cause": diagnosis["root_cause"],
        "severity": diagnosis.get("severity"),
        "findings_summary": diagnosis.get("findings_summary"),
        "findings": [
            {
                k: (f[k][:5] if k == "citations" else f[k])
                for k in ("subject", "category", "severity", "confidence", "summary", "affects", "citations")
                if k in f
            }
            for f in (diagnosis.get("findings") or [])[:40]
        ],
        "evidence": list(diagnosis.get("evidence") or [])[:10],
        "recommendations": diagnosis.get("recommendations") or [],
        "triage": diagnosis.get("triage"),
        "notes": list(diagnosis.get("notes") or [])[:10],
    }
