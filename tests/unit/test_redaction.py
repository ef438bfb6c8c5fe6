"""Redaction: what must never reach an LLM, and what comes back into the answer."""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubilitics.ai.redaction import Redactor, looks_like_secret, sensitive_name

CANARY = "kc-canary-7Hq2Zp9Xw4Lm8Rt3"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_object() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db-credentials",
            "namespace": "shop",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                    {"kind": "Secret", "data": {"password": b64(CANARY)}}
                ),
                "team": "payments",
            },
            "managedFields": [{"manager": "kubectl"}],
        },
        "type": "Opaque",
        "data": {"password": b64(CANARY), "username": b64("shop_app")},
        "stringData": {"dsn": f"postgres://shop_app:{CANARY}@db:5432/shop"},
    }


def test_a_secret_keeps_its_key_names_and_loses_every_value():
    out = Redactor().redact(secret_object())
    assert "data" not in out and "stringData" not in out
    assert out["data_keys"] == ["dsn", "password", "username"]
    assert out["metadata"]["annotations"] == {"team": "payments"}  # last-applied copy dropped
    assert "managedFields" not in out["metadata"]
    assert out["metadata"]["name"] == "db-credentials" and out["type"] == "Opaque"
    dumped = json.dumps(out)
    assert CANARY not in dumped and b64(CANARY) not in dumped


def test_a_secret_value_seen_once_is_masked_wherever_it_appears_later():
    redactor = Redactor()
    redactor.redact(secret_object())
    line = redactor.redact_text(f"connecting with {CANARY} (base64 {b64(CANARY)})")
    assert CANARY not in line and b64(CANARY) not in line
    assert re.fullmatch(r"connecting with \[\[SECRET_\d\]\] \(base64 \[\[SECRET_\d\]\]\)", line)


def test_learn_primes_the_redactor_without_output():
    redactor = Redactor()
    redactor.learn([secret_object()])
    assert redactor.redact_text(f"token is {CANARY}") == "token is [[SECRET_1]]"


def test_env_values_are_masked_by_name_or_by_look_and_references_are_kept():
    pod = {
        "kind": "Pod",
        "metadata": {"name": "api-7d9f8c6b5-x2x4z", "namespace": "shop"},
        "spec": {
            "containers": [
                {
                    "name": "api",
                    "image": "registry.example.com/shop/api:1.4.2",
                    "env": [
                        {"name": "DATABASE_PASSWORD", "value": CANARY},
                        {"name": "FEATURE_SEED", "value": "Zq81Lk2Xr9Pw4Tn6Vb3Q"},
                        {"name": "LOG_LEVEL", "value": "debug"},
                        {"name": "AUTH_ENABLED", "value": "true"},
                        {"name": "UPSTREAM", "value": "http://10.0.3.7:8080"},
                        {
                            "name": "DB_PASS",
                            "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}},
                        },
                    ],
                }
            ]
        },
        "status": {"podIP": "10.1.2.3", "hostIP": "192.168.10.4"},
    }
    out = Redactor().redact(pod)
    env = {item["name"]: item for item in out["spec"]["containers"][0]["env"]}
    assert env["DATABASE_PASSWORD"]["value"] == "[[PASSWORD_1]]"
    assert env["FEATURE_SEED"]["value"] == "[[SECRET_1]]"  # random-looking: masked despite the name
    assert env["LOG_LEVEL"]["value"] == "debug"
    assert env["AUTH_ENABLED"]["value"] == "true"
    assert env["UPSTREAM"]["value"] == "http://[[IP_1]]:8080"
    assert env["DB_PASS"]["valueFrom"] == {"secretKeyRef": {"name": "db-credentials", "key": "password"}}
    assert out["status"] == {"podIP": "[[IP_2]]", "hostIP": "[[IP_3]]"}
    assert out["metadata"]["name"] == "api-7d9f8c6b5-x2x4z"
    assert out["spec"]["containers"][0]["image"] == "registry.example.com/shop/api:1.4.2"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("login ok password=hunter22 user=bob", "login ok password=[[PASSWORD_1]] user=bob"),
        ('{"db_password": "hunter22", "retries": 3}', '{"db_password": "[[PASSWORD_1]]", "retries": 3}'),
        ("Authorization: Bearer abcdefghijklmnop123", "Authorization: Bearer [[TOKEN_1]]"),
        ("curl -H 'Authorization: Basic YWxpY2U6c2VjcmV0MTIz'", "curl -H 'Authorization: Basic [[TOKEN_1]]'"),
        ("DSN postgres://app:s3cr3tpw@db:5432/x", "DSN postgres://app:[[PASSWORD_1]]@db:5432/x"),
        ("key AKIAIOSFODNN7EXAMPLE used", "key [[AWS_KEY_1]] used"),
        (
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key=[[AWS_KEY_1]]",
        ),
        ("using sk-ant-api03-AbCdEfGhIjKlMnOp", "using [[API_KEY_1]]"),
        ("push with ghp_abcdefghijklmnopqrstuvwxyz0123", "push with [[TOKEN_1]]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
            "jwt [[TOKEN_1]] ok",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nnext",
            "[[PRIVATE_KEY_1]]\nnext",
        ),
        ("mail ops@example.com now", "mail [[EMAIL_1]] now"),
        ("dial tcp 10.96.0.10:53: i/o timeout", "dial tcp [[IP_1]]:53: i/o timeout"),
        ("peer fe80::1ff:fe23:4567:890a down", "peer [[IP_1]] down"),
    ],
)
def test_credentials_and_identities_in_text_are_masked(line: str, expected: str):
    assert Redactor().redact_text(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "Back-off restarting failed container api in pod api-7d9f8c6b5-x2x4z_shop",
        "secretName: db-credentials tokenExpirationSeconds: 3600",
        "started at 14:23:45, listening on 0.0.0.0:8080 and [::]:8080, health on 127.0.0.1",
        "image nginx:1.25.3 pulled; replicas: 3; memory limit 512Mi",
        "password: true",
    ],
)
def test_ordinary_diagnostic_text_is_left_alone(line: str):
    redactor = Redactor()
    assert redactor.redact_text(line) == line
    assert redactor.count == 0


def test_emails_and_ips_come_back_in_the_answer_credentials_do_not():
    redactor = Redactor()
    sent = redactor.redact_text("node 10.0.3.7 owned by ops@example.com rejects password=hunter22")
    assert sent == "node [[IP_1]] owned by [[EMAIL_1]] rejects password=[[PASSWORD_1]]"
    answer = "Node [[IP_1]] is NotReady; tell [[EMAIL_1]]. Rotate [[PASSWORD_1]]. [[IP_9]] is unknown."
    assert redactor.restore(answer) == (
        "Node 10.0.3.7 is NotReady; tell ops@example.com. Rotate [[PASSWORD_1]]. [[IP_9]] is unknown."
    )
    assert redactor.restore_object({"name": "x", "ips": ["[[IP_1]]"], "n": 3}) == {
        "name": "x",
        "ips": ["10.0.3.7"],
        "n": 3,
    }


def test_one_value_gets_one_placeholder_per_request():
    redactor = Redactor()
    assert redactor.redact_text("a 10.0.0.1 b 10.0.0.2 c 10.0.0.1") == "a [[IP_1]] b [[IP_2]] c [[IP_1]]"
    assert Redactor().redact_text("10.0.0.2") == "[[IP_1]]"  # a new request starts afresh


def test_names_and_looks():
    assert sensitive_name("DB_PASSWORD") and sensitive_name("apiKey") and sensitive_name("client_secret")
    assert not sensitive_name("secretName") and not sensitive_name("tokenExpirationSeconds")
    assert not sensitive_name("LOG_LEVEL")
    assert looks_like_secret("Zq81Lk2Xr9Pw4Tn6Vb3Q")
    assert not looks_like_secret("production") and not looks_like_secret("http://svc.ns:8080/path/v1")


@given(st.text(max_size=200))
def test_redaction_is_idempotent(text: str):
    redactor = Redactor()
    once = redactor.redact_text(text)
    assert redactor.redact_text(once) == once
