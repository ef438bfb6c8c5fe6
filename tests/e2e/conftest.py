"""The local server, started once per session as `kubilitics serve` in a subprocess on free ports."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalServer:
    url: str
    ai_url: str
    moto_url: str
    admin_token: str
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the `kubilitics` command line against this server's tables."""
        return subprocess.run(
            [sys.executable, "-m", "kubilitics.cli", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )


@pytest.fixture(scope="session")
def local_server(k8s_cluster, tmp_path_factory) -> Iterator[LocalServer]:
    with start_local_server(k8s_cluster, tmp_path_factory) as server:
        yield server


@contextmanager
def start_local_server(
    k8s_cluster, tmp_path_factory, extra_env: dict[str, str] | None = None
) -> Iterator[LocalServer]:
    """`kubilitics serve` on free ports; `extra_env` adds settings (e.g. a fake Messages API URL)."""
    port, ai_port, moto_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBILITICS_", "AWS_"))}
    env.update(extra_env or {})
    env["PYTHONPATH"] = str(REPO / "shared")
    log_path = tmp_path_factory.mktemp("local-server") / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "kubilitics.cli", "serve", "--port", str(port), "--ai-port", str(ai_port),
         "--moto-port", str(moto_port), "--kubeconfig", k8s_cluster.kubeconfig, "--no-testbed"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        token = _wait_for_token(log_path, process)
        _wait_for_http(f"{url}/openapi.json", process, log_path)
        _wait_for_http(f"http://127.0.0.1:{ai_port}/openapi.json", process, log_path)
        cli_env = {
            **env,
            "KUBILITICS_ENV": "development",
            "KUBILITICS_AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        yield LocalServer(
            url, f"http://127.0.0.1:{ai_port}", cli_env["KUBILITICS_AWS_ENDPOINT_URL"], token, cli_env
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait_for_token(log_path: Path, process: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text()
        match = re.search(r"Development admin token.*\n(\S+)\n", text)
        if match:
            return match.group(1)
        if process.poll() is not None:
            raise AssertionError(f"local server exited {process.returncode}:\n{text}")
        time.sleep(0.2)
    raise AssertionError(f"no token printed within {timeout}s:\n{log_path.read_text()}")


def _wait_for_http(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"local server exited {process.returncode}:\n{log_path.read_text()}")
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s:\n{log_path.read_text()}")
