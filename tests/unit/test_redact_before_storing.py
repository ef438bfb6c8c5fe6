"""What is kept at rest is redacted first (security review L5): investigation evidence documents (kept
90 days) and chat history. Each test stores a secret-bearing value through the service, then reads
the stored item back from DynamoDB (moto) and finds no trace of the secret, while the names the
diagnosis needs are still there."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
from kubilitics.ai.evidence import Evidence, LogTail, ObjectRef
from kubilitics.auth.tokens import Principal
from kubilitics.clock import SystemClock

DB_PASSWORD = "hunter2hunter2"
AWS_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def state_items(dynamodb: Any) -> str:
    """Every item of the state table, as text (documents are gzip: decoded by the store instead)."""
    from kubilitics.container import get_container

    items = dynamodb.scan(TableName=get_container().settings.state_table)["Items"]
    return json.dumps(items, default=str)


# ---- investigation evidence ------------------------------------------------------------------------


def secret_bearing_evidence(*_args: Any, **_kwargs: Any) -> Evidence:
    evidence = Evidence(target=ObjectRef("Pod", "api-7d9f8c6b5-x2x4z", "shop"), collected_at=time.time())
    evidence.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "api-7d9f8c6b5-x2x4z", "namespace": "shop", "uid": "u-1"},
            "spec": {
                "containers": [
                    {
                        "name": "api",
                        "image": "registry.example.com/shop/api:1.4.2",
                        "args": ["--db-password", DB_PASSWORD, "--port", "8080"],
                        "env": [
                            {"name": "PASSWORD", "value": DB_PASSWORD},
                            {"name": "LOG_LEVEL", "value": "debug"},
                            {"name": "DB_HOST", "value": "db.shop.svc"},
                        ],
                    }
                ]
            },
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {"name": "api", "ready": True, "restartCount": 0, "state": {"running": {}}}
                ],
            },
        }
    )
    evidence.logs.append(
        LogTail(
            "shop",
            "api-7d9f8c6b5-x2x4z",
            "api",
            lines=(
                f"connecting to db.shop.svc with password={DB_PASSWORD}",
                f"db login {DB_PASSWORD} accepted",  # bare: masked because the env var's value was seen
                "listening on :8080",
            ),
        )
    )
    return evidence


@pytest.fixture()
def tasks(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from kubilitics.container import get_container
    from kubilitics.services import investigation_tasks
    from kubilitics.services.investigation_tasks import InvestigationTasks

    monkeypatch.setattr(investigation_tasks, "gather_evidence", secret_bearing_evidence)
    kube = SimpleNamespace(
        resource_type=lambda _ctx, kind: SimpleNamespace(kind=kind, namespaced=True),
        get=lambda *_args: {},
    )
    store = get_container().investigation_store

    def build() -> InvestigationTasks:
        return InvestigationTasks(
            kube=kube,
            store=store,
            contexts=lambda *_args: "dev",
            actions=lambda: None,  # type: ignore[arg-type, return-value]
            reasoner=lambda: None,
            rate_limiter=None,  # type: ignore[arg-type]
            clock=SystemClock(),
            retention_seconds=90 * 86400,
        )

    store.create({"investigation_id": "inv-secret", "status": "in_progress", "start_time": time.time()})
    return SimpleNamespace(build=build, store=store)


def test_the_evidence_document_is_stored_without_the_env_value_and_log_secrets(tasks: Any, aws: Any):
    state = {
        "resource": {"kind": "Pod", "namespace": "shop", "name": "api-7d9f8c6b5-x2x4z"},
        "context": "dev",
        "investigation_scope": "standard",
    }
    state = tasks.build().handle({"task": "gather", "investigation_id": "inv-secret", "state": state})

    stored = tasks.store.get_document("inv-secret", "evidence")  # read back from DynamoDB
    text = json.dumps(stored)
    assert DB_PASSWORD not in text and DB_PASSWORD not in state_items(aws)
    pod = stored["objects"]["Pod/shop/api-7d9f8c6b5-x2x4z"]
    container = pod["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env == {"PASSWORD": "[[REDACTED_PASSWORD_1]]", "LOG_LEVEL": "debug", "DB_HOST": "db.shop.svc"}
    assert container["args"] == ["--db-password", "[[REDACTED_PASSWORD_1]]", "--port", "8080"]
    assert stored["logs"][0]["lines"] == [
        "connecting to db.shop.svc with password=[[REDACTED_PASSWORD_1]]",
        "db login [[REDACTED_PASSWORD_1]] accepted",
        "listening on :8080",
    ]

    # The next step, in a fresh process (nothing in memory), diagnoses from the stored copy.
    tasks.build().handle({"task": "analyze", "investigation_id": "inv-secret", "state": state})
    diagnosis = tasks.store.get_document("inv-secret", "diagnosis")
    assert diagnosis["root_cause"]["category"]
    assert DB_PASSWORD not in json.dumps(diagnosis)


# ---- chat history ----------------------------------------------------------------------------------


def test_a_chat_message_is_stored_without_the_aws_key_it_contains(aws: Any):
    from kubilitics.container import get_container
    from kubilitics.services.chat import ChatService, ChatSession

    history = get_container().chat_history
    allowed = SimpleNamespace(allowed=True, limit=50, reset_after=0)
    # An empty cluster: the message's words name nothing there, and the cluster it asks about is healthy.
    empty = SimpleNamespace(
        resource_type=lambda _ctx, kind: SimpleNamespace(
            kind=kind, namespaced=kind not in ("Node", "Namespace")
        ),
        list_objects=lambda *_args, **_kw: {"items": []},
    )
    chat = ChatService(
        kube=empty,  # type: ignore[arg-type]
        contexts=lambda *_args: None,
        history=history,
        ledger=None,
        provider=lambda: SimpleNamespace(name="offline (rules)"),  # no key: the rules answer
        config=SimpleNamespace(
            effective=lambda: SimpleNamespace(chat_settings=SimpleNamespace(context_window_messages=10))
        ),
        rate_limiter=SimpleNamespace(hit=lambda *_args: allowed),
        revocations=SimpleNamespace(is_revoked=lambda *_args: False),
        clock=SystemClock(),
    )
    now = time.time()
    principal = Principal(
        sub="alice", scopes=frozenset({"read"}), token_type="user", jti="jti-1", expires_at=int(now) + 3600
    )
    session = ChatSession("chat-secret", principal, "dev", now, now)
    message = (
        f"my deploy fails with aws_access_key_id={AWS_ACCESS_KEY} and "
        f"aws_secret_access_key={AWS_SECRET_KEY}; also tried key {AWS_ACCESS_KEY}"
    )
    reply = json.loads(chat.answer(session, json.dumps({"message": message}), "trace-1").text)
    assert reply["type"] == "CHAT", reply

    [exchange] = history.recent("chat-secret", 5)  # read back from DynamoDB
    assert exchange["user"] == (
        "my deploy fails with aws_access_key_id=[[REDACTED_AWS_KEY_1]] and "
        "aws_secret_access_key=[[REDACTED_AWS_KEY_2]]; also tried key [[REDACTED_AWS_KEY_1]]"
    )
    assert exchange["assistant"] == reply["response"]  # nothing secret in it: kept as answered
    raw = state_items(aws)
    assert "chat#chat-secret" in raw
    assert AWS_ACCESS_KEY not in raw and AWS_SECRET_KEY not in raw
