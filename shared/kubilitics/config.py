"""Settings, read from the environment once per cold start; no other module reads env vars.

A plain pydantic model filled from `KUBILITICS_<FIELD>` variables: pydantic-settings (with dotenv)
cost every cold start ~25 ms of imports for what `from_env` does in a dozen lines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# Only ever accepted in development (the local server, bound to loopback) and test; production
# refuses to start with it, and the local server refuses it on any other address.
DEVELOPMENT_JWT_SECRET = "kubilitics-development-secret-do-not-use-in-production"
# HS256 with a shorter secret can be brute-forced offline from one token.
MIN_JWT_SECRET_BYTES = 32

ENV_PREFIX = "KUBILITICS_"
# Fields that also answer to a conventional variable (the first name found wins).
ENV_ALIASES = {
    "region": ("KUBILITICS_REGION", "AWS_REGION"),
    "kubeconfig": ("KUBILITICS_KUBECONFIG", "KUBECONFIG"),
}


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # production unless said otherwise: `kubilitics serve` sets development, the tests set test.
    env: Literal["development", "test", "production"] = "production"
    stack_name: str = "kubilitics-local"
    template_version: str = "1.0.0"
    build_commit: str = "unknown"
    build_date: str = "unknown"
    region: str = "us-east-1"

    # Authentication: HS256 tokens minted with the secret, or an identity provider's RS256 / ES256
    # tokens (comma-separated to accept both) verified with the keys at `jwks_url`.
    jwt_algorithm: str = "HS256"
    jwt_secret: SecretStr | None = None
    jwt_secret_arn: str | None = None
    jwks_url: str | None = None
    # PyJWT's default (30 s) outlasts API Gateway's wait for the Lambda (29 s).
    jwks_timeout_seconds: float = Field(default=5.0, gt=0, le=20)
    jwt_issuer: str | None = None  # when set, `iss` must equal it
    # comma-separated; when set, `aud` (or, without one, Cognito's `client_id`) must name one of them
    jwt_audience: str | None = None
    jwt_scope_claim: str = Field(default="scope", min_length=1)  # Okta: scp
    jwt_scope_prefix: str = ""  # only scope values with this prefix count, e.g. Cognito's "kubilitics/"
    jwt_groups_claim: str = Field(default="groups", min_length=1)  # Cognito: cognito:groups
    revocation_cache_seconds: float = Field(default=20.0, ge=0, le=30)
    # Development and test only (`make fuzz`): every rate limit x this; production refuses another value.
    rate_limit_multiplier: int = Field(default=1, ge=1, le=1000)

    # DynamoDB tables (local defaults; the SAM template sets the real names)
    aws_endpoint_url: str | None = None
    rate_limit_table: str = "kubilitics-rate-limits"
    revoked_tokens_table: str = "kubilitics-revoked-tokens"
    state_table: str = "kubilitics-state"
    connections_table: str = "kubilitics-connections"

    # Kubernetes
    kubeconfig: str | None = None
    kubeconfig_secret_arn: str | None = None
    kube_timeout_seconds: float = Field(default=10.0, gt=0)
    # Whose rights Kubernetes requests use (auth/impersonation.py): "impersonate", the caller's (the
    # token's sub and groups, prefixed), or "service", the kubeconfig's own identity. Per context:
    # JSON {"<context>": "service"} over the default.
    kube_authorization_mode: Literal["impersonate", "service"] = "impersonate"
    kube_authorization_modes: dict[str, Literal["impersonate", "service"]] = Field(default_factory=dict)
    impersonation_prefix: str = Field(default="kubilitics:", min_length=1, max_length=64)
    # How long a caller's access review (may X list Pods in N?) is reused: the longest a revoked
    # RoleBinding still shows that caller insights and new watch subscriptions.
    access_review_cache_seconds: float = Field(default=10.0, ge=0, le=60)
    health_timeout_seconds: float = Field(default=2.0, gt=0)
    # /health (no token) answers from a check at most this old: callers cannot make it call AWS,
    # Kubernetes and the Messages API on every request.
    health_cache_seconds: float = Field(default=15.0, ge=10, le=30)

    # AI provider (rules-only when no key is configured)
    anthropic_api_key: SecretStr | None = None
    ai_secret_arn: str | None = None
    anthropic_base_url: str | None = None
    ai_model: str = "claude-sonnet-5-5"  # current Sonnet; 4.5 is deprecated (end of life 2026-11-30)
    # Defaults of the AI configuration's budget section (PUT /api/v1/ai/config overrides them).
    ai_monthly_limit_usd: float = Field(default=100.0, ge=0)
    ai_monthly_limit_tokens: int = Field(default=20_000_000, ge=0)
    # JSON {"<model>": {"input": <USD per million tokens>, "output": <...>}}, over the built-in prices.
    ai_model_prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    ai_request_timeout_seconds: float = Field(default=60.0, gt=0)  # one model call, retries included
    # How long an instance trusts the AI key it read from the AI secret (PUT /api/v1/ai/config on
    # another instance is seen within this; on the same instance at once).
    ai_key_cache_seconds: float = Field(default=60.0, ge=0, le=900)

    # Investigations (Step Functions) and remediation actions
    state_machine_arn: str | None = None  # the investigation state machine; the template sets it
    investigation_retention_days: int = Field(default=90, ge=1)
    # Unfinished this long after its start: failed when listed (the state machine times out at 1800 s).
    investigation_run_limit_seconds: float = Field(default=1860.0, gt=0)
    action_approval_minutes: int = Field(default=120, ge=1)  # how long a proposed action may be approved
    # After an approved change is applied: how long to watch the workload, and how long its new pods
    # must stay healthy before the change counts as verified (a crash often comes seconds after start).
    action_verify_timeout_seconds: float = Field(default=15.0, gt=0, le=25)
    action_verify_settle_seconds: float = Field(default=6.0, ge=0)
    # An approved action still executing this long after its approval was interrupted (a killed
    # process); the next approve or reject of it records whether the change was made.
    action_execution_limit_seconds: float = Field(default=120.0, gt=0)

    # AI insights: the scan schedule of the local server (EventBridge runs it in AWS), the contexts
    # scanned, and the unit prices behind `monthly_savings_usd` (defaults: Fargate, us-east-1).
    insight_scan_interval_seconds: float = Field(default=900.0, ge=0)  # 0: only once at start
    insight_contexts: str = ""  # comma-separated kubeconfig contexts; "" = the current context
    insight_excluded_namespaces: str = "kube-system,kube-public,kube-node-lease"
    insight_min_age_seconds: float = Field(default=1800.0, ge=0)  # idle / unattached: older than this
    price_cpu_core_month_usd: float = Field(default=29.55, ge=0)
    price_memory_gib_month_usd: float = Field(default=3.24, ge=0)
    price_storage_gib_month_usd: float = Field(default=0.08, ge=0)

    # AI chat sessions (reference section 14)
    chat_idle_seconds: float = Field(default=1800.0, gt=0)
    chat_request_timeout_seconds: float = Field(default=25.0, gt=0)  # one LLM call of a turn, with retries

    # HTTP
    max_body_bytes: int = Field(default=1_048_576, gt=0)

    # Real time: WebSocket API, watch relay, shell and live-log sessions
    websocket_endpoint: str | None = None  # the stage's management endpoint (post_to_connection)
    shell_session_function: str | None = None  # Lambda holding shell / live-log sessions
    watch_relay_function: str | None = None  # started at once when a new watch set appears
    shell_idle_seconds: float = Field(default=300.0, gt=0)
    ws_ping_interval_seconds: float = Field(default=30.0, gt=0)
    # Watch subscriptions one connection, and one user across their connections, may hold (each new
    # watch set is a relay thread and an API-server watch); the user cap is x5 / x10 for service /
    # admin tokens, as the rate limits.
    ws_max_subscriptions_per_connection: int = Field(default=50, ge=1)
    ws_max_subscriptions_per_user: int = Field(default=200, ge=1)
    # A relay run stops this long before its Lambda timeout; a run started within the takeover
    # window before the holder's end waits for it and resumes from its checkpoints.
    relay_handover_seconds: float = Field(default=60.0, ge=0)
    relay_takeover_window_seconds: float = Field(default=90.0, ge=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables (names matched case-insensitively); JSON for dicts."""
        env = {key.upper(): value for key, value in (os.environ if environ is None else environ).items()}
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            for variable in ENV_ALIASES.get(name, (ENV_PREFIX + name.upper(),)):
                if variable in env:
                    raw = env[variable]
                    values[name] = (
                        _json(variable, raw) if get_origin(field.annotation) in (dict, list) else raw
                    )
                    break
        return cls.model_validate(values)

    @model_validator(mode="after")
    def _prefix_outside_system_names(self) -> Settings:
        if self.impersonation_prefix.startswith("system:"):
            raise ValueError("KUBILITICS_IMPERSONATION_PREFIX must not start with 'system:'")
        return self

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.env != "production":
            return self
        if self.rate_limit_multiplier != 1:
            raise ValueError("KUBILITICS_RATE_LIMIT_MULTIPLIER is refused in production")
        if self.jwt_algorithm == "HS256" and not (self.jwt_secret or self.jwt_secret_arn):
            raise ValueError("production needs KUBILITICS_JWT_SECRET or KUBILITICS_JWT_SECRET_ARN")
        if self.jwt_secret and self.jwt_secret.get_secret_value() == DEVELOPMENT_JWT_SECRET:
            raise ValueError("the development JWT secret is refused in production")
        if self.jwt_secret:
            check_jwt_secret(self.jwt_secret.get_secret_value(), "KUBILITICS_JWT_SECRET")
        return self

    @field_validator("jwt_algorithm")
    @classmethod
    def _known_algorithms(cls, value: str) -> str:
        algorithms = [a.strip() for a in value.split(",") if a.strip()]
        # Never HS256 beside a public-key algorithm: that mix is what alg-confusion attacks need.
        if algorithms != ["HS256"] and not (algorithms and set(algorithms) <= {"RS256", "ES256"}):
            raise ValueError(
                "KUBILITICS_JWT_ALGORITHM must be HS256, or RS256 and/or ES256 (comma-separated)"
            )
        return ",".join(algorithms)

    @model_validator(mode="after")
    def _identity_provider_needs_jwks(self) -> Settings:
        if self.uses_identity_provider and not self.jwks_url:
            raise ValueError(f"{self.jwt_algorithm} needs KUBILITICS_JWKS_URL")
        return self

    @property
    def uses_identity_provider(self) -> bool:
        """Tokens come from an identity provider (verified with its JWKS); none are minted here."""
        return self.jwt_algorithm != "HS256"

    @property
    def jwt_audiences(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in (self.jwt_audience or "").split(",") if a.strip())

    @property
    def kubeconfig_path(self) -> Path:
        if self.kubeconfig:
            # KUBECONFIG may list several files; like kubectl, the first one wins for writes.
            return Path(self.kubeconfig.split(os.pathsep)[0]).expanduser()
        return Path("~/.kube/config").expanduser()


def check_jwt_secret(secret: str, source: str) -> str:
    """A production HS256 secret: at least MIN_JWT_SECRET_BYTES bytes (from the variable, or the
    secret named by KUBILITICS_JWT_SECRET_ARN when it is first read)."""
    size = len(secret.encode())
    if size < MIN_JWT_SECRET_BYTES:
        raise ValueError(
            f"the JWT secret from {source} is {size} bytes; production needs at least {MIN_JWT_SECRET_BYTES}"
        )
    return secret


def _json(variable: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{variable} is not valid JSON: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
