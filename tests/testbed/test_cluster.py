"""Proves that the testbed is a real Kubernetes API server with working simulated nodes.

Each behaviour the product relies on is checked with the official ``kubernetes`` client and with
kubectl: CRUD with selectors, replace, patches, graceful delete, watch (incl. 410 and re-list),
Deployments on KWOK nodes, Services/endpoints, logs, exec, metrics.k8s.io, events, quota, RBAC.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream
from kubilitics_testbed_cluster import STATE, TestbedCluster, wait_until  # loaded by conftest

NGINX = "nginx:1.27"


def core(cluster: TestbedCluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


def apps(cluster: TestbedCluster) -> client.AppsV1Api:
    return client.AppsV1Api(cluster.api_client())


def make_pod(name: str, labels: dict[str, str] | None = None, image: str = NGINX) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {"containers": [{"name": "main", "image": image, "ports": [{"containerPort": 80}]}]},
    }


def make_deployment(name: str, replicas: int = 3, image: str = NGINX) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "ports": [{"containerPort": 80, "name": "http"}],
                            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                        }
                    ]
                },
            },
        },
    }


def wait_pod_running(cluster: TestbedCluster, ns: str, name: str, timeout: float = 60) -> client.V1Pod:
    v1 = core(cluster)

    def running():
        pod = v1.read_namespaced_pod(name, ns)
        return pod if pod.status.phase == "Running" else None

    return wait_until(running, timeout=timeout, what=f"pod {ns}/{name} Running")


# ---------------------------------------------------------------- cluster basics


def test_cluster_answers_with_real_components(k8s_cluster: TestbedCluster) -> None:
    info = client.VersionApi(k8s_cluster.api_client()).get_code()
    assert info.major == "1" and info.git_version.startswith("v1.")
    assert k8s_cluster.server().startswith("https://127.0.0.1:")
    nodes = core(k8s_cluster).list_node().items
    names = {n.metadata.name for n in nodes}
    assert {"testbed-node-1", "testbed-node-2", "testbed-node-3"} <= names
    for node in nodes:
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", node.metadata.name
        # Simulated nodes only ever have loopback addresses.
        for addr in node.status.addresses or []:
            if addr.type == "InternalIP":
                assert addr.address == "127.0.0.1"
    out = k8s_cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
    assert "node/testbed-node-1" in out
    comps = k8s_cluster.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "readyz check passed" in comps


# ---------------------------------------------------------------- CRUD, selectors, patches


def test_crud_selectors_replace_patch_python(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    v1 = core(k8s_cluster)
    ns = k8s_namespace
    for i, tier in enumerate(["web", "web", "db"]):
        v1.create_namespaced_config_map(
            ns,
            {"metadata": {"name": f"cm-{i}", "labels": {"tier": tier, "idx": str(i)}}, "data": {"k": "v"}},
        )
    got = v1.read_namespaced_config_map("cm-0", ns)
    assert got.data == {"k": "v"}

    web = v1.list_namespaced_config_map(ns, label_selector="tier=web").items
    assert sorted(c.metadata.name for c in web) == ["cm-0", "cm-1"]
    not_web = v1.list_namespaced_config_map(ns, label_selector="tier!=web,idx").items
    assert [c.metadata.name for c in not_web] == ["cm-2"]
    in_set = v1.list_namespaced_config_map(ns, label_selector="idx in (0,2)").items
    assert sorted(c.metadata.name for c in in_set) == ["cm-0", "cm-2"]
    by_name = v1.list_namespaced_config_map(ns, field_selector="metadata.name=cm-1").items
    assert [c.metadata.name for c in by_name] == ["cm-1"]

    # replace (PUT) with the current resourceVersion, then a stale one is a 409 Conflict.
    got.data = {"k": "replaced"}
    replaced = v1.replace_namespaced_config_map("cm-0", ns, got)
    assert replaced.data == {"k": "replaced"}
    assert replaced.metadata.resource_version != got.metadata.resource_version
    with pytest.raises(ApiException) as conflict:
        v1.replace_namespaced_config_map("cm-0", ns, got)
    assert conflict.value.status == 409

    # JSON merge patch: null deletes a key.
    merged = v1.patch_namespaced_config_map(
        "cm-0", ns, {"data": {"extra": "1", "k": None}}, _content_type="application/merge-patch+json"
    )
    assert merged.data == {"extra": "1"}

    # Strategic merge vs merge patch on a list keyed by name (containers).
    api = apps(k8s_cluster)
    dep = make_deployment("patchme", replicas=1)
    dep["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox:1.36"})
    api.create_namespaced_deployment(ns, dep)
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.37"}]}}}}
    out = api.patch_namespaced_deployment(
        "patchme", ns, smp, _content_type="application/strategic-merge-patch+json"
    )
    images = {c.name: c.image for c in out.spec.template.spec.containers}
    assert images == {"web": NGINX, "sidecar": "busybox:1.37"}  # web kept: lists merge by name
    out = api.patch_namespaced_deployment("patchme", ns, smp, _content_type="application/merge-patch+json")
    assert [c.name for c in out.spec.template.spec.containers] == ["sidecar"]  # list replaced

    v1.delete_namespaced_config_map("cm-2", ns)
    with pytest.raises(ApiException) as gone:
        v1.read_namespaced_config_map("cm-2", ns)
    assert gone.value.status == 404


def test_crud_selectors_replace_patch_kubectl(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    kc = k8s_cluster.kubectl
    kc("-n", ns, "create", "configmap", "a", "--from-literal=k=v")
    kc("-n", ns, "create", "configmap", "b", "--from-literal=k=v")
    kc("-n", ns, "label", "configmap", "a", "tier=web")
    assert kc("-n", ns, "get", "cm", "-l", "tier=web", "-o", "name").stdout.split() == ["configmap/a"]
    assert kc("-n", ns, "get", "cm", "--field-selector", "metadata.name=b", "-o", "name").stdout.split() == [
        "configmap/b"
    ]
    obj = json.loads(kc("-n", ns, "get", "cm", "a", "-o", "json").stdout)
    obj["data"] = {"k": "replaced"}
    kc("-n", ns, "replace", "-f", "-", input=json.dumps(obj))
    assert kc("-n", ns, "get", "cm", "a", "-o", "jsonpath={.data.k}").stdout == "replaced"
    kc("-n", ns, "patch", "cm", "a", "--type", "merge", "-p", '{"data":{"m":"1"}}')
    kc("-n", ns, "create", "deployment", "d", "--image", NGINX, "--replicas", "1")
    kc(
        "-n",
        ns,
        "patch",
        "deployment",
        "d",
        "--type",
        "strategic",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"nginx","env":[{"name":"A","value":"1"}]}]}}}}',
    )
    env = kc(
        "-n", ns, "get", "deploy", "d", "-o", "jsonpath={.spec.template.spec.containers[0].env[0].value}"
    )
    assert env.stdout == "1"
    assert (
        kc("-n", ns, "get", "deploy", "d", "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout
        == NGINX
    )
    kc("-n", ns, "patch", "cm", "a", "--type", "json", "-p", '[{"op":"remove","path":"/data/m"}]')
    assert "m" not in json.loads(kc("-n", ns, "get", "cm", "a", "-o", "json").stdout)["data"]


def test_delete_with_grace_period(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    v1 = core(k8s_cluster)
    ns = k8s_namespace
    v1.create_namespaced_pod(ns, make_pod("graceful"))
    wait_pod_running(k8s_cluster, ns, "graceful")
    deleted = v1.delete_namespaced_pod("graceful", ns, grace_period_seconds=30)
    # A running pod is not removed at once: it is marked for deletion with the grace period...
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 30
    # ...and the (simulated) kubelet then confirms the containers stopped.
    wait_until(
        lambda: not v1.list_namespaced_pod(ns, field_selector="metadata.name=graceful").items,
        timeout=60,
        what="graceful pod gone",
    )

    k8s_cluster.kubectl("-n", ns, "run", "quick", "--image", NGINX)
    wait_pod_running(k8s_cluster, ns, "quick")
    k8s_cluster.kubectl("-n", ns, "delete", "pod", "quick", "--grace-period=0", "--force", "--wait=true")
    assert k8s_cluster.kubectl("-n", ns, "get", "pod", "quick", check=False).returncode != 0


# ---------------------------------------------------------------- watch


def test_watch_added_modified_deleted(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    v1 = core(k8s_cluster)
    ns = k8s_namespace
    start_rv = v1.list_namespaced_config_map(ns).metadata.resource_version
    events: list[tuple[str, str, str]] = []
    ready = threading.Event()

    def watcher() -> None:
        w = watch.Watch()
        ready.set()
        for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=start_rv, timeout_seconds=30):
            obj = ev["object"]
            events.append((ev["type"], obj.metadata.name, obj.metadata.resource_version))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    ready.wait(5)
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "w"}, "data": {"a": "1"}})
    v1.patch_namespaced_config_map("w", ns, {"data": {"a": "2"}})
    v1.delete_namespaced_config_map("w", ns)
    t.join(35)
    assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"], events
    rvs = [int(e[2]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3

    # kubectl sees the same stream.
    proc = k8s_cluster.kubectl(
        "-n",
        ns,
        "get",
        "cm",
        "--watch-only",
        "--output-watch-events",
        "-o",
        "name",
        "--request-timeout=3s",
        check=False,
    )
    assert proc.returncode in (0, 1)  # times out quietly: nothing changed


def test_watch_too_old_resource_version_is_410_then_relist(
    k8s_cluster: TestbedCluster, k8s_namespace: str
) -> None:
    v1 = core(k8s_cluster)
    ns = k8s_namespace
    for i in range(5):
        v1.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}"}})

    # etcd is compacted every minute (up.sh), so resourceVersion 1 is soon gone for good.
    def expired_410():
        try:
            for _ in watch.Watch().stream(
                v1.list_namespaced_config_map, ns, resource_version="1", timeout_seconds=2
            ):
                pass
        except ApiException as exc:
            return exc if exc.status == 410 else None
        return None

    exc = wait_until(expired_410, timeout=90, interval=3, what="410 Gone for resourceVersion 1")
    assert "too old resource version" in str(exc.reason) or "compacted" in str(exc.reason)
    raw = k8s_cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion=1&timeoutSeconds=2"
    )
    first = json.loads(raw.stdout.splitlines()[0])
    assert first["type"] == "ERROR" and first["object"]["code"] == 410
    assert first["object"]["reason"] == "Expired"
    # The standard recovery: re-list, then watch from the list's resourceVersion.
    listed = v1.list_namespaced_config_map(ns)
    assert len(listed.items) >= 5
    w = watch.Watch()
    seen = []
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "after"}})
    for ev in w.stream(
        v1.list_namespaced_config_map,
        ns,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=10,
    ):
        seen.append((ev["type"], ev["object"].metadata.name))
        w.stop()
    assert seen == [("ADDED", "after")]


# ---------------------------------------------------------------- workloads on KWOK nodes


def test_deployment_rollout_services_and_endpoints(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    api = apps(k8s_cluster)
    v1 = core(k8s_cluster)
    api.create_namespaced_deployment(ns, make_deployment("web", replicas=3))
    k8s_cluster.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=90s")
    dep = api.read_namespaced_deployment("web", ns)
    assert dep.status.available_replicas == 3 and dep.status.ready_replicas == 3
    pods = v1.list_namespaced_pod(ns, label_selector="app=web").items
    assert len(pods) == 3
    node_names = {n.metadata.name for n in v1.list_node().items}
    for pod in pods:
        assert pod.status.phase == "Running"
        assert pod.spec.node_name in node_names  # bound by the real scheduler to a kwok node
        assert pod.status.pod_ip and pod.status.container_statuses[0].ready
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pods[0].status.conditions)

    # Rolling update to a new image: a new ReplicaSet takes over.
    k8s_cluster.kubectl("-n", ns, "set", "image", "deployment/web", "web=nginx:1.28")
    k8s_cluster.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=90s")
    rs = api.list_namespaced_replica_set(ns, label_selector="app=web").items
    assert len(rs) == 2
    assert sorted(r.spec.replicas for r in rs) == [0, 3]
    wait_until(
        lambda: all(
            p.spec.containers[0].image == "nginx:1.28"
            for p in v1.list_namespaced_pod(ns, label_selector="app=web").items
        ),
        timeout=60,
        what="old pods gone",
    )

    # Service -> endpoints of the ready pods; a selector matching nothing has none.
    v1.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )
    v1.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "typo"},
            "spec": {"selector": {"app": "wbe"}, "ports": [{"port": 80}]},
        },
    )
    disc = client.DiscoveryV1Api(k8s_cluster.api_client())

    def ready_endpoints():
        slices = disc.list_namespaced_endpoint_slice(
            ns, label_selector="kubernetes.io/service-name=web"
        ).items
        eps = [e for s in slices for e in (s.endpoints or []) if e.conditions.ready]
        return eps if len(eps) == 3 else None

    eps = wait_until(ready_endpoints, timeout=60, what="3 ready endpoints")
    pod_ips = {p.status.pod_ip for p in v1.list_namespaced_pod(ns, label_selector="app=web").items}
    assert {e.addresses[0] for e in eps} == pod_ips
    typo = disc.list_namespaced_endpoint_slice(ns, label_selector="kubernetes.io/service-name=typo").items
    assert all(not s.endpoints for s in typo)
    out = k8s_cluster.kubectl(
        "-n",
        ns,
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "jsonpath={.items[*].endpoints[*].addresses[0]}",
    ).stdout.split()
    assert set(out) == pod_ips


# ---------------------------------------------------------------- logs and exec


def _cri_log(path: Path, lines: list[str], start: datetime) -> None:
    """Write lines in the CRI log format a kubelet keeps (what kwok serves)."""
    with path.open("a") as f:
        for i, line in enumerate(lines):
            ts = (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
            f.write(f"{ts} stdout F {line}\n")


def test_pod_logs_tail_since_previous_follow(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    logdir = STATE / "logs" / ns
    logdir.mkdir(parents=True, exist_ok=True)
    current, previous = logdir / "app.log", logdir / "app.previous.log"
    old = datetime.now(UTC) - timedelta(hours=1)
    _cri_log(previous, ["boot", "panic: something broke"], old)
    _cri_log(current, [f"line {i}" for i in range(1, 6)], old)  # an hour old
    _cri_log(current, ["fresh 1", "fresh 2"], datetime.now(UTC) - timedelta(seconds=2))
    custom = client.CustomObjectsApi(k8s_cluster.api_client())
    custom.create_namespaced_custom_object(
        "kwok.x-k8s.io",
        "v1alpha1",
        ns,
        "logs",
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {"name": "logger", "namespace": ns},
            "spec": {
                "logs": [
                    {
                        "containers": ["main"],
                        "logsFile": str(current),
                        "previousLogsFile": str(previous),
                        "follow": True,
                    }
                ]
            },
        },
    )
    # The Logs object exists before the pod, so nodesim leaves it pointing at our files.
    v1.create_namespaced_pod(ns, make_pod("logger"))
    wait_pod_running(k8s_cluster, ns, "logger")
    full = wait_until(
        lambda: v1.read_namespaced_pod_log("logger", ns, container="main"), timeout=30, what="pod logs"
    )
    assert full.splitlines()[0] == "line 1" and full.splitlines()[-1] == "fresh 2"
    assert v1.read_namespaced_pod_log("logger", ns, tail_lines=2).splitlines() == ["fresh 1", "fresh 2"]
    assert v1.read_namespaced_pod_log("logger", ns, since_seconds=600).splitlines() == ["fresh 1", "fresh 2"]
    assert "panic: something broke" in v1.read_namespaced_pod_log("logger", ns, previous=True)
    kc = k8s_cluster.kubectl
    assert kc("-n", ns, "logs", "logger", "--tail=1").stdout.strip() == "fresh 2"
    assert kc("-n", ns, "logs", "logger", "-p").stdout.splitlines()[-1] == "panic: something broke"
    assert "line 3" in kc("-n", ns, "logs", "logger", "--timestamps").stdout

    # follow: a line appended while streaming arrives on the open stream. The response starts
    # with the first log bytes, so the line is written from another thread.
    writer = threading.Timer(2.0, lambda: _cri_log(current, ["followed line"], datetime.now(UTC)))
    writer.start()
    resp = v1.read_namespaced_pod_log(
        "logger", ns, follow=True, tail_lines=0, _preload_content=False, _request_timeout=20
    )
    got = b""
    deadline = time.monotonic() + 15
    for chunk in resp.stream(64):
        got += chunk
        if b"followed line" in got or time.monotonic() > deadline:
            break
    resp.release_conn()
    writer.join()
    assert b"followed line" in got
    follow_cli = k8s_cluster.kubectl(
        "-n", ns, "logs", "logger", "--tail=1", "-f", "--request-timeout=3s", check=False
    )
    assert "followed line" in follow_cli.stdout


def test_a_containers_log_grows_as_its_loop_runs(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    """`sleep` in a container's command really waits: a later line reaches the log when the script
    gets there, and an endless loop keeps logging for as long as the container runs."""
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    script = 'echo boot; sleep 4; echo later; while true; do echo "tick"; sleep 1; done'
    pod = make_pod("ticker", image="busybox:1.36")
    pod["spec"]["containers"][0].update({"command": ["sh", "-c", script], "ports": []})
    v1.create_namespaced_pod(ns, pod)
    wait_pod_running(k8s_cluster, ns, "ticker")
    first = v1.read_namespaced_pod_log("ticker", ns, timestamps=True)
    booted = datetime.fromisoformat(first.split(" ", 1)[0].replace("Z", "+00:00"))
    if (datetime.now(UTC) - booted).total_seconds() < 3.5:  # read before the script got further
        assert first.split()[1:] == ["boot"], first
    wait_until(
        lambda: v1.read_namespaced_pod_log("ticker", ns).count("tick") >= 6, timeout=30, what="six ticks"
    )
    stamped = v1.read_namespaced_pod_log("ticker", ns, timestamps=True).splitlines()
    assert [line.split(" ", 1)[1] for line in stamped[:2]] == ["boot", "later"]
    times = [datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")) for line in stamped]
    assert 3.9 <= (times[1] - times[0]).total_seconds() <= 4.1
    ticks = [t for t, line in zip(times, stamped, strict=True) if line.endswith(" tick")]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ticks)]
    assert all(0.9 <= g <= 1.1 for g in gaps), gaps


def test_exec_output_and_exit_code(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    v1.create_namespaced_pod(ns, make_pod("shell"))
    wait_pod_running(k8s_cluster, ns, "shell")
    proc = k8s_cluster.kubectl(
        "-n", ns, "exec", "shell", "--", "sh", "-c", "echo hello; echo oops >&2; exit 3", check=False
    )
    assert proc.returncode == 3
    assert proc.stdout.strip() == "hello" and "oops" in proc.stderr

    resp = stream(
        v1.connect_get_namespaced_pod_exec,
        "shell",
        ns,
        command=["sh", "-c", "echo from-python; exit 7"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=20)
    assert resp.read_stdout().strip() == "from-python"
    assert resp.returncode == 7
    ok = stream(
        v1.connect_get_namespaced_pod_exec,
        "shell",
        ns,
        command=["echo", "plain"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert ok.strip() == "plain"


# ---------------------------------------------------------------- metrics, events, quota, RBAC


def test_metrics_api_nodes_and_pods(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    # Usage comes from the simulated image (images.yaml): postgres idles at 40Mi.
    pod = make_pod("busy", image="postgres:16")
    pod["spec"]["containers"][0]["env"] = [{"name": "POSTGRES_PASSWORD", "value": "x"}]
    v1.create_namespaced_pod(ns, pod)
    wait_pod_running(k8s_cluster, ns, "busy")
    custom = client.CustomObjectsApi(k8s_cluster.api_client())
    node_name = v1.read_namespaced_pod("busy", ns).spec.node_name

    def node_metrics():
        items = custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")["items"]
        return [n for n in items if n["metadata"]["name"] == node_name]

    # kwok reports a node's usage once it runs pods; the node of our pod must be there.
    nodes = wait_until(node_metrics, timeout=90, interval=2, what=f"node metrics for {node_name}")
    assert all("cpu" in n["usage"] and "memory" in n["usage"] for n in nodes)

    def pod_metric():
        items = custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", ns, "pods")["items"]
        return [i for i in items if i["metadata"]["name"] == "busy"]

    pm = wait_until(pod_metric, timeout=120, interval=2, what="pod metrics for busy")[0]
    usage = pm["containers"][0]["usage"]
    assert usage["memory"] in ("40Mi", str(40 * 1024 * 1024), f"{40 * 1024}Ki"), usage
    top = k8s_cluster.kubectl("-n", ns, "top", "pod", "busy", "--no-headers").stdout.split()
    assert top[0] == "busy" and top[2] == "40Mi", top
    assert node_name in k8s_cluster.kubectl("top", "node").stdout


def test_events_for_scheduling(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    v1.create_namespaced_pod(ns, make_pod("evented"))
    huge = make_pod("too-big")
    huge["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "64"}}
    v1.create_namespaced_pod(ns, huge)

    def reasons(name: str) -> set[str]:
        evs = v1.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
        return {e.reason for e in evs}

    wait_until(lambda: "Scheduled" in reasons("evented"), timeout=60, what="Scheduled event")
    wait_until(lambda: "FailedScheduling" in reasons("too-big"), timeout=60, what="FailedScheduling event")
    msg = next(
        e.message
        for e in v1.list_namespaced_event(
            ns, field_selector="involvedObject.name=too-big,reason=FailedScheduling"
        ).items
    )
    assert "Insufficient cpu" in msg
    # events.k8s.io/v1 serves the same events (read raw: old core events have no eventTime,
    # which the generated EventsV1Event model insists on).
    ev2 = json.loads(
        k8s_cluster.kubectl("get", "--raw", f"/apis/events.k8s.io/v1/namespaces/{ns}/events").stdout
    )
    assert any(e.get("reason") == "Scheduled" for e in ev2["items"])
    out = k8s_cluster.kubectl(
        "-n",
        ns,
        "get",
        "events",
        "--field-selector",
        "reason=FailedScheduling",
        "-o",
        "jsonpath={.items[*].involvedObject.name}",
    ).stdout
    assert "too-big" in out


def test_resource_quota_refuses_and_controller_reports(
    k8s_cluster: TestbedCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    v1.create_namespaced_resource_quota(ns, {"metadata": {"name": "small"}, "spec": {"hard": {"pods": "2"}}})
    wait_until(
        lambda: (v1.read_namespaced_resource_quota("small", ns).status.hard or {}).get("pods") == "2",
        timeout=30,
        what="quota status",
    )
    v1.create_namespaced_pod(ns, make_pod("p1"))
    v1.create_namespaced_pod(ns, make_pod("p2"))
    with pytest.raises(ApiException) as refused:
        v1.create_namespaced_pod(ns, make_pod("p3"))
    assert refused.value.status == 403 and "exceeded quota" in refused.value.body
    wait_until(
        lambda: v1.read_namespaced_resource_quota("small", ns).status.used.get("pods") == "2",
        timeout=30,
        what="quota used=2",
    )
    # A Deployment under the quota stays short, and its ReplicaSet says why.
    k8s_cluster.kubectl("-n", ns, "create", "deployment", "capped", "--image", NGINX, "--replicas", "2")

    def failed_create():
        evs = v1.list_namespaced_event(ns, field_selector="reason=FailedCreate").items
        return [e for e in evs if "exceeded quota" in e.message]

    wait_until(failed_create, timeout=60, what="FailedCreate exceeded quota event")
    proc = k8s_cluster.kubectl("-n", ns, "run", "p4", "--image", NGINX, check=False)
    assert proc.returncode != 0 and "exceeded quota" in proc.stderr


def test_rbac_limited_service_account_is_refused(
    k8s_cluster: TestbedCluster, k8s_namespace: str, tmp_path: Path
) -> None:
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    rbac = client.RbacAuthorizationV1Api(k8s_cluster.api_client())
    v1.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "reader-binding"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
    )
    token = v1.create_namespaced_service_account_token(
        "reader", ns, {"spec": {"expirationSeconds": 600}}
    ).status.token
    limited = client.CoreV1Api(k8s_cluster.token_client(token))
    wait_until(lambda: limited.list_namespaced_pod(ns) is not None, timeout=20, what="allowed list")
    for call in (
        lambda: limited.list_namespaced_secret(ns),
        lambda: limited.list_namespaced_pod("kube-system"),
        lambda: limited.create_namespaced_pod(ns, make_pod("nope")),
    ):
        with pytest.raises(ApiException) as denied:
            call()
        assert denied.value.status == 403
        message = json.loads(denied.value.body)["message"]
        assert f'User "system:serviceaccount:{ns}:reader" cannot' in message
    sa = f"system:serviceaccount:{ns}:reader"
    kc = k8s_cluster.kubectl
    assert kc("auth", "can-i", "list", "pods", "-n", ns, "--as", sa).stdout.strip() == "yes"
    assert kc("auth", "can-i", "get", "secrets", "-n", ns, "--as", sa, check=False).stdout.strip() == "no"
    # kubectl with a kubeconfig that holds only the ServiceAccount token.
    admin = yaml.safe_load(Path(k8s_cluster.kubeconfig).read_text())
    sa_config = tmp_path / "sa-kubeconfig"
    sa_config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": ns}}],
            }
        )
    )

    def as_sa(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [k8s_cluster.kubectl_path, "--kubeconfig", str(sa_config), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    denied_cli = as_sa("get", "secrets")
    assert denied_cli.returncode != 0
    assert f'User "{sa}" cannot list resource "secrets"' in denied_cli.stderr
    allowed_cli = as_sa("get", "pods")
    assert allowed_cli.returncode == 0, allowed_cli.stderr
