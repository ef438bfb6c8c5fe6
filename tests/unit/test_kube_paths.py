"""Names never change which Kubernetes API path is requested (security review L2).

The model's tools take names from the model; routes take them from callers. Each name must become
exactly one quoted path segment: "a/b" and "../../secrets" stay inside their segment, and ".", ".."
and "" (which quoting leaves as they are) are refused before any request is made.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from kubilitics.adapters.kubeconfig import ContextConfig
from kubilitics.errors import KubiliticsError

CONTEXT = ContextConfig(name="ctx", cluster_name="c", server="https://kube.test:6443")
ESCAPING = ["../../secrets", "a/b", "../../../api/v1/namespaces/kube-system/secrets?x=", "x#y", "%2e%2e"]
REFUSED = ["..", ".", ""]
METRICS = "/apis/metrics.k8s.io/v1beta1"


class _RecordingPort:
    """A KubernetesPort that records every path it is asked for and answers empty objects."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.logs: list[tuple[str, str]] = []

    def get_path(self, context: Any, path: str, params: Any = None, timeout: Any = None) -> dict[str, Any]:
        self.paths.append(path)
        return {}

    def resource_type(self, context: Any, kind: str) -> Any:
        from kubilitics.adapters.kubernetes import ResourceType

        plural = kind.lower() + "s"
        return ResourceType("", "v1", kind, plural, kind.lower(), (), kind != "Node", ("get", "list"))

    def get(self, context: Any, rtype: Any, namespace: str | None, name: str) -> dict[str, Any]:
        self.paths.append(rtype.path(namespace, name))
        return {}


def _toolbox(port: Any) -> Any:
    from kubilitics.ai.toolbox import KubernetesToolbox

    return KubernetesToolbox(port, CONTEXT, "default")


@pytest.mark.parametrize("name", ESCAPING)
def test_read_metrics_puts_a_model_given_name_in_one_quoted_segment(name):
    port = _RecordingPort()
    _toolbox(port)("read_metrics", {"kind": "Node", "name": name})
    _toolbox(port)("read_metrics", {"kind": "Pod", "name": name, "namespace": name})
    segment = quote(name, safe="")
    assert port.paths == [
        f"{METRICS}/nodes/{segment}",
        f"/api/v1/nodes/{segment}",
        f"{METRICS}/namespaces/{segment}/pods/{segment}",
        f"/api/v1/namespaces/{segment}/pods/{segment}",
    ]
    for path in port.paths:
        assert "/../" not in f"{path}/" and "?" not in path and "#" not in path


@pytest.mark.parametrize("name", REFUSED)
def test_read_metrics_refuses_dot_segments_and_empty_names_before_any_request(name):
    port = _RecordingPort()
    for arguments in (
        {"kind": "Node", "name": name},
        {"kind": "Pod", "name": name},
        {"kind": "Pod", "name": "web", "namespace": ".." if name == "" else name},
    ):
        with pytest.raises(KubiliticsError) as raised:
            _toolbox(port)("read_metrics", arguments)
        assert raised.value.code == "invalid_parameter"
    assert port.paths == []


class _Response:
    status = 404
    data = b'{"kind": "Status", "reason": "NotFound", "message": "not found"}'

    def read(self) -> bytes:
        return self.data


class _RecordingPool:
    """Stands in for the KubeRestClient's urllib3 pool: records each URL, answers 404."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def request(self, method: str, url: str, **_: Any) -> _Response:
        self.urls.append(url)
        return _Response()


@pytest.fixture()
def gateway_pool() -> tuple[Any, _RecordingPool]:
    from kubilitics.adapters.kube_rest import KubeRestClients
    from kubilitics.adapters.kubernetes import KubernetesGateway

    gateway = KubernetesGateway(KubeRestClients(), timeout=1.0)
    pool = _RecordingPool()
    gateway.client(CONTEXT)._pool = pool  # type: ignore[assignment]
    return gateway, pool


@pytest.mark.parametrize("name", ESCAPING)
def test_the_model_tools_request_exactly_one_segment_through_the_real_gateway(gateway_pool, name):
    gateway, pool = gateway_pool
    segment = quote(name, safe="")
    with pytest.raises(KubiliticsError, match="not found"):
        _toolbox(gateway)("read_metrics", {"kind": "Node", "name": name})
    with pytest.raises(KubiliticsError, match="not found"):
        _toolbox(gateway)("read_logs", {"pod": name, "namespace": name})
    assert pool.urls == [
        f"https://kube.test:6443{METRICS}/nodes/{segment}",
        f"https://kube.test:6443/api/v1/namespaces/{segment}/pods/{segment}/log?tailLines=100",
    ]


@pytest.mark.parametrize("name", REFUSED)
def test_pod_logs_refuse_dot_segments_before_any_request(gateway_pool, name):
    gateway, pool = gateway_pool
    for namespace, pod in ((name, "web"), ("default", name)):
        if namespace == "" or pod == "":
            continue  # an empty name is refused by the routes; logs take the names they were given
        with pytest.raises(KubiliticsError) as raised:
            gateway.pod_logs(CONTEXT, namespace, pod, {})
        assert raised.value.code == "invalid_parameter"
        with pytest.raises(KubiliticsError):
            _toolbox(gateway)("read_logs", {"pod": pod, "namespace": namespace})
    assert pool.urls == []


def test_service_paths_quote_and_refuse_names():
    from kubilitics.kube_paths import segment
    from kubilitics.services.cluster import namespace_path

    assert namespace_path("a/b") == "/api/v1/namespaces/a%2Fb"
    assert segment("../../secrets") == "..%2F..%2Fsecrets"
    for name in REFUSED:
        with pytest.raises(KubiliticsError):
            namespace_path(name)
        with pytest.raises(KubiliticsError):
            segment(name)


def test_chat_metrics_keep_the_namespace_in_its_segment():
    from kubilitics.services.chat import ChatService

    port = _RecordingPort()
    service = ChatService.__new__(ChatService)
    service._kube = port  # type: ignore[assignment]
    assert service._metrics(CONTEXT, "../kube-system", ["web"]) == {}
    assert port.paths == [f"{METRICS}/namespaces/..%2Fkube-system/pods"]
    with pytest.raises(KubiliticsError):
        service._metrics(CONTEXT, "..", ["web"])
