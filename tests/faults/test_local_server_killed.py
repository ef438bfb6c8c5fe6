"""The local server killed (SIGKILL) in the middle of an approval, then started again.

Its tables must outlive it, so here they are not the server's own in-process moto (which dies with it)
but a moto server of the test process (`kubilitics serve --aws-endpoint-url`), the same store the
test's in-process investigation proposed the action in. The server reaches the cluster through the
harness's proxy, which holds every response 1.5 s while it approves: the kill lands either while it
reads the target (after the approval was recorded, before any change: "before") or while the API
server's answer to the change is held (the change made, nothing more recorded: "after").

After the restart the action is executed once or not at all and its audit trail says which
(`execution_interrupted`, `details.applied`); approving it again never executes it twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.integration.test_ai_actions_function import investigations, proposed  # noqa: F401
from tests.investigations_testbed import ooming_namespace

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
LIMIT = 3  # KUBILITICS_ACTION_EXECUTION_LIMIT_SECONDS of the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def oom(k8s_cluster) -> Iterator[str]:
    limits = {name: "256Mi" for name in ("killed-before", "killed-after")}
    with ooming_namespace(k8s_cluster, "killed", limits) as ns:
        yield ns


@pytest.fixture()
def shared_moto(investigations) -> Iterator[str]:  # noqa: F811
    """The test's moto (where the investigation ran) served over HTTP for the server."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def local_server(kubeconfig: str, endpoint: str, log: Path) -> Iterator[tuple[subprocess.Popen, str, str]]:
    """`kubilitics serve --aws-endpoint-url`: (process, URL, the admin token it printed)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBILITICS_", "AWS_", "MOTO_"))}
    env.update(
        PYTHONPATH=str(REPO / "shared"),
        KUBILITICS_ACTION_EXECUTION_LIMIT_SECONDS=str(LIMIT),
        KUBILITICS_INSIGHT_SCAN_INTERVAL_SECONDS="0",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    args = ["--port", str(port), "--ai-port", str(free_port()), "--kubeconfig", kubeconfig, "--no-testbed"]
    with log.open("a") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubilitics.cli", "serve", *args, "--aws-endpoint-url", endpoint],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        token = None
        deadline = time.monotonic() + 120
        while token is None or not _answers(url):
            if token is None:
                found = re.findall(r"Development admin token.*\n(\S+)\n", log.read_text())
                token = found[-1] if found else None
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield process, url, token
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def generation(k8s_cluster, ns: str, name: str) -> int:
    from kubernetes.client import AppsV1Api

    return int(AppsV1Api(k8s_cluster.api_client()).read_namespaced_deployment(name, ns).metadata.generation)


def trail(action_id: str) -> list[dict]:
    from kubilitics.container import get_container

    return get_container().actions.audit_trail(action_id)


def approve(url: str, token: str, action_id: str) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/ai/actions/{action_id}/approve",
        headers={"Authorization": f"Bearer {token}"},
        json={"require_verification": True},
        timeout=60,
    )


@pytest.mark.parametrize("point", ["before", "after"])
def test_a_local_server_killed_mid_approval_executes_once_or_not_at_all_and_says_which(
    investigations,  # noqa: F811
    shared_moto,
    proxy,
    mint,
    oom,
    k8s_cluster,
    tmp_path,
    point,
):
    name = f"killed-{point}"
    _, action = proposed(investigations, mint(sub="oncall", scopes="read,write"), oom, name)
    action_id = action["action_id"]
    before = generation(k8s_cluster, oom, name)
    log = tmp_path / "server.log"

    with local_server(proxy.kubeconfig, shared_moto, log) as (process, url, token):
        proxy.set("slow", delay=1.5)
        threading.Thread(target=lambda: _quietly(approve, url, token, action_id), daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            if point == "before" and any(r["event"] == "approved" for r in trail(action_id)):
                break
            if point == "after" and generation(k8s_cluster, oom, name) != before:
                break
            assert time.monotonic() < deadline, f"the approval never got there:\n{log.read_text()}"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    proxy.set("pass")
    applied = point == "after"
    killed_at = [r["event"] for r in trail(action_id)]
    assert "applied" not in killed_at and killed_at[0] == "approved", killed_at
    assert generation(k8s_cluster, oom, name) == before + (1 if applied else 0)

    time.sleep(LIMIT)
    with local_server(proxy.kubeconfig, shared_moto, log) as (_, url, token):
        answer = approve(url, token, action_id)
        assert answer.status_code == 409, answer.text
        details = answer.json()["details"]
        assert details["status"] == "approved"
        assert details["execution_status"] == ("succeeded" if applied else "failed"), details
        assert details["execution_message"].startswith("Applied" if applied else "Not applied")
        again = approve(url, token, action_id)
        assert (
            again.status_code == 409
            and again.json()["details"]["execution_status"] == details["execution_status"]
        )

    records = [r for r in trail(action_id) if r["event"] == "execution_interrupted"]
    assert len(records) == 1 and records[0]["details"]["applied"] is applied
    assert [r["event"] for r in trail(action_id)].count("applied") == 0
    assert generation(k8s_cluster, oom, name) == before + (1 if applied else 0)  # once, or not at all


def _quietly(call, *args) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server dies under it
        call(*args)
