"""Builds the services from settings, once per process. Handlers and routers get them from here."""

from __future__ import annotations

import time
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from kubilitics.auth.revocation import RevocationList
from kubilitics.auth.tokens import TokenCodec
from kubilitics.clock import SystemClock
from kubilitics.config import DEVELOPMENT_JWT_SECRET, Settings, get_settings
from kubilitics.services.ratelimit import RateLimiter

if TYPE_CHECKING:
    from collections.abc import Callable

    from kubilitics.adapters.ai_probe import AnthropicProbe
    from kubilitics.adapters.apigw import ApiGatewayNotifier, LambdaInvoker
    from kubilitics.adapters.dynamodb import DynamoRealtimeStore, DynamoSessionQueue
    from kubilitics.adapters.kube_rest import KubeRestClients
    from kubilitics.adapters.kubeconfig import KubeconfigSource
    from kubilitics.adapters.kubernetes import KubernetesGateway
    from kubilitics.ai.budget import BudgetLedger
    from kubilitics.ports import AIProvider, ConnectionNotifier, SessionQueue
    from kubilitics.services.ai_admin import AiAdminService, AiConfigService
    from kubilitics.services.cluster import ClusterService
    from kubilitics.services.events import EventsService
    from kubilitics.services.metrics import MetricsService
    from kubilitics.services.pods import PodService
    from kubilitics.services.realtime import RealtimeService
    from kubilitics.services.resources import ResourcesService
    from kubilitics.services.sessions import Sessions, SessionWorker
    from kubilitics.services.system import SystemService
    from kubilitics.services.topology import TopologyService
    from kubilitics.services.watch import RelayOptions, WatchRelay

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
        from kubilitics.adapters.dynamodb import DynamoRevocationStore

        store = DynamoRevocationStore(self.settings.revoked_tokens_table)
        return RevocationList(store, self.clock, self.settings.revocation_cache_seconds)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        from kubilitics.adapters.dynamodb import DynamoRateLimitStore

        return RateLimiter(DynamoRateLimitStore(self.settings.rate_limit_table), self.clock)

    @cached_property
    def kubeconfig(self) -> KubeconfigSource:
        from kubilitics.adapters.kubeconfig import KubeconfigSource

        s = self.settings
        return KubeconfigSource(path=s.kubeconfig_path, secret_arn=s.kubeconfig_secret_arn or None)

    @cached_property
    def kube_rest(self) -> KubeRestClients:
        from kubilitics.adapters.kube_rest import KubeRestClients

        return KubeRestClients(self.settings.region)

    def anthropic_api_key(self) -> str | None:
        """The configured key (settings first, then the AI secret); None means rules only."""
        s = self.settings
        if s.anthropic_api_key:
            return s.anthropic_api_key.get_secret_value()
        return _optional_secret(s.ai_secret_arn) if s.ai_secret_arn else None

    @cached_property
    def kube(self) -> KubernetesGateway:
        from kubilitics.adapters.kubernetes import KubernetesGateway

        return KubernetesGateway(self.kube_rest, self.settings.kube_timeout_seconds)

    @cached_property
    def ai_probe(self) -> AnthropicProbe:
        from kubilitics.adapters.ai_probe import AnthropicProbe

        s = self.settings
        return AnthropicProbe(self.anthropic_api_key, s.anthropic_base_url, s.health_timeout_seconds)

    # -- AI: configuration, budget ledger, providers (imported on first use: cold start) ---------

    @cached_property
    def ai_config(self) -> AiConfigService:
        from kubilitics.adapters.ai_secret import SecretsManagerValue
        from kubilitics.adapters.dynamodb import DynamoAiConfigStore
        from kubilitics.ai.configuration import default_document
        from kubilitics.services.ai_admin import AiConfigService

        s = self.settings
        return AiConfigService(
            DynamoAiConfigStore(s.state_table),
            defaults=lambda: default_document(
                s.ai_model, s.ai_monthly_limit_usd, s.ai_monthly_limit_tokens, s.ai_model_prices
            ),
            clock=self.clock,
            key_store=SecretsManagerValue(s.ai_secret_arn) if s.ai_secret_arn else None,
            key_from_environment=s.anthropic_api_key is not None,
        )

    @cached_property
    def budget_ledger(self) -> BudgetLedger:
        from kubilitics.adapters.dynamodb import DynamoBudgetStore
        from kubilitics.ai.budget import BudgetLedger

        return BudgetLedger(
            DynamoBudgetStore(self.settings.state_table),
            lambda: self.ai_config.effective().budget_policy(),
            self.clock,
        )

    def ai_provider(self) -> AIProvider:
        """Claude when a key is configured, else the offline explainer. Built per use, so a new key
        or model (PUT /api/v1/ai/config) applies to the next investigation."""
        from kubilitics.ai.providers import AnthropicProvider, OfflineProvider

        key = self.anthropic_api_key()
        if not key:
            return OfflineProvider()
        llm = self.ai_config.effective().llm_configuration
        return AnthropicProvider(
            api_key=key,
            model=llm.model,
            base_url=self.settings.anthropic_base_url,
            max_tokens=llm.max_tokens,
            timeout=self.settings.ai_request_timeout_seconds,
        )

    @cached_property
    def ai_admin(self) -> AiAdminService:
        from kubilitics.services.ai_admin import AiAdminService

        return AiAdminService(
            config=self.ai_config,
            ledger=self.budget_ledger,
            api_key=self.anthropic_api_key,
            probe=self.ai_probe,
            clock=self.clock,
            started_at=STARTED_AT,
        )

    @cached_property
    def system(self) -> SystemService:
        from kubilitics.adapters.cluster_info import KubeClusterInfo
        from kubilitics.adapters.dynamodb import ping_table
        from kubilitics.services.system import SystemService

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

    @cached_property
    def resources(self) -> ResourcesService:
        from kubilitics.services.resources import ResourcesService

        return ResourcesService(self.kube)

    @cached_property
    def cluster(self) -> ClusterService:
        from kubilitics.services.cluster import ClusterService

        return ClusterService(self.kube, self.kubeconfig, self.settings.health_timeout_seconds)

    @cached_property
    def events(self) -> EventsService:
        from kubilitics.services.events import EventsService

        return EventsService(self.kube)

    @cached_property
    def metrics(self) -> MetricsService:
        from kubilitics.services.metrics import MetricsService

        return MetricsService(self.kube)

    @cached_property
    def topology(self) -> TopologyService:
        from kubilitics.services.topology import TopologyService

        return TopologyService(self.kube, self.events)

    @cached_property
    def pods(self) -> PodService:
        from kubilitics.adapters.dynamodb import DynamoLeaseStore
        from kubilitics.services.pods import PodService

        return PodService(self.kube, DynamoLeaseStore(self.settings.rate_limit_table), self.clock)

    # ---- real time: WebSocket API, watch relay, sessions (modules imported on first use) -----------

    def kube_context(self, name: str) -> Any:
        """A kubeconfig context by name, for work that runs outside a request (relay, sessions)."""
        return self.kubeconfig.get().resolve(name)

    @cached_property
    def realtime_store(self) -> DynamoRealtimeStore:
        from kubilitics.adapters.dynamodb import DynamoRealtimeStore

        return DynamoRealtimeStore(self.settings.connections_table)

    @cached_property
    def session_queue(self) -> DynamoSessionQueue:
        from kubilitics.adapters.dynamodb import DynamoSessionQueue

        return DynamoSessionQueue(self.settings.connections_table)

    @cached_property
    def connection_notifier(self) -> ApiGatewayNotifier:
        from kubilitics.adapters.apigw import ApiGatewayNotifier

        return ApiGatewayNotifier(self.settings.websocket_endpoint, self.settings.region)

    @cached_property
    def lambda_invoker(self) -> LambdaInvoker:
        from kubilitics.adapters.apigw import LambdaInvoker

        return LambdaInvoker()

    def realtime_service(
        self,
        notifier: ConnectionNotifier,
        sessions: Sessions,
        on_subscriptions_changed: Callable[[bool], None] | None = None,
    ) -> RealtimeService:
        from kubilitics.services.realtime import RealtimeService
        from kubilitics.services.watch import Subscriptions

        return RealtimeService(
            auth=self,
            store=self.realtime_store,
            notifier=notifier,
            subscriptions=Subscriptions(self.realtime_store, self.kube, self.kube_context),
            sessions=sessions,
            pods=self.pods,
            contexts=self.kube_context,
            rate_limiter=self.rate_limiter,
            clock=self.clock,
            on_subscriptions_changed=on_subscriptions_changed,
        )

    @cached_property
    def realtime(self) -> RealtimeService:
        """The WebSocket API on API Gateway: post_to_connection pushes, sessions in the session Lambda."""
        from kubilitics.services.sessions import Sessions

        s = self.settings
        sessions = Sessions(
            self.realtime_store, self.session_queue, self.lambda_invoker, s.shell_session_function, self.clock
        )

        def start_relay(new_set: bool) -> None:
            # A new watch set should not wait for the next scheduled relay run (the relay exits when idle).
            if new_set and s.watch_relay_function:
                self.lambda_invoker.invoke_async(s.watch_relay_function, {"source": "kubilitics.subscribe"})

        return self.realtime_service(self.connection_notifier, sessions, start_relay)

    def session_worker(
        self, notifier: ConnectionNotifier, queue: SessionQueue | None = None, poll_seconds: float = 0.03
    ) -> SessionWorker:
        from kubilitics.services.sessions import SessionWorker

        return SessionWorker(
            kube=self.kube,
            pods=self.pods,
            contexts=self.kube_context,
            store=self.realtime_store,
            queue=queue or self.session_queue,
            notifier=notifier,
            rate_limiter=self.rate_limiter,
            clock=self.clock,
            idle_seconds=self.settings.shell_idle_seconds,
            poll_seconds=poll_seconds,
        )

    def watch_relay(
        self, owner: str, notifier: ConnectionNotifier, options: RelayOptions | None = None
    ) -> WatchRelay:
        from kubilitics.services.watch import RelayOptions, WatchRelay

        return WatchRelay(
            self.realtime_store,
            self.kube,
            self.kube_context,
            notifier,
            self.clock,
            owner,
            options or RelayOptions(takeover_window_seconds=self.settings.relay_takeover_window_seconds),
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
