"""Fixtures of the fault suite: the API server behind a proxy that fails on demand, DynamoDB
answering errors through botocore's event system."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.faults.proxy import FaultProxy
from tests.integration.conftest import on_cluster  # noqa: F401 - the same fixture here


@pytest.fixture()
def proxy(k8s_cluster, tmp_path: Path) -> Iterator[FaultProxy]:
    """The test cluster's API server behind a FaultProxy; `proxy.kubeconfig` points through it."""
    config = yaml.safe_load(Path(k8s_cluster.kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    m = re.fullmatch(r"https://([\d.]+):(\d+)", cluster["server"])
    assert m, cluster["server"]
    fault = FaultProxy((m.group(1), int(m.group(2))))
    cluster["server"] = f"https://{m.group(1)}:{fault.port}"
    path = tmp_path / "kubeconfig-through-proxy"
    path.write_text(yaml.safe_dump(config))
    fault.kubeconfig = str(path)  # type: ignore[attr-defined]
    try:
        yield fault
    finally:
        fault.close()


@pytest.fixture()
def through_proxy(settings_env, aws, proxy) -> FaultProxy:
    """Settings pointed at the proxy's kubeconfig, with a 2 s Kubernetes timeout."""
    from kubilitics import container

    settings_env.setenv("KUBILITICS_KUBECONFIG", proxy.kubeconfig)  # type: ignore[attr-defined]
    settings_env.setenv("KUBILITICS_KUBE_TIMEOUT_SECONDS", "2")
    container.reset()
    return proxy
