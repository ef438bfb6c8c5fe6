"""Failures as a real node reports them, arising only from what a user's manifest says.

nodesim (scripts/testbed/nodesim.py) plays the kubelet with a simulated image registry
(scripts/testbed/images.yaml). No test here labels or annotates a pod to make it fail: the image
tag does not exist, the ConfigMap is really missing, the memory limit is below what the workload
uses, the command is not in the image, the probe hits a path the server does not serve...
Scheduler, controller and quota failures come from the real components.
"""

from __future__ import annotations

import base64
import json

from kubernetes import client
from kubilitics_testbed_cluster import TestbedCluster, wait_until  # loaded by conftest


def core(cluster: TestbedCluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


def pod(name: str, image: str, **container: object) -> dict:
    spec_extra = container.pop("pod_spec", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": image, **container}], **spec_extra},
    }


def status_of(cluster: TestbedCluster, ns: str, name: str) -> dict:
    raw = cluster.kubectl("-n", ns, "get", "pod", name, "-o", "json").stdout
    return json.loads(raw)["status"]


def container_status(cluster: TestbedCluster, ns: str, name: str) -> dict:
    st = status_of(cluster, ns, name)
    return (st.get("containerStatuses") or [{}])[0]


def waiting_reason(cluster: TestbedCluster, ns: str, name: str) -> str:
    return (container_status(cluster, ns, name).get("state", {}).get("waiting") or {}).get("reason", "")


def events_for(cluster: TestbedCluster, ns: str, name: str) -> list[dict]:
    raw = cluster.kubectl(
        "-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    return json.loads(raw.stdout)["items"]


def wait_event(
    cluster: TestbedCluster, ns: str, name: str, reason: str, text: str = "", timeout: float = 60
) -> dict:
    def find():
        for ev in events_for(cluster, ns, name):
            if ev["reason"] == reason and text in ev.get("message", ""):
                return ev
        return None

    return wait_until(find, timeout=timeout, interval=1, what=f"{reason} event on {name} containing {text!r}")


def test_crashloop_from_failing_command(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    core(k8s_cluster).create_namespaced_pod(
        ns,
        pod(
            "crasher",
            "busybox:1.36",
            command=[
                "sh",
                "-c",
                "echo starting worker; echo 'FATAL: cannot open /data/queue.db' >&2; exit 3",
            ],
        ),
    )
    wait_until(
        lambda: container_status(k8s_cluster, ns, "crasher").get("restartCount", 0) >= 2,
        timeout=90,
        interval=1,
        what="restarts grow",
    )
    wait_until(
        lambda: waiting_reason(k8s_cluster, ns, "crasher") == "CrashLoopBackOff",
        timeout=90,
        interval=1,
        what="CrashLoopBackOff",
    )
    cs = container_status(k8s_cluster, ns, "crasher")
    term = cs["lastState"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert status_of(k8s_cluster, ns, "crasher")["phase"] == "Running"
    wait_event(k8s_cluster, ns, "crasher", "BackOff", "Back-off restarting failed container app")
    prev = k8s_cluster.kubectl("-n", ns, "logs", "crasher", "--previous").stdout
    assert "FATAL: cannot open /data/queue.db" in prev and "starting worker" in prev
    listing = k8s_cluster.kubectl("-n", ns, "get", "pod", "crasher").stdout
    assert "CrashLoopBackOff" in listing or "Error" in listing


def test_app_crash_image_logs_stack_trace(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    core(k8s_cluster).create_namespaced_pod(ns, pod("orders", "ghcr.io/kubilitics-demo/orders:2.3.0"))
    wait_until(
        lambda: container_status(k8s_cluster, ns, "orders").get("lastState", {}).get("terminated"),
        timeout=90,
        interval=1,
        what="first crash",
    )
    assert container_status(k8s_cluster, ns, "orders")["lastState"]["terminated"]["exitCode"] == 1
    logs = wait_until(
        lambda: k8s_cluster.kubectl("-n", ns, "logs", "orders", "--previous", check=False).stdout,
        timeout=90,
        what="previous logs",
    )
    assert "panic: runtime error: invalid memory address" in logs


def test_oomkilled_when_limit_below_usage(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    core(k8s_cluster).create_namespaced_pod(
        ns,
        pod(
            "hog",
            "polinux/stress",
            command=["stress"],
            args=["--vm", "1", "--vm-bytes", "250M", "--vm-hang", "1"],
            resources={"requests": {"memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        ),
    )
    wait_until(
        lambda: container_status(k8s_cluster, ns, "hog").get("lastState", {}).get("terminated"),
        timeout=90,
        interval=1,
        what="OOM kill",
    )
    term = container_status(k8s_cluster, ns, "hog")["lastState"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137
    # The same workload with enough memory runs.
    core(k8s_cluster).create_namespaced_pod(
        ns,
        pod(
            "hog-ok",
            "polinux/stress",
            command=["stress"],
            args=["--vm", "1", "--vm-bytes", "250M", "--vm-hang", "1"],
            resources={"limits": {"memory": "512Mi"}},
        ),
    )
    wait_until(
        lambda: status_of(k8s_cluster, ns, "hog-ok").get("phase") == "Running", timeout=90, what="hog-ok"
    )


def test_image_pull_failures(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    v1.create_namespaced_pod(ns, pod("badtag", "nginx:1.99-typo"))
    v1.create_namespaced_pod(ns, pod("private", "registry.internal.example.com/payments/api:1.2.0"))
    v1.create_namespaced_pod(ns, pod("invalid", "Nginx:Latest"))
    # A tag no other test uses, so it cannot already be on the node.
    never_tag = f"ghcr.io/kubilitics-demo/api:never-{ns[-6:]}"
    v1.create_namespaced_pod(ns, pod("neverpull", never_tag, imagePullPolicy="Never"))

    wait_event(k8s_cluster, ns, "badtag", "Failed", "nginx:1.99-typo: not found")
    wait_until(
        lambda: waiting_reason(k8s_cluster, ns, "badtag") in ("ErrImagePull", "ImagePullBackOff"),
        timeout=90,
        what="pull error",
    )
    wait_until(
        lambda: waiting_reason(k8s_cluster, ns, "badtag") == "ImagePullBackOff",
        timeout=90,
        interval=1,
        what="ImagePullBackOff",
    )
    wait_event(k8s_cluster, ns, "badtag", "BackOff", 'Back-off pulling image "nginx:1.99-typo"')
    assert status_of(k8s_cluster, ns, "badtag")["phase"] == "Pending"

    wait_event(k8s_cluster, ns, "private", "Failed", "401 Unauthorized")
    assert waiting_reason(k8s_cluster, ns, "invalid") == "InvalidImageName" or wait_until(
        lambda: waiting_reason(k8s_cluster, ns, "invalid") == "InvalidImageName", timeout=90, what="invalid"
    )
    wait_event(k8s_cluster, ns, "invalid", "InspectFailed", "invalid reference format")
    wait_until(
        lambda: waiting_reason(k8s_cluster, ns, "neverpull") == "ErrImageNeverPull",
        timeout=90,
        what="ErrImageNeverPull",
    )

    # With a pull secret for the registry the same image pulls and runs.
    auth = base64.b64encode(b"ci:token").decode()
    cfg = {"auths": {"registry.internal.example.com": {"auth": auth}}}
    v1.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": "regcred"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(cfg).encode()).decode()},
        },
    )
    v1.create_namespaced_pod(
        ns,
        pod(
            "private-ok",
            "registry.internal.example.com/payments/api:1.2.0",
            pod_spec={"imagePullSecrets": [{"name": "regcred"}]},
        ),
    )
    wait_until(
        lambda: status_of(k8s_cluster, ns, "private-ok").get("phase") == "Running",
        timeout=90,
        what="private image with secret",
    )
    # The image is now on that node, but a pod without the secret is still refused there: the node
    # does not lend credential-pulled images (as with KubeletEnsureSecretPulledImages).
    node = v1.read_namespaced_pod("private-ok", ns).spec.node_name
    v1.create_namespaced_pod(
        ns,
        pod(
            "private-again",
            "registry.internal.example.com/payments/api:1.2.0",
            pod_spec={"nodeName": node},
        ),
    )
    wait_event(k8s_cluster, ns, "private-again", "Failed", "401 Unauthorized")


def test_missing_config_refs(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    v1.create_namespaced_pod(
        ns,
        pod(
            "needs-cm",
            "nginx:1.27",
            env=[{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "mode"}}}],
        ),
    )
    v1.create_namespaced_pod(
        ns, pod("needs-secret", "nginx:1.27", envFrom=[{"secretRef": {"name": "db-creds"}}])
    )
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "other"}, "data": {"a": "1"}})
    v1.create_namespaced_pod(
        ns,
        pod(
            "needs-key",
            "nginx:1.27",
            env=[{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "other", "key": "mode"}}}],
        ),
    )
    v1.create_namespaced_pod(
        ns,
        pod(
            "needs-volume",
            "nginx:1.27",
            volumeMounts=[{"name": "cfg", "mountPath": "/etc/app"}],
            pod_spec={"volumes": [{"name": "cfg", "configMap": {"name": "nope"}}]},
        ),
    )

    for name, text in (
        ("needs-cm", 'configmap "app-config" not found'),
        ("needs-secret", 'secret "db-creds" not found'),
        ("needs-key", f"couldn't find key mode in ConfigMap {ns}/other"),
    ):
        wait_until(
            lambda n=name: waiting_reason(k8s_cluster, ns, n) == "CreateContainerConfigError",
            timeout=90,
            what=f"{name} CreateContainerConfigError",
        )
        assert text in container_status(k8s_cluster, ns, name)["state"]["waiting"]["message"]
        wait_event(k8s_cluster, ns, name, "Failed", text)
    wait_event(k8s_cluster, ns, "needs-volume", "FailedMount", 'configmap "nope" not found')
    assert waiting_reason(k8s_cluster, ns, "needs-volume") == "ContainerCreating"

    # Creating the ConfigMap fixes the pod, as on a real node.
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "app-config"}, "data": {"mode": "prod"}})
    wait_until(
        lambda: status_of(k8s_cluster, ns, "needs-cm").get("phase") == "Running",
        timeout=90,
        what="needs-cm recovers",
    )


def test_command_not_found(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    v1.create_namespaced_pod(ns, pod("noexec", "nginx:1.27", command=["/app/start-server"]))
    v1.create_namespaced_pod(
        ns, pod("typo", "busybox:1.36", command=["sh", "-c", "echo boot; pyhton app.py"])
    )
    wait_until(
        lambda: container_status(k8s_cluster, ns, "noexec").get("lastState", {}).get("terminated"),
        timeout=90,
        what="start error",
    )
    term = container_status(k8s_cluster, ns, "noexec")["lastState"]["terminated"]
    assert term["reason"] == "StartError" and term["exitCode"] == 128
    assert "no such file or directory" in term["message"]
    wait_until(
        lambda: waiting_reason(k8s_cluster, ns, "noexec") in ("RunContainerError", "CrashLoopBackOff"),
        timeout=90,
        what="RunContainerError",
    )
    wait_until(
        lambda: container_status(k8s_cluster, ns, "typo").get("lastState", {}).get("terminated"),
        timeout=90,
        what="exit 127",
    )
    assert container_status(k8s_cluster, ns, "typo")["lastState"]["terminated"]["exitCode"] == 127
    logs = k8s_cluster.kubectl("-n", ns, "logs", "typo", "--previous", check=False).stdout
    assert "sh: pyhton: not found" in logs


def test_probe_failures(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    v1 = core(k8s_cluster)
    probe = {"httpGet": {"path": "/healthz", "port": 80}, "periodSeconds": 2, "failureThreshold": 2}
    v1.create_namespaced_pod(
        ns, pod("notready", "nginx:1.27", readinessProbe=probe, ports=[{"containerPort": 80}])
    )
    v1.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "notready"},
            "spec": {"selector": {"app": "notready"}, "ports": [{"port": 80}]},
        },
    )
    live = {"tcpSocket": {"port": 8080}, "periodSeconds": 2, "failureThreshold": 2}
    v1.create_namespaced_pod(ns, pod("notalive", "nginx:1.27", livenessProbe=live))

    wait_event(
        k8s_cluster,
        ns,
        "notready",
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 404",
    )
    st = status_of(k8s_cluster, ns, "notready")
    assert st["phase"] == "Running"
    assert [c["status"] for c in st["conditions"] if c["type"] == "Ready"] == ["False"]
    slices = json.loads(
        k8s_cluster.kubectl(
            "-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name=notready", "-o", "json"
        ).stdout
    )["items"]
    assert all(not e["conditions"]["ready"] for s in slices for e in (s.get("endpoints") or []))

    wait_event(k8s_cluster, ns, "notalive", "Unhealthy", "Liveness probe failed: dial tcp")
    wait_event(k8s_cluster, ns, "notalive", "Killing", "failed liveness probe, will be restarted")
    wait_until(
        lambda: container_status(k8s_cluster, ns, "notalive").get("restartCount", 0) >= 1,
        timeout=90,
        what="liveness restart",
    )
    assert container_status(k8s_cluster, ns, "notalive")["lastState"]["terminated"]["exitCode"] == 137


def test_job_backoff_limit_and_success(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    batch = client.BatchV1Api(k8s_cluster.api_client())
    for name, script in (("fails", "echo migrating; exit 2"), ("works", "echo done")):
        batch.create_namespaced_job(
            ns,
            {
                "metadata": {"name": name},
                "spec": {
                    "backoffLimit": 1,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {"name": "job", "image": "busybox:1.36", "command": ["sh", "-c", script]}
                            ],
                        }
                    },
                },
            },
        )

    def condition(name: str, ctype: str):
        job = batch.read_namespaced_job(name, ns)
        return [c for c in job.status.conditions or [] if c.type == ctype and c.status == "True"]

    failed = wait_until(lambda: condition("fails", "Failed"), timeout=90, interval=2, what="job Failed")
    assert failed[0].reason == "BackoffLimitExceeded"
    wait_until(lambda: condition("works", "Complete"), timeout=60, interval=2, what="job Complete")
    out = k8s_cluster.kubectl("-n", ns, "logs", "job/works").stdout
    assert out.strip() == "done"


def test_init_container_failure(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    manifest = pod("withinit", "nginx:1.27")
    manifest["spec"]["initContainers"] = [
        {"name": "wait-db", "image": "busybox:1.36", "command": ["sh", "-c", "nslookup postgres.db.svc"]}
    ]
    core(k8s_cluster).create_namespaced_pod(ns, manifest)

    def init_crash():
        st = status_of(k8s_cluster, ns, "withinit")
        ics = (st.get("initContainerStatuses") or [{}])[0]
        return ics if ics.get("lastState", {}).get("terminated") else None

    ics = wait_until(init_crash, timeout=90, interval=1, what="init container failure")
    assert ics["lastState"]["terminated"]["exitCode"] == 1
    assert status_of(k8s_cluster, ns, "withinit")["phase"] == "Pending"
    assert "Init:" in k8s_cluster.kubectl("-n", ns, "get", "pod", "withinit").stdout
    logs = k8s_cluster.kubectl(
        "-n", ns, "logs", "withinit", "-c", "wait-db", "--previous", check=False
    ).stdout
    assert "can't find postgres.db.svc" in logs


def test_healthy_workload_logs_and_usage(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    core(k8s_cluster).create_namespaced_pod(
        ns,
        pod(
            "talker",
            "busybox:1.36",
            command=["sh", "-c", "echo hello from $POD_NS; while true; do sleep 5; done"],
            env=[{"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        ),
    )
    wait_until(
        lambda: status_of(k8s_cluster, ns, "talker").get("phase") == "Running", timeout=90, what="talker"
    )
    cs = container_status(k8s_cluster, ns, "talker")
    assert cs["ready"] and cs["restartCount"] == 0 and cs["state"].get("running")
    assert k8s_cluster.kubectl("-n", ns, "logs", "talker").stdout.strip() == f"hello from {ns}"
    reasons = {e["reason"] for e in events_for(k8s_cluster, ns, "talker")}
    assert {"Scheduled", "Pulled", "Created", "Started"} <= reasons
    assert not [e for e in events_for(k8s_cluster, ns, "talker") if e["type"] == "Warning"]
