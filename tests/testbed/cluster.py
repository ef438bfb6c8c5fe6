"""Pytest fixtures for the Kubernetes testbed (a real API server with KWOK nodes).

``k8s_cluster`` (session scope) starts the cluster with ``scripts/testbed/up.sh`` or reuses a
running one, and yields a :class:`TestbedCluster` with the kubeconfig path and context name.
``k8s_namespace`` (function scope) creates a fresh namespace and deletes it after the test.

Environment:
  KUBILITICS_TESTBED=skip        skip every test that needs the cluster instead of starting it
  KUBILITICS_TESTBED_TEARDOWN=1  stop the cluster at the end of the session if this session
                                 started it (default: leave it running for the next run)

Use from other test folders by adding ``pytest_plugins = ["tests.testbed.cluster"]`` to the
root conftest, or import the fixtures in a conftest.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "testbed"
STATE = Path(os.environ.get("KUBILITICS_TESTBED_STATE", REPO / ".testbed"))
CACHE = Path(os.environ.get("KUBILITICS_TESTBED_CACHE", Path.home() / ".cache" / "kubilitics-testbed"))
CONTEXT = os.environ.get("KUBILITICS_TESTBED_CLUSTER", "kubilitics-testbed")

# Label put on namespaces made by k8s_namespace, so leftovers of killed runs can be found.
NAMESPACE_LABEL = "kubilitics.testbed/ephemeral"


@dataclass
class TestbedCluster:
    """A running testbed cluster: where its kubeconfig is and how to talk to it."""

    kubeconfig: str
    context: str
    kubectl_path: str = field(default_factory=lambda: str(CACHE / "bin" / "kubectl"))
    started_here: bool = False

    __test__ = False  # not a test class, despite the name

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the testbed; returns the completed process (text mode)."""
        cmd = [self.kubectl_path, "--kubeconfig", self.kubeconfig, "--context", self.context, *args]
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient for the admin user of the testbed."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig, context=self.context)

    def server(self) -> str:
        """The API server URL (https://127.0.0.1:<port>)."""
        return self.api_client().configuration.host

    def token_client(self, token: str) -> Any:
        """An ApiClient that authenticates with a bearer token (e.g. a ServiceAccount's)."""
        from kubernetes import client

        admin = self.api_client().configuration
        conf = client.Configuration()
        conf.host = admin.host
        conf.ssl_ca_cert = admin.ssl_ca_cert
        conf.verify_ssl = admin.verify_ssl
        conf.api_key = {"authorization": token}
        conf.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(conf)


def wait_until(
    predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.5, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: {last_error}")


def _answers(cluster: TestbedCluster) -> bool:
    if not (Path(cluster.kubeconfig).is_file() and Path(cluster.kubectl_path).is_file()):
        return False
    proc = cluster.kubectl("get", "--raw", "/readyz", "--request-timeout=5s", check=False, timeout=20)
    return proc.returncode == 0 and proc.stdout.strip() == "ok"


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[TestbedCluster]:
    """Start the testbed (or reuse the running one) for the whole test session."""
    if os.environ.get("KUBILITICS_TESTBED", "").lower() == "skip":
        pytest.skip("KUBILITICS_TESTBED=skip: testbed cluster disabled")
    cluster = TestbedCluster(kubeconfig=str(STATE / "kubeconfig"), context=CONTEXT)
    was_running = _answers(cluster)
    # Always run up.sh: on a running cluster it only checks it answers and that nodesim runs.
    proc = subprocess.run(
        ["bash", str(SCRIPTS / "up.sh")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=int(os.environ.get("KUBILITICS_TESTBED_UP_TIMEOUT", "5400")),
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/testbed/up.sh failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}",
            pytrace=False,
        )
    cluster.started_here = not was_running
    _delete_stale_namespaces(cluster)
    yield cluster
    if cluster.started_here and os.environ.get("KUBILITICS_TESTBED_TEARDOWN") == "1":
        subprocess.run(["bash", str(SCRIPTS / "down.sh")], stdin=subprocess.DEVNULL, check=False)


def _delete_stale_namespaces(cluster: TestbedCluster, max_age_s: float = 3600) -> None:
    """Delete test namespaces left by killed sessions. Only old ones: other pytest sessions may
    share the cluster right now and their namespaces must survive."""
    proc = cluster.kubectl("get", "namespace", "-l", NAMESPACE_LABEL, "-o", "json", check=False)
    if proc.returncode != 0:
        return
    now = datetime.now(UTC)
    for item in json.loads(proc.stdout).get("items", []):
        created = datetime.fromisoformat(item["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        if (now - created).total_seconds() > max_age_s:
            cluster.kubectl("delete", "namespace", item["metadata"]["name"], "--wait=false", check=False)


def _namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", nodeid.split("::")[-1].lower()).strip("-")[:40].strip("-")
    return f"t-{base or 'test'}-{uuid.uuid4().hex[:6]}"


@pytest.fixture()
def k8s_namespace(k8s_cluster: TestbedCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) when the test ends."""
    name = _namespace_name(request.node.nodeid)
    manifest = (
        "apiVersion: v1\nkind: Namespace\nmetadata:\n"
        f'  name: {name}\n  labels:\n    {NAMESPACE_LABEL}: "true"\n'
    )
    k8s_cluster.kubectl("apply", "-f", "-", input=manifest)
    # Pods need the namespace's default ServiceAccount (made by the controller manager).
    wait_until(
        lambda: k8s_cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        what=f"default ServiceAccount in {name}",
    )
    yield name
    k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
