"""The cluster function's Lambda handler (namespaces, contexts), driven with events/ payloads.

DynamoDB is moto; Kubernetes is the real test cluster.
"""

from __future__ import annotations

import importlib
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.support import expect_error, invoke, load_event, revoke, with_query

NAMESPACES = "cluster/list_namespaces.json"
CONTEXTS = "cluster/list_contexts.json"


@pytest.fixture()
def handler(aws):
    return importlib.import_module("functions.cluster.app").handler


def namespaces(handler, token, **query):
    status, headers, body = invoke(handler, with_query(load_event(NAMESPACES, token=token), **query))
    assert status == 200, body
    return headers, body


def apply(cluster, manifest: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=manifest)


def wait_until(predicate, timeout: float = 60, interval: float = 0.5, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def pod(name: str, namespace: str) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  containers:
  - name: app
    image: nginx:1.27
    resources: {{requests: {{cpu: 100m, memory: 64Mi}}, limits: {{cpu: 200m, memory: 128Mi}}}}
"""


# ---- namespaces ---------------------------------------------------------------------------------


def test_namespace_shows_its_pods_and_merged_quota_usage(aws, on_cluster, handler, mint, k8s_namespace):
    ns = k8s_namespace
    # Two quotas: "pods" is limited by both (the tighter, 5, binds), memory and configmaps by one each.
    apply(
        on_cluster,
        f"""
apiVersion: v1
kind: ResourceQuota
metadata: {{name: compute, namespace: {ns}}}
spec: {{hard: {{pods: "10", requests.memory: 1Gi}}}}
---
apiVersion: v1
kind: ResourceQuota
metadata: {{name: objects, namespace: {ns}}}
spec: {{hard: {{pods: "5", count/configmaps: "4"}}}}
""",
    )
    for name in ("a", "b", "c"):
        apply(on_cluster, pod(name, ns))

    def quotas_counted():
        out = on_cluster.kubectl("get", "resourcequota", "-n", ns, "-o", "json").stdout
        return all(
            (q.get("status", {}).get("used") or {}).get("pods") == "3" for q in json.loads(out)["items"]
        )

    wait_until(quotas_counted, what="the quota controller to count 3 pods")

    _, body = namespaces(handler, mint(), limit=1000)
    item = next(i for i in body["items"] if i["name"] == ns)
    created = on_cluster.kubectl("get", "ns", ns, "-o", "jsonpath={.metadata.creationTimestamp}").stdout
    assert item["status"] == "Active"
    assert item["creation_timestamp"] == created
    assert item["pod_count"] == 3
    assert item["resource_quota_status"] == {
        "hard": {"count/configmaps": "4", "pods": "5", "requests.memory": "1Gi"},
        # kube-root-ca.crt is the namespace's one ConfigMap; 3 pods of 64Mi each
        "used": {"count/configmaps": "1", "pods": "3", "requests.memory": "192Mi"},
    }


def test_namespace_without_quota_has_no_quota_status_and_counts_zero_pods(
    aws, on_cluster, handler, mint, k8s_namespace
):
    _, body = namespaces(handler, mint(), limit=1000)
    item = next(i for i in body["items"] if i["name"] == k8s_namespace)
    assert item["pod_count"] == 0
    assert "resource_quota_status" not in item


def test_system_namespaces_are_hidden_unless_asked_for(aws, on_cluster, handler, mint, k8s_namespace):
    system = {"kube-system", "kube-public", "kube-node-lease"}
    _, hidden = namespaces(handler, mint(), limit=1000)
    names = [i["name"] for i in hidden["items"]]
    assert not system & set(names)
    assert {"default", k8s_namespace} <= set(names)
    assert names == sorted(names)
    assert hidden["total_count"] == len(names)

    _, shown = namespaces(handler, mint(), limit=1000, include_system=True)
    by_name = {i["name"]: i for i in shown["items"]}
    assert system <= set(by_name)
    assert by_name["kube-system"]["status"] == "Active"
    assert shown["total_count"] >= hidden["total_count"] + 3


def test_limit_and_offset_page_through_the_sorted_names(aws, on_cluster, handler, mint, k8s_namespace):
    token = mint()
    # Other tests create and delete namespaces meanwhile: retry until two reads agree.
    for _ in range(5):
        _, everything = namespaces(handler, token, limit=1000)
        names = [i["name"] for i in everything["items"]]
        at = names.index(k8s_namespace)
        _, page = namespaces(handler, token, limit=2, offset=at)
        if page["total_count"] == everything["total_count"]:
            break
    assert [i["name"] for i in page["items"]] == names[at : at + 2]
    assert page["items"][0]["name"] == k8s_namespace
    _, default_page = namespaces(handler, token)
    assert len(default_page["items"]) == min(100, default_page["total_count"])
    _, past_the_end = namespaces(handler, token, offset=10_000)
    assert past_the_end["items"] == [] and past_the_end["total_count"] > 0


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"include_system": "perhaps"}, "include_system"),
    ],
)
def test_bad_namespace_parameters_are_400_invalid_parameter(aws, on_cluster, handler, mint, query, parameter):
    event = with_query(load_event(NAMESPACES, token=mint()), **query)
    body = expect_error(handler, event, 400, "invalid_parameter")
    assert body["details"]["parameter"] == parameter


def test_namespaces_are_rate_limited_as_reads(aws, on_cluster, handler, mint):
    headers, _ = namespaces(handler, mint(sub="ns-reader"))
    assert headers["x-ratelimit-limit"] == "200" and headers["x-ratelimit-remaining"] == "199"


def test_namespaces_of_an_unreachable_cluster_are_502(aws, settings_env, handler, mint, tmp_path):
    from kubilitics import container

    settings_env.setenv("KUBILITICS_KUBECONFIG", str(write_kubeconfig(tmp_path, [dead_context("dead")])))
    container.reset()
    body = expect_error(handler, load_event(NAMESPACES, token=mint()), 502, "kubernetes_api_error")
    assert body["details"]["reason"] == "connection_refused"


# ---- auth (both endpoints) ----------------------------------------------------------------------


@pytest.mark.parametrize("event_file", [NAMESPACES, CONTEXTS])
def test_without_a_token_is_401(aws, on_cluster, handler, event_file):
    expect_error(handler, load_event(event_file, token=None), 401, "unauthorized")


@pytest.mark.parametrize("event_file", [NAMESPACES, CONTEXTS])
def test_expired_token_is_401(aws, on_cluster, handler, mint, event_file):
    token = mint(now=time.time() - 7200, ttl_seconds=3600)
    expect_error(handler, load_event(event_file, token=token), 401, "token_expired")


@pytest.mark.parametrize("event_file", [NAMESPACES, CONTEXTS])
def test_revoked_token_is_401(aws, on_cluster, handler, mint, event_file):

    token = mint()
    revoke(token)
    expect_error(handler, load_event(event_file, token=token), 401, "token_revoked")


def test_namespaces_need_the_read_scope(aws, on_cluster, handler, mint):
    body = expect_error(handler, load_event(NAMESPACES, token=mint(scopes="exec")), 403, "insufficient_scope")
    assert body["details"] == {"required_scope": "read", "granted_scopes": ["exec"]}


def test_contexts_need_only_a_valid_token(aws, on_cluster, handler, mint):
    status, headers, body = invoke(handler, load_event(CONTEXTS, token=mint(scopes="exec")))
    assert status == 200, body
    assert headers["x-ratelimit-limit"] == "100"  # the "standard" category


def test_namespaces_with_an_unknown_context_header(aws, on_cluster, handler, mint):
    event = load_event(NAMESPACES, token=mint(), headers={"x-kubeconfig-context": "nope"})
    expect_error(handler, event, 401, "invalid_context")


# ---- contexts -----------------------------------------------------------------------------------


def dead_context(
    name: str, server: str = "https://127.0.0.1:9", extra: dict | None = None, **cluster
) -> dict:
    return {
        "name": name,
        "cluster": {"server": server, **cluster},
        "user": {"token": f"secret-token-of-{name}"},
        "extra": extra or {},
    }


def write_kubeconfig(
    tmp_path: Path, contexts: list[dict], base: str | None = None, current: str = ""
) -> Path:
    """A kubeconfig with `base`'s contexts (if given) plus `contexts`."""
    document = yaml.safe_load(Path(base).read_text()) if base else {"apiVersion": "v1", "kind": "Config"}
    document.setdefault("clusters", [])
    document.setdefault("users", [])
    document.setdefault("contexts", [])
    for ctx in contexts:
        document["clusters"].append({"name": f"{ctx['name']}-cluster", "cluster": ctx["cluster"]})
        document["users"].append({"name": f"{ctx['name']}-user", "user": ctx["user"]})
        context = {"cluster": f"{ctx['name']}-cluster", "user": f"{ctx['name']}-user"}
        document["contexts"].append({"name": ctx["name"], "context": {**context, **ctx["extra"]}})
    if current:
        document["current-context"] = current
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture()
def silent_server():
    """A TCP server that accepts connections and never answers: the slowest kind of dead cluster."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture()
def many_contexts(settings_env, k8s_cluster, tmp_path, silent_server):
    """The testbed context plus a refused one, a silent one and one with a missing CA file."""
    from kubilitics import container

    path = write_kubeconfig(
        tmp_path,
        [
            dead_context("dead", extra={"namespace": "payments"}),
            dead_context("silent", silent_server),
            dead_context("bad-ca", "https://127.0.0.1:9", **{"certificate-authority": "/nonexistent/ca.crt"}),
        ],
        base=k8s_cluster.kubeconfig,
        current=k8s_cluster.context,
    )
    settings_env.setenv("KUBILITICS_KUBECONFIG", str(path))
    settings_env.setenv("KUBILITICS_HEALTH_TIMEOUT_SECONDS", "1")
    container.reset()
    return path


def test_contexts_report_reachability_and_version_per_context(aws, k8s_cluster, many_contexts, handler, mint):
    started = time.monotonic()
    status, _, body = invoke(handler, load_event(CONTEXTS, token=mint()))
    elapsed = time.monotonic() - started
    assert status == 200, body
    # The silent cluster is cut off at the 1 s probe timeout; the refused one fails at once.
    assert elapsed < 2.5, f"contexts took {elapsed:.2f}s"

    assert body["current_context"] == k8s_cluster.context
    by_name = {c["name"]: c for c in body["contexts"]}
    assert list(by_name) == [k8s_cluster.context, "dead", "silent", "bad-ca"]

    server_version = json.loads(k8s_cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    testbed = by_name[k8s_cluster.context]
    assert testbed["is_reachable"] is True
    assert testbed["kubernetes_version"] == server_version["gitVersion"].lstrip("v")
    assert testbed["cluster"]["server"] == k8s_cluster.server()
    assert testbed["cluster"]["is_insecure"] is False
    assert testbed["user"]["auth_method"] == "client_certificate"
    assert testbed["namespace"] == "default"

    assert by_name["dead"] == {
        "name": "dead",
        "cluster": {"name": "dead-cluster", "server": "https://127.0.0.1:9", "is_insecure": False},
        "user": {"name": "dead-user", "auth_method": "token"},
        "namespace": "payments",
        "is_reachable": False,
        "error": "connection_refused",
    }
    assert by_name["silent"]["is_reachable"] is False
    assert by_name["silent"]["error"] == "connection_timeout"
    assert by_name["bad-ca"]["cluster"]["certificate_authority"] == "/nonexistent/ca.crt"
    assert by_name["bad-ca"]["error"] == "invalid_config"


def test_contexts_never_show_credentials(aws, k8s_cluster, many_contexts, handler, mint):
    _, _, body = invoke(handler, load_event(CONTEXTS, token=mint()))
    text = json.dumps(body)
    document = yaml.safe_load(many_contexts.read_text())
    credential_keys = ("token", "client-key-data", "client-certificate-data", "certificate-authority-data")
    secrets = [u["user"][k] for u in document["users"] for k in credential_keys if u["user"].get(k)]
    secrets += [c["cluster"][k] for c in document["clusters"] for k in credential_keys if c["cluster"].get(k)]
    assert len(secrets) >= 5  # three tokens, the testbed's key and certificate (at least)
    for secret in secrets:
        assert secret not in text
    for context in body["contexts"]:
        assert set(context["user"]) <= {"name", "client_certificate", "auth_method"}
        assert set(context["cluster"]) <= {"name", "server", "certificate_authority", "is_insecure"}


def test_a_token_bound_to_a_cluster_sees_only_that_context(aws, k8s_cluster, many_contexts, handler, mint):
    status, _, body = invoke(handler, load_event(CONTEXTS, token=mint(cluster_id="dead")))
    assert status == 200, body
    assert body["current_context"] == "dead"
    assert [c["name"] for c in body["contexts"]] == ["dead"]
    assert body["contexts"][0]["error"] == "connection_refused"


def test_a_token_bound_to_an_unknown_cluster_sees_no_context(aws, k8s_cluster, many_contexts, handler, mint):
    status, _, body = invoke(handler, load_event(CONTEXTS, token=mint(cluster_id="elsewhere")))
    assert status == 200, body
    assert body == {"current_context": None, "contexts": []}


def test_contexts_of_the_testbed_alone(aws, on_cluster, handler, mint):
    status, _, body = invoke(handler, load_event(CONTEXTS, token=mint()))
    assert status == 200, body
    assert body["current_context"] == on_cluster.context
    assert [(c["name"], c["is_reachable"]) for c in body["contexts"]] == [(on_cluster.context, True)]
