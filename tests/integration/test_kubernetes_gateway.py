"""The gateway's built-in kinds are exactly what the API server's discovery says about them."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.cluster


@pytest.fixture()
def gateway_and_context(on_cluster):
    from kubilitics import container

    services = container.get_container()
    return services.kube, services.kubeconfig.get().resolve(None)


def test_every_built_in_kind_matches_discovery(gateway_and_context):
    from kubilitics.adapters.kubernetes import BUILTIN_TYPES

    gateway, context = gateway_and_context
    discovered = {(t.group, t.kind): t for t in gateway.resource_types(context)}
    for builtin in BUILTIN_TYPES:
        assert discovered.get((builtin.group, builtin.kind)) == builtin, builtin.kind


def test_a_cold_gateway_resolves_built_in_names_as_discovery_does(gateway_and_context):
    from kubilitics.adapters.kubernetes import BUILTIN_TYPES, KubernetesGateway

    warm, context = gateway_and_context
    names = {name for t in BUILTIN_TYPES for name in (t.kind, t.kind.upper(), t.plural, *t.short_names)}
    cold = KubernetesGateway(warm._clients, warm.timeout)
    resolved_cold = {name: cold.resource_type(context, name) for name in sorted(names)}
    assert cold._discovery == {}, "built-in names must not need discovery"
    assert resolved_cold == {name: warm.resource_type(context, name) for name in sorted(names)}
    assert resolved_cold["deploy"].path("shop", "web") == "/apis/apps/v1/namespaces/shop/deployments/web"


def test_other_kinds_still_come_from_discovery(gateway_and_context):
    from kubilitics.adapters.kubernetes import KubernetesGateway

    warm, context = gateway_and_context
    cold = KubernetesGateway(warm._clients, warm.timeout)
    assert cold.resource_type(context, "csidriver").group == "storage.k8s.io"
    assert cold.resource_type(context, "Lease").group == "coordination.k8s.io"
    assert context.name in cold._discovery
