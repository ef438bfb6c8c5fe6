"""Settings, read from the environment once per cold start; no other module reads env vars."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Only ever accepted in development and test; production refuses to start with it.
DEVELOPMENT_JWT_SECRET = "kubilitics-development-secret-do-not-use-in-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBILITICS_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    stack_name: str = "kubilitics-local"
    template_version: str = "1.0.0"
    build_commit: str = "unknown"
    build_date: str = "unknown"
    region: str = Field(default="us-east-1", validation_alias=AliasChoices("KUBILITICS_REGION", "AWS_REGION"))

    # Authentication
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_secret: SecretStr | None = None
    jwt_secret_arn: str | None = None
    jwks_url: str | None = None
    revocation_cache_seconds: float = Field(default=20.0, ge=0, le=30)

    # DynamoDB tables (local defaults; the SAM template sets the real names)
    aws_endpoint_url: str | None = None
    rate_limit_table: str = "kubilitics-rate-limits"
    revoked_tokens_table: str = "kubilitics-revoked-tokens"
    state_table: str = "kubilitics-state"
    connections_table: str = "kubilitics-connections"

    # Kubernetes
    kubeconfig: str | None = Field(
        default=None, validation_alias=AliasChoices("KUBILITICS_KUBECONFIG", "KUBECONFIG")
    )
    kubeconfig_secret_arn: str | None = None
    kube_timeout_seconds: float = Field(default=10.0, gt=0)
    health_timeout_seconds: float = Field(default=2.0, gt=0)

    # AI provider (rules-only when no key is configured)
    anthropic_api_key: SecretStr | None = None
    ai_secret_arn: str | None = None
    anthropic_base_url: str | None = None
    ai_model: str = "claude-sonnet-4-5"

    # HTTP
    max_body_bytes: int = Field(default=1_048_576, gt=0)

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.env != "production":
            return self
        if self.jwt_algorithm == "HS256" and not (self.jwt_secret or self.jwt_secret_arn):
            raise ValueError("production needs KUBILITICS_JWT_SECRET or KUBILITICS_JWT_SECRET_ARN")
        if self.jwt_secret and self.jwt_secret.get_secret_value() == DEVELOPMENT_JWT_SECRET:
            raise ValueError("the development JWT secret is refused in production")
        if self.jwt_algorithm == "RS256" and not self.jwks_url:
            raise ValueError("RS256 needs KUBILITICS_JWKS_URL")
        return self

    @property
    def kubeconfig_path(self) -> Path:
        if self.kubeconfig:
            # KUBECONFIG may list several files; like kubectl, the first one wins for writes.
            return Path(self.kubeconfig.split(os.pathsep)[0]).expanduser()
        return Path("~/.kube/config").expanduser()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
