"""The local server as a child process on free ports: for the eval runner and the benchmarks, which
drive the real API over HTTP (tests/e2e/conftest.py does the same as a pytest fixture)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubilitics.local.tables import REPO_ROOT


@dataclass(frozen=True)
class RunningServer:
    url: str
    ai_url: str
    moto_url: str
    admin_token: str
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_server(
    kubeconfig: str | Path, env: dict[str, str] | None = None, timeout: float = 180
) -> Iterator[RunningServer]:
    """`kubilitics serve` against `kubeconfig` (never starting the bundled cluster); `env` adds
    settings (e.g. KUBILITICS_ANTHROPIC_BASE_URL). Stopped on exit."""
    import httpx

    port, ai_port, moto_port = free_port(), free_port(), free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBILITICS_", "AWS_", "MOTO_"))}
    child_env["PYTHONPATH"] = str(REPO_ROOT / "shared")
    child_env.update(env or {})
    log_path = Path(tempfile.mkdtemp(prefix="kubilitics-server-")) / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubilitics.cli",
                "serve",
                "--port",
                str(port),
                "--ai-port",
                str(ai_port),
                "--moto-port",
                str(moto_port),
                "--kubeconfig",
                str(kubeconfig),
                "--no-testbed",
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            cwd=REPO_ROOT,
        )
        try:
            deadline = time.monotonic() + timeout
            token = None
            while token is None:
                match = re.search(r"Development admin token.*\n(\S+)\n", log_path.read_text())
                token = match.group(1) if match else None
                if process.poll() is not None:
                    raise RuntimeError(
                        f"the local server exited {process.returncode}:\n{log_path.read_text()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the local server did not start:\n{log_path.read_text()}")
                time.sleep(0.2)
            url, ai_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ai_port}"
            for base in (url, ai_url):
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{base} did not answer:\n{log_path.read_text()}")
                    time.sleep(0.2)
            yield RunningServer(url, ai_url, f"http://127.0.0.1:{moto_port}", token, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
