"""How far the LLM's answer may move the rule result, and what is sent (no I/O)."""

from __future__ import annotations

import json

from kubilitics.ai.evidence import Evidence, LogTail, ObjectRef
from kubilitics.ai.reasoning import (
    LLM_CONFIDENCE_CAP,
    Verdict,
    build_request,
    compact_evidence,
    explanation_text,
    merge,
    parse_verdict,
)

APP_CRASH = {"category": "app_crash", "summary": "exits 1", "confidence": 0.9}
UNKNOWN = {"category": "unknown", "summary": "pods not ready; no rule explains it", "confidence": 0.3}
HEALTHY = {"category": "healthy", "summary": "fine", "confidence": 0.9}


def test_the_verdict_is_the_last_json_line_naming_a_known_category():
    text = 'Looks like memory. {"category": "oom_killed", "confidence": 0.8, "summary": "a"}\n' + json.dumps(
        {"category": "app_crash", "confidence": 85, "summary": "It panics."}
    )
    assert parse_verdict(text) == Verdict("app_crash", 0.85, "It panics.")
    assert parse_verdict('{"category": "gremlins", "confidence": 1}') is None
    assert parse_verdict("no verdict here") is None
    assert explanation_text(text).startswith("Looks like memory.")
    assert "It panics" not in explanation_text(text)


def test_agreement_refines_the_summary_and_keeps_the_rule_confidence():
    root, outcome = merge(APP_CRASH, Verdict("app_crash", 0.6, "orders panics on a nil config."))
    assert root == {**APP_CRASH, "summary": "orders panics on a nil config."}
    assert outcome["outcome"] == "agreed"


def test_a_confident_rule_result_is_never_overruled():
    for rule in (APP_CRASH, HEALTHY):
        root, outcome = merge(rule, Verdict("dns_failure", 0.99, "DNS"))
        assert root == rule
        assert outcome == {
            "outcome": "overruled_by_rules",
            "verdict": {"category": "dns_failure", "confidence": 0.99, "summary": "DNS"},
        }


def test_where_the_rules_found_no_cause_the_model_may_name_one_with_a_capped_confidence():
    root, outcome = merge(UNKNOWN, Verdict("dns_failure", 0.95, "The app cannot resolve db.internal."))
    assert root == {
        "category": "dns_failure",
        "summary": "The app cannot resolve db.internal.",
        "confidence": LLM_CONFIDENCE_CAP,
        "source": "llm",
    }
    assert outcome["outcome"] == "adopted"
    # ...but it cannot declare away problems the rules saw.
    assert merge(UNKNOWN, Verdict("healthy", 0.9, "all good"))[0] == UNKNOWN
    assert merge(UNKNOWN, None) == (UNKNOWN, {"outcome": "no_verdict"})


def test_what_is_sent_is_a_digest_not_the_raw_objects():
    pod = {
        "kind": "Pod",
        "metadata": {"name": "orders", "namespace": "shop", "managedFields": [{"x": "y" * 5000}]},
        "spec": {
            "containers": [{"name": "orders", "image": "orders:2.3.1", "env": [{"name": "A", "value": "b"}]}]
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "orders",
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"reason": "Error", "exitCode": 1}},
                }
            ],
        },
    }
    event = {
        "metadata": {"name": "e1", "uid": "u1"},
        "type": "Warning",
        "reason": "BackOff",
        "message": "Back-off restarting failed container",
        "count": 7,
        "involvedObject": {"kind": "Pod", "name": "orders", "namespace": "shop"},
    }
    tail = LogTail("shop", "orders", "orders", previous=True, lines=tuple(f"line {i}" for i in range(60)))
    ev = Evidence.build(ObjectRef("Pod", "orders", "shop"), [pod], [event], [tail], collected_at=1.0)
    digest = compact_evidence(ev)
    assert digest["pods"][0]["containers"][0]["waiting"] == "CrashLoopBackOff"
    assert digest["pods"][0]["containers"][0]["last_terminated"] == {"reason": "Error", "exitCode": 1}
    assert digest["warning_events"][0]["count"] == 7
    assert digest["logs"][0]["last_lines"] == [f"line {i}" for i in range(55, 60)]
    assert "managedFields" not in json.dumps(digest) and "env" not in json.dumps(digest)
    request = build_request(
        {"resource": {"kind": "Pod", "namespace": "shop", "name": "orders"}, "symptoms": ["crashing"]},
        {"root_cause": APP_CRASH, "findings": [], "recommendations": []},
        ev,
        "quick",
    )
    assert request.max_turns == 2
    assert "Investigate Pod shop/orders" in request.task and "app_crash" in request.task
