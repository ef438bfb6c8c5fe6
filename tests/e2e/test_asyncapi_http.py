"""The local server serves /asyncapi.json (issue 16, item 1), and what its sockets answer matches it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
from websockets.sync.client import connect

from tests.support import dev_token

pytestmark = pytest.mark.cluster


def payload(document: dict[str, Any], message: str) -> jsonschema.Draft7Validator:
    schema = {**document["components"]["messages"][message]["payload"], "components": document["components"]}
    return jsonschema.Draft7Validator(schema)


def test_asyncapi_document_is_served_without_a_token(local_server):
    response = httpx.get(local_server.url + "/asyncapi.json", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == {"/api/v1/ws", "/api/v1/shell", "/api/v1/ai/chat"}
    ai = httpx.get(local_server.ai_url + "/asyncapi.json", timeout=10)
    assert ai.status_code == 200
    assert [c["address"] for c in ai.json()["channels"].values()] == ["/api/v1/ai/chat"]


def test_what_the_socket_answers_matches_the_document(local_server, k8s_cluster):
    document = httpx.get(local_server.url + "/asyncapi.json", timeout=10).json()
    url = local_server.url.replace("http://", "ws://") + "/api/v1/ws?token=" + dev_token("asyncapi-e2e")
    with connect(url, open_timeout=10) as ws:
        ws.send(json.dumps({"action": "subscribe", "resource_kind": "Pod", "subscription_id": "asyncapi"}))
        subscribed = json.loads(ws.recv(timeout=10))
        payload(document, "subscribedWatch").validate(subscribed)
        ws.send("{not json")
        error = json.loads(ws.recv(timeout=10))
        payload(document, "error").validate(error)
        assert error["error"]["error"] == "validation_failed"
        ws.send(json.dumps({"action": "unsubscribe", "subscription_id": "asyncapi"}))
        payload(document, "unsubscribed").validate(json.loads(ws.recv(timeout=10)))


def test_what_the_chat_answers_matches_the_document(local_server, k8s_cluster):
    document = httpx.get(local_server.url + "/asyncapi.json", timeout=10).json()
    url = local_server.url.replace("http://", "ws://") + "/api/v1/ai/chat?token=" + dev_token("asyncapi-chat")
    answers = []
    with connect(url, open_timeout=10) as ws:
        for question in (
            {"message": "hello"},
            {"message": "what is broken here?", "context": {"namespace": "default"}, "include_logs": False},
            {"message": ""},
        ):
            ws.send(json.dumps(question))
            answer = json.loads(ws.recv(timeout=60))
            payload(document, "chatAnswer" if question["message"] else "error").validate(answer)
            answers.append(answer)
    assert answers[1]["scope"]["kind"] == "Namespace" and "root_cause" in answers[1]
    assert answers[2]["error"]["error"] in ("validation_failed", "missing_required_field")
