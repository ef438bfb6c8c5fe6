"""Node metrics' `network` and `disk`: the kubelet's stats summary through the API server's node proxy,
asked as the caller; where it is not served, objects whose figures are null with `source` and `reason`
(never a bare null where the reference has an object)."""

from __future__ import annotations

from typing import Any

from kubilitics.errors import KubiliticsError
from kubilitics.services.metrics import MetricsService

SUMMARY = {
    "node": {
        "nodeName": "n1",
        "network": {
            "name": "eth0",
            "rxBytes": 1000,
            "txBytes": 400,
            "rxErrors": 0,
            "txErrors": 1,
            "interfaces": [
                {"name": "eth0", "rxBytes": 1000, "txBytes": 400, "rxErrors": 0, "txErrors": 1},
                {"name": "eth1", "rxBytes": 24, "txBytes": 6, "rxErrors": 2, "txErrors": 0},
            ],
        },
        "fs": {"availableBytes": 60, "capacityBytes": 100, "usedBytes": 40},
    }
}


def node(name: str, **allocatable: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", **allocatable},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


class FakeKube:
    """n1's kubelet serves its summary; n2's proxy is refused as the API server refuses it (kwok)."""

    def __init__(self, stats_error: KubiliticsError | None = None) -> None:
        self.stats_error = stats_error
        self.contexts: list[Any] = []

    def get_path(self, context: Any, path: str, params: Any = None, timeout: float | None = None) -> Any:
        if path == "/api/v1/nodes":
            return {"items": [node("n1", **{"ephemeral-storage": "80"}), node("n2")]}
        if path == "/apis/metrics.k8s.io/v1beta1/nodes":
            return {"items": [{"metadata": {"name": "n1"}, "usage": {"cpu": "1", "memory": "1Gi"}}]}
        if path == "/api/v1/pods":
            return {"items": []}
        if path.endswith("/proxy/stats/summary"):
            self.contexts.append(context)
            assert timeout is not None and timeout <= 5
            if self.stats_error:
                raise self.stats_error
            if path == "/api/v1/nodes/n1/proxy/stats/summary":
                return SUMMARY
            raise KubiliticsError("address not allowed", code="validation_failed")
        raise AssertionError(path)


def test_network_and_disk_come_from_the_kubelets_stats_summary():
    kube = FakeKube()
    caller = object()
    body = MetricsService(kube).nodes(caller, now=0.0)  # type: ignore[arg-type]
    n1, n2 = body["nodes"]
    assert n1["network"] == {
        "rx_bytes": "1024",
        "tx_bytes": "406",
        "rx_errors": 2,
        "tx_errors": 1,
        "source": "kubelet_stats_summary",
    }
    # allocatable from the node's ephemeral-storage, usage from the kubelet's root filesystem
    assert n1["disk"] == {
        "usage_bytes": "40",
        "allocatable_bytes": "80",
        "percent": 50.0,
        "source": "kubelet_stats_summary",
    }
    assert n2["network"]["source"] == n2["disk"]["source"] == "unavailable"
    assert {k: n2["network"][k] for k in ("rx_bytes", "tx_bytes", "rx_errors", "tx_errors")} == dict.fromkeys(
        ("rx_bytes", "tx_bytes", "rx_errors", "tx_errors")
    )
    assert {k: n2["disk"][k] for k in ("usage_bytes", "allocatable_bytes", "percent")} == dict.fromkeys(
        ("usage_bytes", "allocatable_bytes", "percent")
    )
    assert "address not allowed" in n2["network"]["reason"]
    assert kube.contexts == [caller, caller]  # asked with the caller's context (identity), never another
    by_traffic = MetricsService(kube).nodes(caller, now=0.0, sort_by="network")  # type: ignore[arg-type]
    assert [n["name"] for n in by_traffic["nodes"]] == ["n1", "n2"]


def test_a_caller_without_nodes_proxy_gets_null_figures_saying_so():
    kube = FakeKube(KubiliticsError("nodes/proxy forbidden", code="forbidden"))
    body = MetricsService(kube).nodes(object(), now=0.0)  # type: ignore[arg-type]
    for entry in body["nodes"]:
        assert entry["network"]["rx_bytes"] is None and entry["disk"]["usage_bytes"] is None
        assert entry["disk"]["source"] == "unavailable" and "nodes/proxy" in entry["disk"]["reason"]
