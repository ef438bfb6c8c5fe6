"""Tokens of real identity providers: Cognito, Okta, Auth0 and Dex shaped tokens, signed with RSA and
EC keys that a JWKS server on 127.0.0.1 publishes; issuer, audience, algorithms and revocation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from kubilitics import cli, container
from kubilitics.auth.access import authenticate_token
from kubilitics.auth.tokens import Principal
from kubilitics.config import Settings
from kubilitics.errors import KubiliticsError

from tests.fakes.identity_provider import FakeIdentityProvider

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def idp():
    with FakeIdentityProvider(slow_seconds=2.0) as provider:
        yield provider


@dataclass(frozen=True)
class Provider:
    """How a deployment is configured for one identity provider, and a token as it issues them."""

    settings: dict[str, str]
    claims: dict[str, Any]
    kid: str
    scopes: frozenset[str]
    groups: tuple[str, ...]
    jti: str | None  # None: the token has none (a stand-in is derived from the token)
    extra: dict[str, Any] = field(default_factory=dict)


COGNITO = Provider(
    settings={
        "KUBILITICS_JWT_ALGORITHM": "RS256",
        "KUBILITICS_JWT_ISSUER": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
        "KUBILITICS_JWT_AUDIENCE": "4q7example6client0id",  # the app client: `client_id` in access tokens
        "KUBILITICS_JWT_SCOPE_PREFIX": "kubilitics/",  # the resource server's identifier
        "KUBILITICS_JWT_GROUPS_CLAIM": "cognito:groups",
    },
    claims={
        "sub": "8f6e0c1a-2b3c-4d5e-9f00-1234567890ab",
        "cognito:groups": ["platform-admins", "team-a"],
        "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
        "version": 2,
        "client_id": "4q7example6client0id",
        "origin_jti": "2d1f5a0e-7c55-4c1e-b5d7-0a3c0b1d9e11",
        "token_use": "access",
        "scope": "kubilitics/read kubilitics/exec openid read-but-not-ours/write",
        "auth_time": NOW,
        "iat": NOW,
        "exp": NOW + 3600,
        "jti": "6c3e4b8a-1f0d-4b7e-8d6b-5e9a1c2f3d4e",
        "username": "alice",
    },
    kid="rsa-1",
    scopes=frozenset({"read", "exec"}),
    groups=("platform-admins", "team-a"),
    jti="6c3e4b8a-1f0d-4b7e-8d6b-5e9a1c2f3d4e",
)
OKTA = Provider(
    settings={
        "KUBILITICS_JWT_ALGORITHM": "RS256,ES256",
        "KUBILITICS_JWT_ISSUER": "https://dev-123456.okta.com/oauth2/default",
        "KUBILITICS_JWT_AUDIENCE": "api://kubilitics",
        "KUBILITICS_JWT_SCOPE_CLAIM": "scp",
    },
    claims={
        "ver": 1,
        "jti": "AT.Xq3pZ8example-okta-jti",
        "iss": "https://dev-123456.okta.com/oauth2/default",
        "aud": "api://kubilitics",
        "iat": NOW,
        "exp": NOW + 3600,
        "cid": "0oa1exampleclient",
        "uid": "00u1exampleuser",
        "scp": ["openid", "read", "write", "offline_access"],
        "auth_time": NOW,
        "sub": "alice@example.com",
        "groups": ["Everyone", "k8s-editors"],
    },
    kid="rsa-1",
    scopes=frozenset({"read", "write"}),
    groups=("Everyone", "k8s-editors"),
    jti="AT.Xq3pZ8example-okta-jti",
)
AUTH0 = Provider(
    settings={
        "KUBILITICS_JWT_ALGORITHM": "RS256",
        "KUBILITICS_JWT_ISSUER": "https://kubilitics-example.eu.auth0.com/",
        "KUBILITICS_JWT_AUDIENCE": "https://api.kubilitics.example.com",
        "KUBILITICS_JWT_GROUPS_CLAIM": "https://kubilitics.example.com/groups",  # a namespaced custom claim
    },
    claims={
        "https://kubilitics.example.com/groups": ["sre", "oncall"],
        "https://kubilitics.example.com/email": "alice@example.com",
        "iss": "https://kubilitics-example.eu.auth0.com/",
        "sub": "auth0|65f1c0ffee0123456789abcd",
        "aud": ["https://api.kubilitics.example.com", "https://kubilitics-example.eu.auth0.com/userinfo"],
        "iat": NOW,
        "exp": NOW + 86400,
        "scope": "openid profile email read delete",
        "azp": "Xyz123Auth0ClientId",
    },
    kid="rsa-1",
    scopes=frozenset({"read", "delete"}),
    groups=("sre", "oncall"),
    jti=None,
)
DEX = Provider(
    settings={
        "KUBILITICS_JWT_ALGORITHM": "RS256,ES256",
        "KUBILITICS_JWT_ISSUER": "https://dex.example.com",
        "KUBILITICS_JWT_AUDIENCE": "kubilitics",
    },
    claims={  # an ID token: no scope claim, an email
        "iss": "https://dex.example.com",
        "sub": "CgVhbGljZRIFbG9jYWw",
        "aud": "kubilitics",
        "exp": NOW + 86400,
        "iat": NOW,
        "nonce": "n-0S6_WzA2Mj",
        "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
        "email": "alice@example.com",
        "email_verified": True,
        "groups": ["devs", "k8s-viewers"],
        "name": "Alice",
    },
    kid="ec-1",  # ES256
    scopes=frozenset(),
    groups=("devs", "k8s-viewers"),
    jti=None,
)
PROVIDERS = {"cognito": COGNITO, "okta": OKTA, "auth0": AUTH0, "dex": DEX}


def codec_for(provider: Provider, idp: FakeIdentityProvider, **overrides: str) -> Any:
    """The token codec a deployment configured with `provider.settings` (as env vars) builds."""
    env = {"KUBILITICS_ENV": "test", "KUBILITICS_JWKS_URL": idp.jwks_url, **provider.settings, **overrides}
    return container.Container(Settings.from_env(env)).token_codec


def stand_in_jti(token: str) -> str:
    return "sha256-" + hashlib.sha256(token.encode()).hexdigest()[:32]


@pytest.mark.parametrize("name", PROVIDERS)
def test_provider_tokens_become_principals(idp, name):
    provider = PROVIDERS[name]
    token = idp.sign(provider.claims, kid=provider.kid)
    principal = codec_for(provider, idp).decode(token, now=NOW + 10)
    assert principal == Principal(
        sub=provider.claims["sub"],
        scopes=provider.scopes,
        token_type="user",
        jti=provider.jti or stand_in_jti(token),
        expires_at=provider.claims["exp"],
        groups=provider.groups,
        issued_at=NOW,
    )


def test_scope_claim_may_be_a_list_or_a_space_or_comma_separated_string(idp):
    codec = codec_for(OKTA, idp)
    for scp in (["read", "write"], "read write", "read,write", " read ,  write "):
        token = idp.sign({**OKTA.claims, "scp": scp})
        assert codec.decode(token, now=NOW).scopes == {"read", "write"}, scp
    only_unknown = idp.sign({**OKTA.claims, "scp": ["openid", "Read", "admin:all"]})
    assert codec.decode(only_unknown, now=NOW).scopes == frozenset()  # valid, but grants nothing


def test_cognito_audience_is_the_client_id_when_there_is_no_aud(idp):
    other_client = idp.sign({**COGNITO.claims, "client_id": "another-app-client"})
    with pytest.raises(KubiliticsError, match="another audience") as caught:
        codec_for(COGNITO, idp).decode(other_client, now=NOW)
    assert caught.value.code == "unauthorized"


def _hs256_signed_with_the_public_key(idp: FakeIdentityProvider, claims: dict[str, Any]) -> str:
    """The classic alg confusion: HS256 keyed with the RSA public key everyone can download."""
    pem = (
        idp.keys["rsa-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"


OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
REJECTED = {
    # id: (how the token is made from Okta's claims, expected code, what the message names)
    "wrong issuer": (
        lambda idp, c: idp.sign({**c, "iss": "https://evil.okta.com/oauth2/default"}),
        "unauthorized",
        "Invalid issuer",
    ),
    "no issuer": (
        lambda idp, c: idp.sign({k: v for k, v in c.items() if k != "iss"}),
        "unauthorized",
        '"iss"',
    ),
    "wrong audience": (lambda idp, c: idp.sign({**c, "aud": "api://other"}), "unauthorized", "audience"),
    "no audience": (
        lambda idp, c: idp.sign({k: v for k, v in c.items() if k != "aud"}),
        "unauthorized",
        "audience",
    ),
    "unknown kid": (
        lambda idp, c: idp.sign(c, headers={"kid": "rotated-away"}),
        "unauthorized",
        "rotated-away",
    ),
    "expired": (lambda idp, c: idp.sign({**c, "exp": NOW - 1}), "token_expired", "expired"),
    "forged signature": (
        lambda idp, c: jwt.encode(c, OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"}),
        "unauthorized",
        "Signature verification failed",
    ),
    "HS256 keyed with the public key": (
        _hs256_signed_with_the_public_key,
        "unauthorized",
        "alg value is not allowed",
    ),
    "alg none": (
        lambda idp, c: jwt.encode(c, None, algorithm="none", headers={"kid": "rsa-1"}),
        "unauthorized",
        "alg value is not allowed",
    ),
    "ES256 header on the RSA key": (
        lambda idp, c: idp.sign(c, kid="ec-1", headers={"kid": "rsa-1"}),
        "unauthorized",
        "does not match the key's algorithm",
    ),
    "RS256 header on the EC key": (
        lambda idp, c: idp.sign(c, kid="rsa-1", headers={"kid": "ec-1"}),
        "unauthorized",
        "does not match the key's algorithm",
    ),
}


@pytest.mark.parametrize("case", REJECTED)
def test_tokens_that_must_be_refused(idp, case):
    make, code, named = REJECTED[case]
    codec = codec_for(OKTA, idp)
    assert codec.decode(idp.sign(OKTA.claims), now=NOW).sub == "alice@example.com"  # the control
    with pytest.raises(KubiliticsError) as caught:
        codec.decode(make(idp, OKTA.claims), now=NOW)
    assert (caught.value.status, caught.value.code) == (401, code)
    assert named in caught.value.message


def test_issuer_and_audience_are_not_checked_when_not_configured(idp):
    token = idp.sign({**DEX.claims, "iss": "https://any.example.com", "aud": "any-client"}, kid="ec-1")
    codec = codec_for(DEX, idp, KUBILITICS_JWT_ISSUER="", KUBILITICS_JWT_AUDIENCE="")
    assert codec.decode(token, now=NOW).sub == "CgVhbGljZRIFbG9jYWw"


def test_an_algorithm_not_configured_is_refused(idp):
    es256_token = idp.sign(DEX.claims, kid="ec-1")
    with pytest.raises(KubiliticsError, match="alg value is not allowed") as caught:
        codec_for(DEX, idp, KUBILITICS_JWT_ALGORITHM="RS256").decode(es256_token, now=NOW)
    assert caught.value.code == "unauthorized"


def test_a_hanging_jwks_endpoint_fails_the_request_within_the_timeout(idp):
    codec = codec_for(
        OKTA, idp, KUBILITICS_JWKS_URL=f"{idp.url}/slow/jwks.json", KUBILITICS_JWKS_TIMEOUT_SECONDS="0.3"
    )
    started = time.monotonic()
    with pytest.raises(KubiliticsError, match="could not be fetched") as caught:
        codec.decode(idp.sign(OKTA.claims), now=NOW)
    assert caught.value.code == "unauthorized"
    assert time.monotonic() - started < 1.5  # the endpoint answers after 2 s
    assert Settings.model_fields["jwks_timeout_seconds"].default == 5.0  # well below API Gateway's 29 s


def test_unknown_kids_do_not_make_the_provider_fetch_again(idp):
    codec = codec_for(OKTA, idp)
    before = idp.fetches
    codec.decode(idp.sign(OKTA.claims), now=NOW)
    for n in range(5):
        with pytest.raises(KubiliticsError):
            codec.decode(idp.sign(OKTA.claims, headers={"kid": f"random-{n}"}), now=NOW)
    assert idp.fetches - before == 1  # one fetch, then PyJWT's 30 s refresh cooldown


# ---- through the HTTP door and the revocation table (moto) -------------------------------------


@pytest.fixture()
def okta_deployment(aws, settings_env, idp):
    """The container configured for Okta (tables in moto); yields a client of a route needing `read`."""
    from kubilitics.api.app import create_app
    from kubilitics.api.deps import require

    for name, value in {"KUBILITICS_JWKS_URL": idp.jwks_url, **OKTA.settings}.items():
        settings_env.setenv(name, value)
    container.reset()
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(principal: Principal = Depends(require("read"))) -> dict[str, Any]:
        return {"sub": principal.sub, "scopes": sorted(principal.scopes), "groups": list(principal.groups)}

    return TestClient(create_app(router), raise_server_exceptions=False)


def okta_token(idp: FakeIdentityProvider, sub: str, issued_at: int, **claims: Any) -> str:
    return idp.sign({**OKTA.claims, "sub": sub, "iat": issued_at, "exp": issued_at + 3600, **claims})


def test_http_routes_accept_provider_tokens_and_enforce_their_scopes(okta_deployment, idp):
    now = int(time.time())
    ok = okta_deployment.get("/whoami", headers={"Authorization": f"Bearer {okta_token(idp, 'alice', now)}"})
    assert ok.status_code == 200
    assert ok.json() == {"sub": "alice", "scopes": ["read", "write"], "groups": ["Everyone", "k8s-editors"]}
    no_scopes = okta_token(idp, "alice", now, scp=["openid"])
    refused = okta_deployment.get("/whoami", headers={"Authorization": f"Bearer {no_scopes}"})
    assert (refused.status_code, refused.json()["error"]) == (403, "insufficient_scope")


def test_revoking_a_subject_refuses_only_their_older_tokens(okta_deployment, idp, aws, capsys):
    now = int(time.time())
    cutoff = now - 300
    alice_old, alice_new = okta_token(idp, "alice", now - 600), okta_token(idp, "alice", now - 60)
    bob_old = okta_token(idp, "bob", now - 600)

    def status(token: str) -> tuple[int, str | None]:
        response = okta_deployment.get("/whoami", headers={"Authorization": f"Bearer {token}"})
        return response.status_code, response.json().get("error")

    assert status(alice_old) == (200, None)  # this instance now caches "alice: not revoked"
    assert cli.main(["token", "revoke", "--sub", "alice", "--before", str(cutoff), "--by", "sec"]) == 0
    assert f"issued before {cutoff}" in capsys.readouterr().out
    item = aws.get_item(TableName="kubilitics-revoked-tokens", Key={"pk": {"S": "sub#alice"}})["Item"]
    assert (item["revoked_before"], item["revoked_by"]) == ({"N": str(cutoff)}, {"S": "sec"})

    # The CLI wrote through the same container: this instance knows at once. Another instance (a new
    # container) reads the table.
    assert status(alice_old) == (401, "token_revoked")
    container.reset()
    assert status(alice_old) == (401, "token_revoked")
    assert status(alice_new) == (200, None)
    assert status(bob_old) == (200, None)
    with pytest.raises(KubiliticsError) as caught:  # the WebSocket door judges it the same way
        authenticate_token(container.get_container(), alice_old)
    assert caught.value.code == "token_revoked"

    # Revoking "before" an earlier time does not bring the older token back.
    assert cli.main(["token", "revoke", "--sub", "alice", "--before", str(cutoff - 1000)]) == 0
    item = aws.get_item(TableName="kubilitics-revoked-tokens", Key={"pk": {"S": "sub#alice"}})["Item"]
    assert item["revoked_before"] == {"N": str(cutoff)}
    container.reset()
    assert status(alice_old) == (401, "token_revoked")


def test_a_token_without_jti_can_be_revoked_by_itself(okta_deployment, idp, capsys):
    now = int(time.time())
    no_jti = {k: v for k, v in OKTA.claims.items() if k != "jti"}
    revoked = idp.sign({**no_jti, "sub": "carol", "iat": now - 10, "exp": now + 3600})
    other = idp.sign({**no_jti, "sub": "carol", "iat": now - 5, "exp": now + 3600})
    assert cli.main(["token", "revoke", "--token", revoked]) == 0
    assert stand_in_jti(revoked) in capsys.readouterr().out
    container.reset()  # another instance
    responses = [
        okta_deployment.get("/whoami", headers={"Authorization": f"Bearer {t}"}) for t in (revoked, other)
    ]
    assert [r.status_code for r in responses] == [401, 200]
    assert responses[0].json()["error"] == "token_revoked"


# ---- the local server ---------------------------------------------------------------------------


def test_local_server_says_where_tokens_come_from_instead_of_printing_one(idp):
    from kubilitics.local.server import token_instructions

    settings = Settings.from_env({"KUBILITICS_JWKS_URL": idp.jwks_url, **COGNITO.settings})
    text = token_instructions(settings, None)
    assert f"RS256 keys from {idp.jwks_url}" in text
    assert "issuer https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123" in text
    assert "audience 4q7example6client0id" in text
    assert "'scope' claim (values prefixed 'kubilitics/'), groups from 'cognito:groups'" in text
    assert "Development admin token" not in text
    development = Settings.from_env({"KUBILITICS_ENV": "development"})
    assert token_instructions(development, "eyJ.dev.token").endswith("valid 90 days):\neyJ.dev.token\n")
