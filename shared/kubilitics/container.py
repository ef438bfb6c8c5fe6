"""Builds the services from settings, once per process. Handlers and routers get them from here."""

from __future__ import annotations

import time
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from kubilitics.auth.revocation import RevocationList
from kubilitics.auth.tokens import TokenCodec
from kubilitics.clock import SystemClock
from kubilitics.config import DEVELOPMENT_JWT_SECRET, Settings, check_jwt_secret, get_settings
from kubilitics.services.ratelimit import RateLimiter

if TYPE_CHECKING:
    from collections.abc import Callable

    from kubilitics.adapters.ai_probe import AnthropicProbe
    from kubilitics.adapters.ai_secret import CachedKey
    from kubilitics.adapters.apigw import ApiGatewayNotifier, LambdaInvoker
    from kubilitics.adapters.dynamodb import (
        DynamoActionStore,
        DynamoChatHistory,
        DynamoInsightStore,
        DynamoInvestigationStore,
        DynamoRealtimeStore,
        DynamoSessionQueue,
    )
    from kubilitics.adapters.kube_rest import KubeRestClients
    from kubilitics.adapters.kubeconfig import ContextConfig, KubeconfigSource
    from kubilitics.adapters.kubernetes import KubernetesGateway
    from kubilitics.ai.budget import BudgetLedger
    from kubilitics.ai.insights import ScanPolicy
    from kubilitics.auth.impersonation import AuthorizationPolicy
    from kubilitics.auth.tokens import Principal
    from kubilitics.ports import (
        AIProvider,
        ConnectionNotifier,
        InvestigationHistory,
        SessionQueue,
        WorkflowStarter,
    )
    from kubilitics.services.access import AccessReviews
    from kubilitics.services.actions import ActionService
    from kubilitics.services.ai_admin import AiAdminService, AiConfigService
    from kubilitics.services.analytics import AnalyticsService
    from kubilitics.services.chat import ChatService
    from kubilitics.services.cluster import ClusterService
    from kubilitics.services.events import EventsService
    from kubilitics.services.insights import InsightScanner, InsightsService
    from kubilitics.services.investigation_tasks import InvestigationTasks
    from kubilitics.services.investigations import InvestigationService
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


class Container:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.clock = SystemClock()

    @cached_property
    def token_codec(self) -> TokenCodec:
        s = self.settings
        if s.uses_identity_provider:
            return TokenCodec(
                algorithm=s.jwt_algorithm.split(","),
                jwks_url=s.jwks_url,
                issuer=s.jwt_issuer,
                audience=s.jwt_audiences,
                scope_claim=s.jwt_scope_claim,
                scope_prefix=s.jwt_scope_prefix,
                groups_claim=s.jwt_groups_claim,
                jwks_timeout_seconds=s.jwks_timeout_seconds,
            )
        if s.jwt_secret:
            secret = s.jwt_secret.get_secret_value()
        elif s.jwt_secret_arn:
            secret = _secret_string(s.jwt_secret_arn)
            if s.env == "production":  # read on first use: Settings could not check its length
                check_jwt_secret(secret, s.jwt_secret_arn)
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

        return RateLimiter(
            DynamoRateLimitStore(self.settings.rate_limit_table),
            self.clock,
            self.settings.rate_limit_multiplier,
        )

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
        return self.ai_key_store.get() if self.ai_key_store else None

    @cached_property
    def ai_key_store(self) -> CachedKey | None:
        """The AI secret, read at most once per `ai_key_cache_seconds` (an unreadable one: 503)."""
        from kubilitics.adapters.ai_secret import CachedKey, SecretsManagerValue

        s = self.settings
        if not s.ai_secret_arn:
            return None
        return CachedKey(SecretsManagerValue(s.ai_secret_arn), self.clock.now, s.ai_key_cache_seconds)

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
            key_store=self.ai_key_store,
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

    def ai_provider(self, timeout: float | None = None) -> AIProvider:
        """Claude when a key is configured, else the offline explainer. Built per use, so a new key
        or model (PUT /api/v1/ai/config) applies to the next investigation. `timeout` bounds one
        request (chat turns must fit in the WebSocket Lambda)."""
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
            timeout=timeout or self.settings.ai_request_timeout_seconds,
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
            queue=lambda context: self.investigations.queue_counts(context),
        )

    # -- AI investigations (Step Functions) and remediation actions ---------------------------------

    @cached_property
    def investigation_store(self) -> DynamoInvestigationStore:
        from kubilitics.adapters.dynamodb import DynamoInvestigationStore

        return DynamoInvestigationStore(self.settings.state_table)

    @cached_property
    def action_store(self) -> DynamoActionStore:
        from kubilitics.adapters.dynamodb import DynamoActionStore

        return DynamoActionStore(self.settings.state_table)

    @cached_property
    def workflow_starter(self) -> WorkflowStarter:
        from kubilitics.adapters.stepfunctions import StepFunctionsStarter

        return StepFunctionsStarter(self.settings.state_machine_arn)

    @cached_property
    def investigations(self) -> InvestigationService:
        from kubilitics.services.investigations import InvestigationService

        return InvestigationService(
            kube=self.kube,
            store=self.investigation_store,
            starter=self.workflow_starter,
            rate_limiter=self.rate_limiter,
            clock=self.clock,
            retention_seconds=self.settings.investigation_retention_days * 86400,
            llm_configured=lambda: bool(self.anthropic_api_key()),
            max_concurrent=lambda: (
                self.ai_config.effective().investigation_settings.max_concurrent_investigations
            ),
            run_limit_seconds=self.settings.investigation_run_limit_seconds,
        )

    @cached_property
    def actions(self) -> ActionService:
        from kubilitics.services.actions import ActionService, ActionSettings

        s = self.settings
        return ActionService(
            kube=self.kube,
            store=self.action_store,
            contexts=self.kube_context,
            caller_context=self.caller_context,
            access=self.access_reviews,
            config=self.ai_config.effective,
            clock=self.clock,
            settings=ActionSettings(
                approval_seconds=s.action_approval_minutes * 60,
                verify_timeout_seconds=s.action_verify_timeout_seconds,
                verify_settle_seconds=s.action_verify_settle_seconds,
                retention_seconds=s.investigation_retention_days * 86400,
                execution_limit_seconds=s.action_execution_limit_seconds,
            ),
        )

    @cached_property
    def investigation_tasks(self) -> InvestigationTasks:
        from kubilitics.services.investigation_tasks import InvestigationTasks, LlmReasoner

        def reasoner() -> LlmReasoner | None:
            # Read per step: a key stored with PUT /api/v1/ai/config applies to the next investigation.
            if not self.anthropic_api_key():
                return None
            return LlmReasoner(self.ai_provider(), self.budget_ledger, self.kube)

        return InvestigationTasks(
            kube=self.kube,
            store=self.investigation_store,
            contexts=self.kube_context,
            actions=lambda: self.actions,
            reasoner=reasoner,
            rate_limiter=self.rate_limiter,
            clock=self.clock,
            retention_seconds=self.settings.investigation_retention_days * 86400,
        )

    # -- AI insights, chat, analytics --------------------------------------------------------------

    @cached_property
    def insight_store(self) -> DynamoInsightStore:
        from kubilitics.adapters.dynamodb import DynamoInsightStore

        return DynamoInsightStore(self.settings.state_table)

    @cached_property
    def insights(self) -> InsightsService:
        from kubilitics.services.insights import InsightsService

        return InsightsService(self.insight_store, self.clock, self.access_reviews)

    def insight_policy(self) -> ScanPolicy:
        """Thresholds and prices from settings; categories from the AI configuration's feature flags."""
        from kubilitics.ai.insights import ScanPolicy, UnitPrices

        s = self.settings
        flags = self.ai_config.effective().feature_flags
        return ScanPolicy(
            excluded_namespaces=frozenset(
                n.strip() for n in s.insight_excluded_namespaces.split(",") if n.strip()
            ),
            prices=UnitPrices(
                s.price_cpu_core_month_usd, s.price_memory_gib_month_usd, s.price_storage_gib_month_usd
            ),
            security=flags.security_recommendations,
            cost=flags.cost_optimization,
            min_age_seconds=s.insight_min_age_seconds,
        )

    @cached_property
    def insight_scanner(self) -> InsightScanner:
        from kubilitics.services.insights import InsightScanner

        return InsightScanner(self.kube, self.insight_store, self.clock, self.insight_policy)

    def insight_contexts(self) -> list[Any]:
        """The kubeconfig contexts the scheduled scan covers (default: the current context)."""
        names = [n.strip() for n in self.settings.insight_contexts.split(",") if n.strip()]
        config = self.kubeconfig.get()
        return [config.resolve(name) for name in names] if names else [config.resolve(None)]

    @cached_property
    def chat_history(self) -> DynamoChatHistory:
        from kubilitics.adapters.dynamodb import DynamoChatHistory

        return DynamoChatHistory(self.settings.state_table)

    @cached_property
    def chat(self) -> ChatService:
        from kubilitics.services.chat import ChatService

        s = self.settings
        return ChatService(
            kube=self.kube,
            contexts=self.caller_context,
            history=self.chat_history,
            ledger=self.budget_ledger,
            provider=lambda: self.ai_provider(timeout=s.chat_request_timeout_seconds),
            config=self.ai_config,
            rate_limiter=self.rate_limiter,
            revocations=self.revocations,
            clock=self.clock,
            idle_seconds=s.chat_idle_seconds,
            realtime_store=self.realtime_store,
        )

    @cached_property
    def analytics(self) -> AnalyticsService:
        from kubilitics.adapters.dynamodb import DynamoEngagementStore
        from kubilitics.services.analytics import AnalyticsService

        return AnalyticsService(
            ledger=self.budget_ledger,
            insights=self.insight_store,
            engagement=DynamoEngagementStore(self.settings.rate_limit_table),
            investigations=self.investigation_history(),
            clock=self.clock,
        )

    def investigation_history(self) -> InvestigationHistory | None:
        """Investigations and actions for analytics."""
        from kubilitics.services.investigations import InvestigationHistoryView

        return InvestigationHistoryView(self.investigation_store, self.action_store)

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
            cache_seconds=s.health_cache_seconds,
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

    @cached_property
    def authorization(self) -> AuthorizationPolicy:
        from kubilitics.auth.impersonation import AuthorizationPolicy

        s = self.settings
        return AuthorizationPolicy(
            s.kube_authorization_mode, dict(s.kube_authorization_modes), s.impersonation_prefix
        )

    def kube_context(self, name: str | None, acting_as: dict[str, Any] | None = None) -> ContextConfig:
        """A kubeconfig context by name, for work that runs outside a request: as the service (the
        relay, the insight scanner), or resuming a caller's request as the identity it stored."""
        from kubilitics.adapters.kubeconfig import KubeIdentity

        return self.kubeconfig.get().resolve(name).as_caller(KubeIdentity.from_record(acting_as))

    def caller_context(self, principal: Principal, name: str | None) -> ContextConfig:
        """A kubeconfig context as this caller reaches it (their own RBAC in impersonate mode)."""
        return self.authorization.for_caller(self.kubeconfig.get().resolve(name), principal)

    @cached_property
    def access_reviews(self) -> AccessReviews:
        from kubilitics.services.access import AccessReviews

        return AccessReviews(self.kube, self.clock, self.settings.access_review_cache_seconds)

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
        from kubilitics.services.watch import SubscriptionCaps, Subscriptions

        caps = SubscriptionCaps(
            self.settings.ws_max_subscriptions_per_connection, self.settings.ws_max_subscriptions_per_user
        )
        return RealtimeService(
            auth=self,
            store=self.realtime_store,
            notifier=notifier,
            subscriptions=Subscriptions(
                self.realtime_store, self.kube, self.caller_context, self.access_reviews, caps
            ),
            sessions=sessions,
            pods=self.pods,
            contexts=self.caller_context,
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
            revoked=self.revocations.is_revoked,
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
            revoked=self.revocations.is_revoked,
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
