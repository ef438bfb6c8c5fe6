"""What the benchmarks that call a function's Lambda handler in process share (resources, topology).

Raw JSON calls to the cluster under load, a moto server in its own process, environment variables set
for a while, the handler with an admin token, and the Lambda context it is called with.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class Cluster:
    """Raw JSON calls with the product's REST client (outside the product's paths)."""

    def __init__(self, kubeconfig: Path, context: str | None = None, *, timeout: float):
        from kubilitics.adapters.kube_rest import KubeRestClient
        from kubilitics.adapters.kubeconfig import KubeconfigSource

        self.context = KubeconfigSource(path=kubeconfig).get().resolve(context)
        self.client = KubeRestClient(self.context)
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        return self.client.json(method, path, timeout=self.timeout, body=data, **kwargs)

    def create(self, path: str, body: dict[str, Any]) -> None:
        """POST `body` to `path`; an object that already exists is left as it is."""
        from kubilitics.errors import KubiliticsError

        try:
            self.call("POST", path, body)
        except KubiliticsError as exc:
            if exc.code != "already_exists":
                raise


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def dynamodb_process() -> Iterator[str]:
    """moto in its own process, so that its request handling does not share the function's GIL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("moto server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def handler_and_token(function: str) -> tuple[Callable[[dict[str, Any], Any], dict[str, Any]], str]:
    """`functions/<function>/app.py`'s handler, imported in this process, and an admin token for it.

    The settings are read afresh from the environment; the tables are created on its DynamoDB unless
    they exist already (a shared moto server).
    """
    import importlib

    from kubilitics import container
    from kubilitics.adapters.aws import client
    from kubilitics.local.tables import create_tables

    container.reset()
    services = container.get_container()
    with contextlib.suppress(Exception):  # tables exist when the moto server is shared
        create_tables(client("dynamodb"), services.settings)
    from kubilitics.auth.impersonation import DEVELOPMENT_ADMIN_GROUP

    token, _ = services.token_codec.mint(
        sub="bench", scopes=["admin"], token_type="admin", now=time.time(), groups=[DEVELOPMENT_ADMIN_GROUP]
    )
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    handler = importlib.import_module(f"functions.{function}.app").handler
    return handler, token


class LambdaContext:
    function_name = "kubilitics-bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:kubilitics-bench"
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/kubilitics-bench"
    log_stream_name = "bench"

    def __init__(self, memory_limit_in_mb: int):
        self.memory_limit_in_mb = memory_limit_in_mb

    def get_remaining_time_in_millis(self) -> int:
        return 29_000
