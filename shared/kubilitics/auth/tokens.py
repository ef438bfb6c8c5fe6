"""JWT bearer tokens (reference section 1, spec-decisions 5).

Claims: sub, exp, iat, scope, cluster_id, namespace, jti, token_type, groups.
HS256 with a shared secret (the tokens `kubilitics token create` mints), or RS256 / ES256 tokens of an
identity provider (Cognito, Okta, Auth0, Dex, ...) verified with the keys of its JWKS URL.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from kubilitics.errors import KubiliticsError, Unauthorized

CLOCK_SKEW_SECONDS = 60
SCOPES = ("read", "write", "delete", "exec", "admin")

# token type -> (lifetime in seconds, rate-limit multiplier)
TOKEN_TYPES: dict[str, tuple[int, int]] = {
    "user": (24 * 3600, 1),
    "service": (7 * 24 * 3600, 5),
    "admin": (90 * 24 * 3600, 10),
}
# What an identity provider's keys may sign with; HS256 never comes with a JWKS (alg confusion).
JWKS_ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True)
class Principal:
    sub: str
    scopes: frozenset[str]
    token_type: str
    jti: str
    expires_at: int
    cluster_id: str | None = None
    namespace: str | None = None
    # The identity provider's groups of the caller (the groups claim); with `sub` they are who the
    # cluster's RBAC sees in impersonate mode (auth/impersonation.py).
    groups: tuple[str, ...] = ()
    issued_at: int = 0

    def has_scope(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def rate_multiplier(self) -> int:
        return TOKEN_TYPES[self.token_type][1]


def parse_scopes(raw: str | Iterable[str]) -> frozenset[str]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    scopes = frozenset(s.strip() for s in items if s.strip())
    unknown = scopes - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}; known: {', '.join(SCOPES)}")
    return scopes


def known_scopes(raw: Any, prefix: str = "") -> frozenset[str]:
    """The scopes of this API in a token's scope claim; other values belong to others and are ignored.

    The claim is a list (Okta's `scp`) or a string separated by spaces (OAuth 2.0: Cognito, Auth0) or
    commas (the tokens minted here). With `prefix` (Cognito's resource-server scopes look like
    `kubilitics/read`) only values carrying it count.
    """
    if isinstance(raw, str):
        raw = raw.replace(",", " ").split()
    if not isinstance(raw, list):
        return frozenset()
    values = [v.strip() for v in raw if isinstance(v, str)]
    if prefix:
        values = [v.removeprefix(prefix) for v in values if v.startswith(prefix)]
    return frozenset(v for v in values if v in SCOPES)


class TokenCodec:
    """Signs and verifies tokens. `jwks_url` switches verification to an identity provider's keys.

    With a JWKS, `issuer` and `audience` are checked when given, and the scope and groups claims are
    read under the names the provider uses (`scp`, `cognito:groups`, ...).
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        algorithm: str | Sequence[str] = "HS256",
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: Iterable[str] = (),
        scope_claim: str = "scope",
        scope_prefix: str = "",
        groups_claim: str = "groups",
        jwks_timeout_seconds: float = 5.0,
    ):
        self._secret = secret
        self._algorithms = (algorithm,) if isinstance(algorithm, str) else tuple(algorithm)
        if jwks_url and not set(self._algorithms) <= set(JWKS_ALGORITHMS):
            raise ValueError(f"keys from a JWKS verify only {' / '.join(JWKS_ALGORITHMS)}")
        self._issuer = issuer or None
        self._audience = frozenset(audience)
        self._scope_claim = scope_claim
        self._scope_prefix = scope_prefix
        self._groups_claim = groups_claim
        # PyJWT waits 30 s by default, longer than API Gateway waits for the Lambda (29 s): a slow
        # identity provider must fail this request with a 401, not time out the whole invocation.
        self._jwks_client = (
            jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=jwks_timeout_seconds)
            if jwks_url
            else None
        )

    def mint(
        self,
        *,
        sub: str,
        scopes: Iterable[str],
        token_type: str = "user",
        now: float,
        cluster_id: str | None = None,
        namespace: str | None = None,
        ttl_seconds: int | None = None,
        groups: Iterable[str] = (),
    ) -> tuple[str, dict[str, Any]]:
        if self._algorithms != ("HS256",) or not self._secret:
            raise ValueError(
                "this deployment verifies tokens of an identity provider (JWKS); get them from it"
            )
        if token_type not in TOKEN_TYPES:
            raise ValueError(f"token type must be one of {', '.join(TOKEN_TYPES)}")
        if not sub:
            raise ValueError("sub must not be empty")
        lifetime = ttl_seconds if ttl_seconds is not None else TOKEN_TYPES[token_type][0]
        claims: dict[str, Any] = {
            "sub": sub,
            "iat": int(now),
            "exp": int(now) + lifetime,
            "scope": ",".join(s for s in SCOPES if s in parse_scopes(scopes)),
            "token_type": token_type,
            "jti": uuid.uuid4().hex,
        }
        if cluster_id:
            claims["cluster_id"] = cluster_id
        if namespace:
            claims["namespace"] = namespace
        if groups:
            claims["groups"] = list(dict.fromkeys(groups))
        return jwt.encode(claims, self._secret, algorithm="HS256"), claims

    def decode(self, token: str, *, now: float) -> Principal:
        try:
            key: Any = self._secret
            if self._jwks_client is not None:
                # The PyJWK itself, not its key: PyJWT then verifies only with the algorithm the key is
                # for, so a token cannot pick another one (RS256 header on an EC key, HS256, none).
                key = self._jwks_client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=list(self._algorithms),
                issuer=self._issuer,
                # The audience is checked below: Cognito's access tokens carry `client_id`, not `aud`.
                options={
                    "require": ["sub", "exp", "iat"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_aud": False,
                },
            )
            issued_at, expires_at = int(claims["iat"]), int(claims["exp"])
        except jwt.PyJWKClientConnectionError as exc:
            raise Unauthorized("Signing keys could not be fetched to verify the token") from exc
        except (jwt.PyJWTError, TypeError, ValueError) as exc:  # PyJWKClientError (unknown kid) included
            raise Unauthorized(f"Invalid bearer token: {exc}") from exc
        if self._audience and not self._audience & _audiences(claims):
            raise Unauthorized("The bearer token is meant for another audience")
        # Time claims are checked here (not by PyJWT) so that the clock is injectable.
        if issued_at > now + CLOCK_SKEW_SECONDS:
            raise Unauthorized("The bearer token was issued in the future")
        if expires_at <= now:
            raise KubiliticsError(
                "The bearer token has expired",
                code="token_expired",
                details={"expired_at": expires_at},
            )
        token_type = claims.get("token_type", "user")
        if token_type not in TOKEN_TYPES:
            raise Unauthorized(f"Unknown token type {token_type!r}")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise Unauthorized("Token subject must be a non-empty string")
        return Principal(
            sub=claims["sub"],
            scopes=known_scopes(claims.get(self._scope_claim), self._scope_prefix),
            token_type=token_type,
            jti=str(claims.get("jti") or _stand_in_jti(token)),
            expires_at=expires_at,
            cluster_id=claims.get("cluster_id") or None,
            namespace=claims.get("namespace") or None,
            groups=_groups(claims.get(self._groups_claim)),
            issued_at=issued_at,
        )


def _stand_in_jti(token: str) -> str:
    """A `jti` for a token that has none (Auth0 and Dex issue none).

    Rate limits, sessions and revocation by token key on `Principal.jti`: a digest of the token is the
    same string every time the token is presented, so those keep working for it (and reveals nothing).
    """
    return "sha256-" + hashlib.sha256(token.encode()).hexdigest()[:32]


def _audiences(claims: dict[str, Any]) -> set[str]:
    """Whom the token is for: `aud` (a string or a list), else Cognito's `client_id` (access tokens)."""
    raw = claims.get("aud", claims.get("client_id"))
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return {v for v in values if isinstance(v, str)}


def _groups(raw: Any) -> tuple[str, ...]:
    """The groups claim: a list of strings (a single string counts as one group)."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        return ()
    return tuple(dict.fromkeys(g for g in raw if isinstance(g, str) and g))
