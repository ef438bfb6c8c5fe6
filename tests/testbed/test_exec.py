"""`kubectl exec` runs in the simulated container (scripts/testbed/simexec.py), never on this machine.

kwok, patched at build time, hands every exec to simexec.py, which runs the command in the
simulated shell with the container's image, environment and files, and the cluster's Services.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from kubilitics_testbed_cluster import TestbedCluster, wait_until  # loaded by conftest

MANIFESTS = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers: [{name: web, image: "nginx:1.27"}]
---
apiVersion: v1
kind: Pod
metadata: {name: box}
spec:
  containers:
  - name: box
    image: busybox:1.36
    env: [{name: MODE, value: blue}]
    command: ["sh", "-c", "echo ready > /tmp/state; sleep infinity"]
"""


def running(cluster: TestbedCluster, ns: str, *names: str) -> bool:
    pods = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-o", "json").stdout)["items"]
    phases = {p["metadata"]["name"]: p["status"].get("phase") for p in pods}
    return all(phases.get(n) == "Running" for n in names)


def test_exec_runs_in_the_simulated_container(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    k8s_cluster.kubectl("-n", ns, "apply", "-f", "-", input=MANIFESTS)
    wait_until(lambda: running(k8s_cluster, ns, "web", "box"), timeout=60, what="pods Running")

    def exec_(pod: str, *cmd: str):
        return k8s_cluster.kubectl("-n", ns, "exec", pod, "--", *cmd, check=False)

    # Nothing reaches the host: a file "written" in the container does not appear here.
    marker = Path("/tmp") / f"kubilitics-exec-{uuid.uuid4().hex}"
    assert exec_("box", "sh", "-c", f"touch {marker} && ls {marker}").stdout.strip() == str(marker)
    assert not marker.exists()
    # The container's own view: its hostname, environment and what its command wrote.
    out = exec_("box", "sh", "-c", "cat /etc/hostname; echo $MODE; cat /tmp/state").stdout.split()
    assert out == ["box", "blue", "ready"]
    # A program the image does not have fails as the runtime reports it (exit 126).
    missing = exec_("web", "nslookup", "web")
    assert missing.returncode == 126 and "executable file not found in $PATH" in missing.stderr
    # The cluster's DNS and Services.
    wait_until(
        lambda: "Welcome to nginx!" in exec_("box", "wget", "-q", "-O-", "http://web:8080/").stdout,
        timeout=30,
        what="the web Service answering from the box",
    )
    lookup = exec_("box", "nslookup", "no-such-service")
    assert lookup.returncode == 1 and "NXDOMAIN" in lookup.stdout
