"""`make lambda-test`'s expectations (tests/lambda_runtime/cases.py): one for every events/ file of a
function, and the checks fail on wrong answers (not only pass on right ones)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.lambda_runtime import cases

REPO = Path(__file__).resolve().parents[2]
HTTP = {"requestContext": {"http": {"method": "GET"}}, "headers": {}}
WS = {"requestContext": {"routeKey": "$default", "requestId": "req-1"}}


def test_every_event_of_every_function_has_an_expectation_and_the_reverse():
    for folder in sorted(p.name for p in (REPO / "functions").iterdir() if (p / "app.py").is_file()):
        files = {p.name for p in (REPO / "events" / folder).glob("*.json")}
        assert files and files == set(cases.EXPECTATIONS[folder]), folder


def response(status: int, body: object, request_id: str = "req-1") -> dict:
    headers = {"content-type": "application/json", "x-request-id": request_id}
    return {"statusCode": status, "headers": headers, "body": json.dumps(body)}


def error(code: str, trace_id: str = "req-1") -> dict:
    return {"error": code, "message": "m", "details": {}, "timestamp": "t", "trace_id": trace_id}


def test_http_answers():
    assert cases.check(cases.Expect(200, ("items",)), HTTP, response(200, {"items": []}), []) == []
    assert cases.check(cases.Expect(200, ("items",)), HTTP, response(500, {"items": []}), []) == [
        "statusCode 500 (expected 200)"
    ]
    assert "lacks ['items']" in cases.check(cases.Expect(200, ("items",)), HTTP, response(200, {}), [])[0]
    not_found = cases.Expect(404, error="not_found")
    assert cases.check(not_found, HTTP, response(404, error("not_found")), []) == []
    assert "standard error body" in cases.check(not_found, HTTP, response(404, {"error": "x"}), [])[0]
    assert "trace_id" in cases.check(not_found, HTTP, response(404, error("not_found", "other")), [])[0]
    raised = {"errorType": "TypeError", "errorMessage": "boom"}
    assert cases.check(cases.Expect(200), HTTP, raised, []) == ["the function raised TypeError: boom"]


def test_websocket_answers_are_what_is_posted_to_the_connection():
    bad = cases.Expect(200, error="validation_failed", posted=("ERROR",))
    posted = [{"type": "ERROR", "status": 400, "error": error("validation_failed")}]
    assert cases.check(bad, WS, {"statusCode": 200}, posted) == []
    assert "posted ()" in cases.check(bad, WS, {"statusCode": 200}, [])[0]
    assert cases.check(cases.Expect(200), WS, {"statusCode": 200}, [{"type": "CHAT"}]) != []
