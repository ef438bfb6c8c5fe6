"""Pods on the test cluster with known logs, for the logs and exec tests (integration and e2e).

The node simulator starts each container from its "image" and writes the lines its command prints
as CRI log files, which kwok serves; exec runs the command in the simulated container (simexec.py).
What the simulator cannot do is print later lines by itself, so `append_log` plays the container
writing more output: it appends to the file named by the pod's kwok Logs object.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Lines the `solo` pod's container prints at start (busybox `sh -c "echo ...; while true ..."`).
SOLO_LINES = ["alpha", "Bravo ERROR", "charlie"]

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: solo}
spec:
  containers:
  - name: app
    image: busybox:1.36
    command: ["sh", "-c", "echo alpha; echo Bravo ERROR; echo charlie; while true; do sleep 5; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  containers:
  - {name: app, image: busybox:1.36, command: ["sh", "-c", "echo app one; echo app two; sleep infinity"]}
  - {name: sidecar, image: busybox:1.36, command: ["sh", "-c", "echo side one; sleep infinity"]}
---
apiVersion: v1
kind: Pod
metadata: {name: quiet}
spec:
  containers:
  - {name: app, image: busybox:1.36, command: ["sh", "-c", "sleep infinity"]}
"""

# `main` fails after a second and is restarted: its previous run's log is served with previous=true.
# (`keeper`'s 1 s readiness probe keeps the simulator looking at the pod, which restarts need.)
RESTARTER = """
apiVersion: v1
kind: Pod
metadata: {name: restarter}
spec:
  containers:
  - name: main
    image: busybox:1.36
    command: ["sh", "-c", "echo run started; echo about to fail; sleep 1; exit 3"]
  - name: keeper
    image: busybox:1.36
    command: ["sh", "-c", "sleep infinity"]
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
"""


def _testbed() -> Any:
    return sys.modules["kubilitics_testbed_cluster"]  # loaded by tests/conftest.py


def create_namespace(cluster: Any, prefix: str) -> str:
    """A namespace the testbed fixtures sweep if a run is killed before deleting it."""
    name = f"t-{prefix}-{uuid.uuid4().hex[:6]}"
    label = _testbed().NAMESPACE_LABEL
    manifest = f'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    {label}: "true"\n'
    cluster.kubectl("apply", "-f", "-", input=manifest)
    wait_until(
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        what=f"default ServiceAccount in {name}",
    )
    return name


def delete_namespace(cluster: Any, name: str) -> None:
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def wait_until(predicate: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    return _testbed().wait_until(predicate, timeout=timeout, what=what)


def pod(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout
    )
    return result


def start_pods(cluster: Any, namespace: str, manifest: str, names: Iterable[str]) -> None:
    """Apply the pods and wait until each is Running with its start lines logged."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    for name in names:
        wait_until(lambda name=name: pod(cluster, namespace, name)["status"].get("phase") == "Running",
                   what=f"pod {namespace}/{name} Running")  # fmt: skip
        wait_until(lambda name=name: log_files(cluster, namespace, name), what=f"kwok Logs of {name}")


def log_files(cluster: Any, namespace: str, name: str) -> dict[str, Path]:
    """container -> the CRI log file kwok serves for it (from the pod's kwok Logs object)."""
    proc = cluster.kubectl("get", "logs.kwok.x-k8s.io", name, "-n", namespace, "-o", "json", check=False)
    if proc.returncode != 0:
        return {}
    files: dict[str, Path] = {}
    for entry in json.loads(proc.stdout)["spec"]["logs"]:
        for container in entry["containers"]:
            files[container] = Path(entry["logsFile"])
    return files


def cri_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def append_log(
    cluster: Any, namespace: str, name: str, container: str, lines: list[tuple[datetime, str]]
) -> None:
    """The container writes these lines (CRI format, as a kubelet's runtime keeps them)."""
    path = log_files(cluster, namespace, name)[container]
    with path.open("a") as handle:
        for moment, text in lines:
            handle.write(f"{cri_time(moment)} stdout F {text}\n")
        handle.flush()


def start_restarter(cluster: Any, namespace: str) -> None:
    """The restarter pod, once its `main` container has been restarted at least once."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=RESTARTER)

    def restarted() -> bool:
        statuses = pod(cluster, namespace, "restarter")["status"].get("containerStatuses") or []
        main = next((s for s in statuses if s["name"] == "main"), {})
        return main.get("restartCount", 0) >= 1

    wait_until(restarted, timeout=90, what="restarter's main container restarted")
    time.sleep(0.5)  # the new run's lines are written when it starts
