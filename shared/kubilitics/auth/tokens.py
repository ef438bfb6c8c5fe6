"""JWT bearer tokens (reference section 1, spec-decisions 5).

Claims: sub, exp, iat, scope (comma-separated), cluster_id, namespace, jti, token_type.
HS256 with a shared secret, or RS256 verified against a JWKS URL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
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


@dataclass(frozen=True)
class Principal:
    sub: str
    scopes: frozenset[str]
    token_type: str
    jti: str
    expires_at: int
    cluster_id: str | None = None
    namespace: str | None = None

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


class TokenCodec:
    """Signs and verifies tokens. `jwks_url` switches verification to RS256 keys from a JWKS."""

    def __init__(self, *, secret: str | None = None, algorithm: str = "HS256", jwks_url: str | None = None):
        self._secret = secret
        self._algorithm = algorithm
        self._jwks_client = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300) if jwks_url else None

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
    ) -> tuple[str, dict[str, Any]]:
        if self._algorithm != "HS256" or not self._secret:
            raise ValueError("this deployment verifies RS256 tokens from a JWKS; mint them with that issuer")
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
        return jwt.encode(claims, self._secret, algorithm="HS256"), claims

    def decode(self, token: str, *, now: float) -> Principal:
        try:
            key: Any = self._secret
            if self._jwks_client is not None:
                key = self._jwks_client.get_signing_key_from_jwt(token).key
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                options={"require": ["sub", "exp", "iat", "jti"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWKClientError as exc:
            raise Unauthorized("Signing keys could not be fetched to verify the token") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"Invalid bearer token: {exc}") from exc
        # Time claims are checked here (not by PyJWT) so that the clock is injectable.
        if int(claims["iat"]) > now + CLOCK_SKEW_SECONDS:
            raise Unauthorized("The bearer token was issued in the future")
        if int(claims["exp"]) <= now:
            raise KubiliticsError(
                "The bearer token has expired",
                code="token_expired",
                details={"expired_at": int(claims["exp"])},
            )
        token_type = claims.get("token_type", "user")
        if token_type not in TOKEN_TYPES:
            raise Unauthorized(f"Unknown token type {token_type!r}")
        try:
            scopes = parse_scopes(str(claims.get("scope", "")))
        except ValueError as exc:
            raise Unauthorized(f"Invalid token scope: {exc}") from exc
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise Unauthorized("Token subject must be a non-empty string")
        return Principal(
            sub=claims["sub"],
            scopes=scopes,
            token_type=token_type,
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            cluster_id=claims.get("cluster_id") or None,
            namespace=claims.get("namespace") or None,
        )
