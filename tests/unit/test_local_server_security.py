"""The local server and the development key (security review L3, L4).

L3: uvicorn logs request paths with their query strings, and a WebSocket client sends its token as
`?token=`: the server is started the way `kubilitics serve` starts it and no token reaches its log.
L4: production is the default environment; the published development key is accepted only by a
local server bound to loopback; production needs a JWT secret of at least 32 bytes.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from kubilitics import cli, container
from kubilitics.config import DEVELOPMENT_JWT_SECRET, Settings
from pydantic import ValidationError

SECRET = "SECRETVALUE"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: ctx-a
clusters:
- {name: a, cluster: {server: "https://127.0.0.1:1"}}
users:
- {name: u, user: {token: not-used}}
contexts:
- {name: ctx-a, context: {cluster: a, user: u}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture()
def uvicorn_logging() -> Iterator[None]:
    """uvicorn configures its loggers when a server is made: put them back as they were afterwards."""
    saved = {
        name: (logger.handlers[:], logger.filters[:], logger.level, logger.propagate)
        for name in UVICORN_LOGGERS
        for logger in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, filters, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.filters[:] = handlers, filters
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture()
def local_server(aws, settings_env, tmp_path: Path, uvicorn_logging) -> Iterator[tuple[int, _Lines]]:
    """The main app on uvicorn, made by the local server's own `uvicorn_servers` (as `serve` does)."""
    from kubilitics.local.server import build_parser, uvicorn_servers

    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    settings_env.setenv("KUBILITICS_KUBECONFIG", str(path))
    settings_env.setenv("KUBILITICS_KUBE_AUTHORIZATION_MODE", "service")
    container.reset()
    port = _free_port()
    args = build_parser().parse_args(["--port", str(port), "--ai-port", str(_free_port())])
    server = uvicorn_servers(args)[0]
    lines = _Lines()
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addHandler(lines)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port, lines
    finally:
        server.should_exit = True
        thread.join(10)


def test_no_token_reaches_the_local_servers_log(local_server, mint, capfd):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    port, lines = local_server
    base = f"127.0.0.1:{port}"
    # HTTP: the access log line of a request that carries a token in its query string.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{base}/api/v1/version?context=ctx-a&token={SECRET}", timeout=10)
    assert refused.value.code == 401
    # WebSocket refused (a bad token): uvicorn's handshake line.
    with pytest.raises(InvalidStatus):
        connect(f"ws://{base}/api/v1/ai/chat?token={SECRET}&x=1", open_timeout=10).close()
    # WebSocket accepted (a real token): the `[accepted]` line, the case of every working client.
    token = mint(scopes="read")
    with connect(f"ws://{base}/api/v1/ai/chat?token={token}", open_timeout=10):
        pass
    # A name the server decodes to `token` is masked too.
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://{base}/api/v1/version?%74oken={SECRET}2", timeout=10)
    time.sleep(0.2)  # the server thread logs the last lines after answering

    logged = "\n".join(lines.lines)
    out, err = capfd.readouterr()
    printed = out + err + logged
    assert "GET /api/v1/version?context=ctx-a&token=***" in logged  # the line is there, masked
    assert "WebSocket /api/v1/ai/chat?token=***&x=1" in logged
    assert "WebSocket /api/v1/ai/chat?token=***" in logged and "[accepted]" in logged
    assert SECRET not in printed
    assert token not in printed and token.split(".")[2] not in printed


def test_masking_keeps_other_parameters_and_is_linear():
    from kubilitics.local.access_log import mask_tokens

    assert mask_tokens("GET /a?watch=1&token=abc.def&b=2 HTTP/1.1") == "GET /a?watch=1&token=***&b=2 HTTP/1.1"
    assert mask_tokens('"WebSocket /api/v1/ws?Token=x"') == '"WebSocket /api/v1/ws?Token=***"'
    assert mask_tokens("/x?access_token=1&id%5Ftoken=2") == "/x?access_token=***&id%5Ftoken=***"
    assert mask_tokens("/x?tokens=1&continue=abc") == "/x?tokens=1&continue=abc"
    started = time.monotonic()
    for adversarial in ("?" * 200_000, "?a" * 100_000 + "=", "&" * 200_000, "?" + "a" * 200_000):
        mask_tokens(adversarial)
    assert time.monotonic() - started < 1.0


# ---- L4: the development key ------------------------------------------------------------------------


def test_production_is_the_default_environment(settings_env):
    settings_env.delenv("KUBILITICS_ENV")
    settings_env.delenv("KUBILITICS_JWT_SECRET")
    with pytest.raises(ValidationError, match="production needs KUBILITICS_JWT_SECRET"):
        Settings.from_env()
    assert Settings.from_env({"KUBILITICS_JWT_SECRET": "x" * 32}).env == "production"


def test_production_refuses_the_rate_limit_multiplier(settings_env):
    settings_env.setenv("KUBILITICS_RATE_LIMIT_MULTIPLIER", "100")
    assert Settings.from_env().rate_limit_multiplier == 100  # test (and development) take it
    settings_env.setenv("KUBILITICS_ENV", "production")
    settings_env.setenv("KUBILITICS_JWT_SECRET", "x" * 32)
    with pytest.raises(ValidationError, match="KUBILITICS_RATE_LIMIT_MULTIPLIER is refused in production"):
        Settings.from_env()


def test_production_needs_a_secret_of_at_least_32_bytes(settings_env):
    settings_env.setenv("KUBILITICS_ENV", "production")
    settings_env.setenv("KUBILITICS_JWT_SECRET", "x" * 31)
    with pytest.raises(ValidationError, match="31 bytes; production needs at least 32"):
        Settings.from_env()
    settings_env.setenv("KUBILITICS_JWT_SECRET", "é" * 16)  # bytes, not characters
    assert Settings.from_env().env == "production"


def test_production_refuses_a_short_secret_read_from_secrets_manager(aws, settings_env):
    from kubilitics.adapters.aws import client

    arn = client("secretsmanager").create_secret(Name="kubilitics-jwt-short", SecretString="x")["ARN"]
    settings_env.delenv("KUBILITICS_JWT_SECRET")
    settings_env.setenv("KUBILITICS_ENV", "production")
    settings_env.setenv("KUBILITICS_JWT_SECRET_ARN", arn)
    container.reset()
    with pytest.raises(ValueError, match="is 1 bytes; production needs at least 32"):
        _ = container.get_container().token_codec


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_the_development_key_is_accepted_on_loopback(settings_env, host):
    from kubilitics.local.server import refuse_development_key_off_loopback

    settings_env.setenv("KUBILITICS_ENV", "development")
    settings_env.delenv("KUBILITICS_JWT_SECRET")
    refuse_development_key_off_loopback(host)  # no SystemExit


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "my-laptop.example.com"])
def test_the_local_server_refuses_the_development_key_off_loopback(settings_env, host, monkeypatch):
    from kubilitics.local import server

    settings_env.delenv("KUBILITICS_JWT_SECRET")

    def must_not_start(*_: Any) -> str:
        raise AssertionError("moto started before the bind address was checked")

    monkeypatch.setattr(server, "start_moto", must_not_start)
    args = server.build_parser().parse_args(["--host", host])
    with pytest.raises(SystemExit, match="development JWT key"):
        server.prepare(args)
    settings_env.setenv("KUBILITICS_JWT_SECRET", DEVELOPMENT_JWT_SECRET)
    with pytest.raises(SystemExit, match="development JWT key"):
        server.prepare(args)
    settings_env.setenv("KUBILITICS_JWT_SECRET", "short")
    with pytest.raises(SystemExit, match="at least 32"):
        server.prepare(args)
    # A real secret: the address is the operator's choice.
    settings_env.setenv("KUBILITICS_JWT_SECRET", "k" * 40)
    server.refuse_development_key_off_loopback(host)


def test_cli_token_create_signs_with_the_development_key_when_nothing_is_configured(settings_env, capsys):
    settings_env.delenv("KUBILITICS_ENV")
    settings_env.delenv("KUBILITICS_JWT_SECRET")
    container.reset()
    assert cli.main(["token", "create", "--sub", "alice"]) == 0
    captured = capsys.readouterr()
    assert jwt.decode(captured.out.strip(), DEVELOPMENT_JWT_SECRET, algorithms=["HS256"])["sub"] == "alice"
    assert "development key" in captured.err
