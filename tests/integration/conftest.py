"""Fixtures of the integration tests (Lambda handlers on moto and the real test cluster)."""

from __future__ import annotations

import pytest


@pytest.fixture()
def on_cluster(settings_env, k8s_cluster):
    """Settings pointed at the test cluster's kubeconfig (the `aws` fixture gives the tables)."""
    from kubilitics import container

    settings_env.setenv("KUBILITICS_KUBECONFIG", k8s_cluster.kubeconfig)
    container.reset()
    return k8s_cluster
