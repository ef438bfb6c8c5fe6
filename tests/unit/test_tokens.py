"""Tokens: claims, lifetimes by type, expiry, signatures, scopes, and RS256 keys from a JWKS URL."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from kubilitics.auth.tokens import Principal, TokenCodec, parse_scopes
from kubilitics.errors import KubiliticsError

NOW = 1_800_000_000.0
codec = TokenCodec(secret="s3cret-for-kubilitics-token-tests")


def test_minted_token_carries_every_claim_of_the_reference():
    token, claims = codec.mint(
        sub="alice",
        scopes=["write", "read"],
        token_type="user",
        now=NOW,
        cluster_id="prod",
        namespace="team-a",
    )
    decoded = jwt.decode(
        token,
        "s3cret-for-kubilitics-token-tests",
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded == claims
    assert decoded["scope"] == "read,write"
    assert decoded["exp"] - decoded["iat"] == 24 * 3600
    assert decoded["cluster_id"] == "prod" and decoded["namespace"] == "team-a"
    assert decoded["token_type"] == "user" and len(decoded["jti"]) == 32


@pytest.mark.parametrize(
    ("token_type", "lifetime", "multiplier"),
    [("user", 86400, 1), ("service", 604800, 5), ("admin", 7776000, 10)],
)
def test_lifetime_and_rate_multiplier_follow_the_token_type(token_type, lifetime, multiplier):
    token, claims = codec.mint(sub="svc", scopes=["read"], token_type=token_type, now=NOW)
    assert claims["exp"] - claims["iat"] == lifetime
    principal = codec.decode(token, now=NOW + 1)
    assert principal.token_type == token_type and principal.rate_multiplier == multiplier


def test_decode_returns_the_principal():
    token, claims = codec.mint(sub="bob", scopes=["read", "exec"], now=NOW, namespace="dev")
    principal = codec.decode(token, now=NOW + 10)
    assert principal == Principal(
        sub="bob",
        scopes=frozenset({"read", "exec"}),
        token_type="user",
        jti=claims["jti"],
        expires_at=claims["exp"],
        cluster_id=None,
        namespace="dev",
        issued_at=int(NOW),
    )
    assert principal.has_scope("exec") and not principal.has_scope("write")


def test_groups_given_when_minting_come_back_in_the_principal():
    token, claims = codec.mint(sub="bob", scopes=["read"], now=NOW, groups=["team-a", "oncall", "team-a"])
    assert claims["groups"] == ["team-a", "oncall"]
    assert codec.decode(token, now=NOW).groups == ("team-a", "oncall")


def test_admin_scope_implies_every_other_scope():
    token, _ = codec.mint(sub="root", scopes=["admin"], now=NOW)
    principal = codec.decode(token, now=NOW)
    assert all(principal.has_scope(s) for s in ("read", "write", "delete", "exec", "admin"))


def test_expired_token_is_token_expired():
    token, claims = codec.mint(sub="alice", scopes=["read"], now=NOW, ttl_seconds=60)
    with pytest.raises(KubiliticsError) as caught:
        codec.decode(token, now=NOW + 61)
    assert caught.value.code == "token_expired" and caught.value.status == 401
    assert caught.value.details == {"expired_at": claims["exp"]}


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        TokenCodec(secret="another-secret").mint(sub="alice", scopes=["read"], now=NOW)[0],
        jwt.encode({"sub": "alice", "exp": int(NOW) + 60}, "s3cret-for-kubilitics-token-tests"),  # no iat
        jwt.encode(
            {"sub": "a", "exp": "tomorrow", "iat": int(NOW), "jti": "x"}, "s3cret-for-kubilitics-token-tests"
        ),
        jwt.encode(
            {"sub": "a", "exp": int(NOW) + 60, "iat": int(NOW), "jti": "x", "token_type": "god"},
            "s3cret-for-kubilitics-token-tests",
        ),
        jwt.encode(
            {"sub": "a", "exp": int(NOW) + 60, "iat": int(NOW), "jti": "x"},
            "s3cret-for-kubilitics-token-tests",
            algorithm="HS512",
        ),
    ],
    ids=["garbage", "wrong-secret", "no-iat", "exp-not-a-number", "unknown-type", "wrong-algorithm"],
)
def test_invalid_tokens_are_unauthorized(token):
    with pytest.raises(KubiliticsError) as caught:
        codec.decode(token, now=NOW)
    assert caught.value.code == "unauthorized" and caught.value.status == 401


def test_token_without_jti_gets_a_stable_stand_in():
    claims = {"sub": "alice", "exp": int(NOW) + 60, "iat": int(NOW), "scope": "read"}
    token = jwt.encode(claims, "s3cret-for-kubilitics-token-tests")
    other = jwt.encode({**claims, "exp": int(NOW) + 61}, "s3cret-for-kubilitics-token-tests")
    first, again = codec.decode(token, now=NOW), codec.decode(token, now=NOW + 5)
    assert first.jti == again.jti and first.jti.startswith("sha256-") and len(first.jti) == 39
    assert codec.decode(other, now=NOW).jti != first.jti


def test_unknown_scope_values_are_ignored_when_decoding():
    token = jwt.encode(
        {"sub": "a", "exp": int(NOW) + 60, "iat": int(NOW), "jti": "x", "scope": "root,read openid"},
        "s3cret-for-kubilitics-token-tests",
    )
    assert codec.decode(token, now=NOW).scopes == {"read"}


def test_unknown_scope_is_refused_when_minting():
    with pytest.raises(ValueError, match="unknown scopes: superuser"):
        codec.mint(sub="alice", scopes=["read", "superuser"], now=NOW)
    assert parse_scopes(" read , write ") == {"read", "write"}


def test_rs256_tokens_verified_with_keys_from_a_jwks_url():
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update(kid="key-1", use="sig", alg="RS256")
    body = json.dumps({"keys": [jwk]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        verifier = TokenCodec(algorithm="RS256", jwks_url=f"http://127.0.0.1:{server.server_port}/jwks.json")
        now = time.time()
        claims = {"sub": "sso-user", "iat": int(now), "exp": int(now) + 300, "jti": "j1", "scope": "read"}
        good = jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": "key-1"})
        assert verifier.decode(good, now=now).sub == "sso-user"
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "key-1"})
        with pytest.raises(KubiliticsError) as caught:
            verifier.decode(forged, now=now)
        assert caught.value.code == "unauthorized"
    finally:
        server.shutdown()
