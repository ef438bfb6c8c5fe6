"""Builds the services from settings, once per process. Handlers and routers get them from here."""

from __future__ import annotations

import time
from functools import cached_property, lru_cache

from kubilitics.adapters.ai_probe import AnthropicProbe
from kubilitics.adapters.cluster_info import KubeClusterInfo
from kubilitics.adapters.dynamodb import DynamoRateLimitStore, DynamoRevocationStore, ping_table
from kubilitics.adapters.kube_rest import KubeRestClients
from kubilitics.adapters.kubeconfig import KubeconfigSource
from kubilitics.adapters.kubernetes import KubernetesGateway
from kubilitics.auth.revocation import RevocationList
from kubilitics.auth.tokens import TokenCodec
from kubilitics.clock import SystemClock
from kubilitics.config import DEVELOPMENT_JWT_SECRET, Settings, get_settings
from kubilitics.services.ratelimit import RateLimiter
from kubilitics.services.system import SystemService

STARTED_AT = time.time()


def _secret_string(arn: str) -> str:
    from kubilitics.adapters.aws import client

    return str(client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


def _optional_secret(arn: str) -> str | None:
    """A secret that may hold no value yet (the AI key before anyone stores one)."""
    try:
        return _secret_string(arn).strip() or None
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise


class Container:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.clock = SystemClock()

    @cached_property
    def token_codec(self) -> TokenCodec:
        s = self.settings
        if s.jwt_algorithm == "RS256":
            return TokenCodec(algorithm="RS256", jwks_url=s.jwks_url)
        if s.jwt_secret:
            secret = s.jwt_secret.get_secret_value()
        elif s.jwt_secret_arn:
            secret = _secret_string(s.jwt_secret_arn)
        else:
            secret = DEVELOPMENT_JWT_SECRET  # Settings refuses this outside development and test
        return TokenCodec(secret=secret, algorithm="HS256")

    @cached_property
    def revocations(self) -> RevocationList:
        store = DynamoRevocationStore(self.settings.revoked_tokens_table)
        return RevocationList(store, self.clock, self.settings.revocation_cache_seconds)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(DynamoRateLimitStore(self.settings.rate_limit_table), self.clock)

    @cached_property
    def kubeconfig(self) -> KubeconfigSource:
        s = self.settings
        return KubeconfigSource(path=s.kubeconfig_path, secret_arn=s.kubeconfig_secret_arn or None)

    @cached_property
    def kube_rest(self) -> KubeRestClients:
        return KubeRestClients(self.settings.region)

    def anthropic_api_key(self) -> str | None:
        """The configured key (settings first, then the AI secret); None means rules only."""
        s = self.settings
        if s.anthropic_api_key:
            return s.anthropic_api_key.get_secret_value()
        return _optional_secret(s.ai_secret_arn) if s.ai_secret_arn else None

    @cached_property
    def kube(self) -> KubernetesGateway:
        return KubernetesGateway(self.kube_rest, self.settings.kube_timeout_seconds)

    @cached_property
    def ai_probe(self) -> AnthropicProbe:
        s = self.settings
        return AnthropicProbe(self.anthropic_api_key, s.anthropic_base_url, s.health_timeout_seconds)

    @cached_property
    def system(self) -> SystemService:
        s = self.settings
        return SystemService(
            cluster=KubeClusterInfo(self.kubeconfig, self.kube_rest),
            database_probe=lambda: ping_table(s.state_table),
            ai_status=self.ai_probe,
            started_at=STARTED_AT,
            clock=self.clock.now,
            region=s.region,
            timeout=s.health_timeout_seconds,
            deployment={
                "stack_name": s.stack_name,
                "template_version": s.template_version,
                "region": s.region,
            },
            build={"commit": s.build_commit, "date": s.build_date},
        )


@lru_cache(maxsize=1)
def get_container() -> Container:
    return Container(get_settings())


def reset() -> None:
    """Forget settings, clients and services (tests change the environment between cases)."""
    from kubilitics.adapters.aws import reset_clients

    get_settings.cache_clear()
    get_container.cache_clear()
    reset_clients()
