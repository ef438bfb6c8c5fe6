"""Who the cluster sees: the headers an impersonating request carries, the policy that names the
caller, the modes per context, and the access-review cache (its bound and its lifetime)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubilitics.adapters.kube_rest import KubeRestClients
from kubilitics.adapters.kubeconfig import ContextConfig, KubeIdentity
from kubilitics.adapters.kubernetes import BUILTIN_TYPES, KubernetesGateway
from kubilitics.auth.impersonation import AuthorizationPolicy
from kubilitics.auth.tokens import Principal
from kubilitics.config import Settings
from kubilitics.errors import KubiliticsError
from kubilitics.services import access as access_module
from kubilitics.services.access import AccessReviews

PODS = next(t for t in BUILTIN_TYPES if t.kind == "Pod")


def principal(sub: str = "alice", groups: tuple[str, ...] = ()) -> Principal:
    return Principal(sub, frozenset({"read"}), "user", "jti", 2_000_000_000, groups=groups)


# ---- the headers on the wire -------------------------------------------------------------------------


@pytest.fixture()
def api_server() -> Iterator[tuple[str, list[list[tuple[str, str]]]]]:
    """An HTTP server on 127.0.0.1 that answers every GET with an empty list and records the headers."""
    seen: list[list[tuple[str, str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(list(self.headers.items()))
            body = b'{"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()


def test_a_caller_context_sends_one_impersonate_group_header_per_group(api_server):
    url, seen = api_server
    context = ContextConfig("ctx", "c", url, user={"token": "service-token"})
    gateway = KubernetesGateway(KubeRestClients(), timeout=5)
    policy = AuthorizationPolicy()
    caller = policy.for_caller(context, principal("alice", ("payments", "oncall")))

    gateway.list_objects(caller, PODS, namespace="shop")
    gateway.list_objects(context, PODS, namespace="shop")  # the service itself: no impersonation

    impersonating, service = seen
    assert ("Authorization", "Bearer service-token") in impersonating
    assert [v for k, v in impersonating if k == "Impersonate-User"] == ["kubilitics:alice"]
    assert [v for k, v in impersonating if k == "Impersonate-Group"] == [
        "kubilitics:payments",
        "kubilitics:oncall",
        "kubilitics:authenticated",
    ]
    assert not [k for k, _ in service if k.startswith("Impersonate-")]
    assert ("Authorization", "Bearer service-token") in service


# ---- the policy ----------------------------------------------------------------------------------------


def test_no_token_can_name_a_system_user_or_group():
    identity = AuthorizationPolicy().identity(principal("system:admin", ("system:masters",)))
    assert identity == KubeIdentity(
        "kubilitics:system:admin", ("kubilitics:system:masters", "kubilitics:authenticated")
    )
    with pytest.raises(ValueError, match="must not start with 'system:'"):
        Settings(env="test", impersonation_prefix="system:")


@pytest.mark.parametrize("sub", ["alice\r\nImpersonate-Group: system:masters", "al\x00ice", "ålice"])
def test_names_that_cannot_travel_in_a_header_are_refused(sub):
    with pytest.raises(KubiliticsError) as refused:
        AuthorizationPolicy().identity(principal(sub))
    assert refused.value.code == "unauthorized"


def test_modes_per_context():
    policy = AuthorizationPolicy("impersonate", {"single-tenant": "service"}, prefix="corp:")
    shared = ContextConfig("shared", "c", "https://a")
    single = ContextConfig("single-tenant", "c", "https://b")
    assert policy.for_caller(shared, principal("bob")).acting_as == KubeIdentity(
        "corp:bob", ("corp:authenticated",)
    )
    assert policy.for_caller(single, principal("bob")).acting_as is None
    everyone_as_service = AuthorizationPolicy("service")
    assert everyone_as_service.for_caller(shared, principal("bob")).acting_as is None


def test_settings_read_the_modes_from_the_environment():
    settings = Settings.from_env(
        {
            "KUBILITICS_KUBE_AUTHORIZATION_MODE": "service",
            "KUBILITICS_KUBE_AUTHORIZATION_MODES": '{"prod": "impersonate"}',
            "KUBILITICS_IMPERSONATION_PREFIX": "kbl:",
            "KUBILITICS_ENV": "test",
        }
    )
    assert (settings.kube_authorization_mode, settings.kube_authorization_modes) == (
        "service",
        {"prod": "impersonate"},
    )
    assert Settings(env="test").kube_authorization_mode == "impersonate"  # the default


def test_an_identity_survives_being_stored_with_background_work():
    identity = KubeIdentity("kubilitics:alice", ("kubilitics:payments", "kubilitics:authenticated"))
    context = ContextConfig("ctx", "c", "https://a").as_caller(identity)
    assert KubeIdentity.from_record(context.acting_as_record) == identity
    assert KubeIdentity.from_record(None) is None
    assert ContextConfig("ctx", "c", "https://a").acting_as_record is None


# ---- the access-review cache -----------------------------------------------------------------------------


@dataclass
class FakeClock:
    t: float = 1000.0

    def now(self) -> float:
        return self.t


@dataclass
class ReviewingKube:
    """Answers reviews from `allowed` ((user, verb, plural, namespace) tuples) and counts them."""

    allowed: set[tuple[str, str, str, str | None]] = field(default_factory=set)
    asked: list[tuple[str, str, str, str | None]] = field(default_factory=list)

    def resource_type(self, context: Any, kind: str) -> Any:
        found = next((t for t in BUILTIN_TYPES if t.kind == kind), None)
        if found is None:
            raise KubiliticsError(f"Unknown Kubernetes kind: {kind}", code="invalid_resource_kind")
        return found

    def may(self, context: Any, verb: str, rtype: Any, namespace: str | None) -> bool:
        key = (context.acting_as.user, verb, rtype.plural, namespace)
        self.asked.append(key)
        return key in self.allowed


def caller(sub: str) -> ContextConfig:
    return AuthorizationPolicy().for_caller(ContextConfig("ctx", "c", "https://a"), principal(sub))


def test_answers_are_reused_for_the_stated_time_then_asked_again():
    kube, clock = ReviewingKube({("kubilitics:alice", "list", "pods", "a")}), FakeClock()
    reviews = AccessReviews(kube, clock, ttl_seconds=10)  # type: ignore[arg-type]
    alice = caller("alice")
    assert reviews.may_read(alice, "Pod", "a") and not reviews.may_read(alice, "Pod", "b")
    asked = len(kube.asked)  # cluster-wide (once), then each namespace
    assert kube.asked == [
        ("kubilitics:alice", "list", "pods", None),
        ("kubilitics:alice", "list", "pods", "a"),
        ("kubilitics:alice", "list", "pods", "b"),
    ]
    clock.t += 9.9
    assert reviews.may_read(alice, "Pod", "a") and len(kube.asked) == asked
    kube.allowed.clear()  # the RoleBinding is removed
    clock.t += 0.2
    assert not reviews.may_read(alice, "Pod", "a")
    assert len(kube.asked) == asked + 2


def test_each_caller_gets_their_own_answer_and_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(access_module, "MAX_ENTRIES", 3)
    kube = ReviewingKube({("kubilitics:alice", "watch", "pods", "a")})
    reviews = AccessReviews(kube, FakeClock(), ttl_seconds=10)  # type: ignore[arg-type]
    assert reviews.may(caller("alice"), "watch", "Pod", "a")
    assert not reviews.may(caller("mallory"), "watch", "Pod", "a")
    for ns in ("x", "y", "z"):
        reviews.may(caller("alice"), "watch", "Pod", ns)
    assert len(reviews._answers) == 3
    before = len(kube.asked)
    assert reviews.may(caller("alice"), "watch", "Pod", "a")  # evicted: asked again
    assert len(kube.asked) == before + 1


def test_service_mode_asks_nothing_and_sees_everything():
    kube = ReviewingKube()
    reviews = AccessReviews(kube, FakeClock())  # type: ignore[arg-type]
    service = ContextConfig("ctx", "c", "https://a")
    records = [{"resource": {"kind": "Pod", "namespace": "b"}}]
    assert reviews.visible(service, records, access_module.resource_subject) == records
    reviews.require(service, "watch", "Secret", None)
    assert kube.asked == []


def test_listings_keep_only_what_the_caller_may_read_and_require_says_why():
    kube = ReviewingKube({("kubilitics:alice", "list", "pods", "a")})
    reviews = AccessReviews(kube, FakeClock())  # type: ignore[arg-type]
    records = [
        {"id": 1, "resource": {"kind": "Pod", "namespace": "a"}},
        {"id": 2, "resource": {"kind": "Pod", "namespace": "b"}},
        {"id": 3, "resource": {"kind": "Deployment", "namespace": "a"}},
        {"id": 4, "resource": {"kind": "RemovedCustomKind", "namespace": "a"}},
    ]
    visible = reviews.visible(caller("alice"), records, access_module.resource_subject)
    assert [r["id"] for r in visible] == [1]
    with pytest.raises(KubiliticsError) as refused:
        reviews.require(caller("alice"), "watch", "Pod", "b")
    assert refused.value.code == "forbidden"
    assert refused.value.details == {"verb": "watch", "kind": "Pod", "namespace": "b"}
