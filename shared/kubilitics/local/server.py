"""The local server: every router on 127.0.0.1:8080 (AI routers also on :8081), DynamoDB from moto.

moto runs in this process as a threaded server on loopback, so the same boto3 repositories as in AWS
work unchanged and `kubilitics token revoke` can reach the local tables too.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubilitics.local.tables import REPO_ROOT

if TYPE_CHECKING:
    import uvicorn

    from kubilitics.config import Settings

log = logging.getLogger("kubilitics.local")

TESTBED_KUBECONFIG = REPO_ROOT / ".testbed" / "kubeconfig"
TESTBED_UP = REPO_ROOT / "scripts" / "testbed" / "up.sh"
TESTBED_SEED = REPO_ROOT / "scripts" / "testbed" / "seed-demo.sh"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) != 0


def start_moto(host: str, port: int) -> str:
    from moto.server import ThreadedMotoServer

    from kubilitics.local.moto_atomic import make_dynamodb_atomic

    make_dynamodb_atomic()  # concurrent requests must count rate limits exactly, as in DynamoDB

    if not _port_free(host, port):
        raise SystemExit(f"port {port} is taken; pass --moto-port with a free port")
    ThreadedMotoServer(ip_address=host, port=port, verbose=False).start()
    return f"http://{host}:{port}"


def _reachable(kubeconfig: Path, timeout: float = 2.0) -> bool:
    from kubilitics.adapters.kube_rest import KubeRestClient
    from kubilitics.adapters.kubeconfig import KubeconfigSource

    try:
        context = KubeconfigSource(path=kubeconfig).get().resolve(None)
        KubeRestClient(context).get_json("/version", timeout=timeout)
    except Exception:
        return False
    return True


def choose_kubeconfig(explicit: str | None, use_testbed: bool) -> Path | None:
    """The current kubeconfig when its cluster answers; else the bundled test cluster."""
    default = Path(
        explicit or os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
    ).expanduser()
    if default.exists() and _reachable(default):
        return default
    if not use_testbed:
        if TESTBED_KUBECONFIG.exists() and _reachable(TESTBED_KUBECONFIG):
            return TESTBED_KUBECONFIG
    elif TESTBED_UP.exists():
        if not (TESTBED_KUBECONFIG.exists() and _reachable(TESTBED_KUBECONFIG)):
            print(
                "No reachable cluster in the current kubeconfig; starting the bundled test cluster...",
                flush=True,
            )
            subprocess.run(["bash", str(TESTBED_UP)], check=True, stdin=subprocess.DEVNULL)
        # A new user should see the product work: healthy workloads and a few broken on purpose.
        subprocess.run(["bash", str(TESTBED_SEED)], check=False, stdin=subprocess.DEVNULL)
        return TESTBED_KUBECONFIG
    print("warning: no reachable Kubernetes cluster; cluster endpoints will answer 502", file=sys.stderr)
    return default if default.exists() else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def refuse_development_key_off_loopback(host: str) -> None:
    """The development key is published: a server it signs for may listen on loopback only. On any
    other address it needs KUBILITICS_JWT_SECRET (at least 32 bytes) or _ARN, or an identity provider."""
    from kubilitics.config import DEVELOPMENT_JWT_SECRET, Settings, check_jwt_secret

    if is_loopback(host):
        return
    settings = Settings.from_env()
    if settings.uses_identity_provider or settings.jwt_secret_arn:
        return
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else DEVELOPMENT_JWT_SECRET
    if secret == DEVELOPMENT_JWT_SECRET:
        raise SystemExit(
            f"refusing to listen on {host} with the development JWT key (anyone can sign tokens with it): "
            "bind to 127.0.0.1, or set KUBILITICS_JWT_SECRET (at least 32 bytes)"
        )
    try:
        check_jwt_secret(secret, "KUBILITICS_JWT_SECRET")
    except ValueError as exc:
        raise SystemExit(f"refusing to listen on {host}: {exc}") from None


def prepare(args: argparse.Namespace) -> str | None:
    """Point the settings at local moto and a cluster, create the tables, and mint a dev admin token
    (None when tokens come from an identity provider: this server cannot sign them)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["KUBILITICS_ENV"] = "development"
    refuse_development_key_off_loopback(args.host)
    external = getattr(args, "aws_endpoint_url", None)
    os.environ["KUBILITICS_AWS_ENDPOINT_URL"] = external or start_moto(args.host, args.moto_port)
    kubeconfig = choose_kubeconfig(args.kubeconfig, use_testbed=not args.no_testbed)
    if kubeconfig is not None:
        os.environ["KUBILITICS_KUBECONFIG"] = str(kubeconfig)

    from kubilitics import container
    from kubilitics.adapters.aws import client
    from kubilitics.local.tables import create_tables

    container.reset()
    services = container.get_container()
    create_tables(client("dynamodb"), services.settings)
    # Like the template's AiSecret: created empty, so the AI provider is "not configured" (rules
    # only) until an admin stores a key with PUT /api/v1/ai/config.
    os.environ["KUBILITICS_AI_SECRET_ARN"] = _ai_secret(client("secretsmanager"))
    if external:
        # Tables elsewhere outlive this server (a restart finds its actions and audit trail); the
        # state machine runs its tasks only in the process that hosts moto: investigations here
        # need KUBILITICS_STATE_MACHINE_ARN from whoever hosts it.
        container.reset()
        return _dev_token(container.get_container())
    # Investigations: the real state machine on moto's interpreter, its tasks run in this process.
    from kubilitics.local import workflows

    os.environ["MOTO_PORT"] = str(args.moto_port)  # where the interpreter's Lambda client calls
    os.environ["KUBILITICS_STATE_MACHINE_ARN"] = workflows.install(
        client("stepfunctions"),
        services.settings.region,
        {workflows.TASKS_FUNCTION: workflows.tasks_handler()},
        timeout_seconds=workflows.tasks_timeout(),  # a hung step ends as on Lambda: Sandbox.Timedout
    )
    container.reset()
    return _dev_token(container.get_container())


def _ai_secret(secretsmanager: Any) -> str:
    """The local AI secret's ARN, created empty when missing (an external endpoint may have it)."""
    try:
        return str(secretsmanager.create_secret(Name="kubilitics-local-ai-key")["ARN"])
    except secretsmanager.exceptions.ResourceExistsException:
        return str(secretsmanager.describe_secret(SecretId="kubilitics-local-ai-key")["ARN"])


def _dev_token(services: Any) -> str | None:
    if services.settings.uses_identity_provider:
        return None
    from kubilitics.auth.impersonation import DEVELOPMENT_ADMIN_GROUP

    token, _ = services.token_codec.mint(
        sub="dev-admin",
        scopes=["admin"],
        token_type="admin",
        now=services.clock.now(),
        groups=[DEVELOPMENT_ADMIN_GROUP],
    )
    return token


def token_instructions(settings: Settings, token: str | None) -> str:
    """What the start banner says about tokens: the development token, or where to get one."""
    if token is not None:
        return f"Development admin token (signed with the development key, valid 90 days):\n{token}\n"
    checks = [f"{settings.jwt_algorithm} keys from {settings.jwks_url}"]
    if settings.jwt_issuer:
        checks.append(f"issuer {settings.jwt_issuer}")
    if settings.jwt_audience:
        checks.append(f"audience {settings.jwt_audience}")
    return (
        f"Tokens come from your identity provider (verified: {', '.join(checks)}).\n"
        "Get an access token from it (log in through your app client, or its client-credentials flow)\n"
        "and send it as 'Authorization: Bearer <token>'. Scopes (read, write, delete, exec, admin) are\n"
        f"read from its '{settings.jwt_scope_claim}' claim"
        + (f" (values prefixed '{settings.jwt_scope_prefix}')" if settings.jwt_scope_prefix else "")
        + f", groups from '{settings.jwt_groups_claim}'.\n"
    )


def uvicorn_servers(args: argparse.Namespace) -> list[uvicorn.Server]:
    """The API and the AI API servers; their request lines are logged without tokens (a WebSocket
    client sends its token as `?token=`: local/access_log.py masks it in uvicorn's log)."""
    import uvicorn

    from kubilitics.api.app import create_app
    from kubilitics.api.main import ai_routers, cluster_routers
    from kubilitics.config import get_settings
    from kubilitics.local import access_log

    main_app = create_app(*cluster_routers(), *ai_routers())
    ai_app = create_app(*ai_routers(), title="Kubilitics AI API")
    # WebSocket keep-alive (reference section 8): a ping every 30 s; no pong within 30 s drops the client.
    ping = get_settings().ws_ping_interval_seconds
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app,
                host=args.host,
                port=port,
                log_level=args.log_level,
                ws_ping_interval=ping,
                ws_ping_timeout=ping,
                # Compressing each message costs both ends CPU and buys nothing on loopback, and the
                # watch fan-out is CPU-bound (bench/websocket.py).
                ws_per_message_deflate=False,
            )
        )
        for app, port in ((main_app, args.port), (ai_app, args.ai_port))
    ]
    access_log.install()
    return servers


async def serve(args: argparse.Namespace) -> None:
    await asyncio.gather(*(server.serve() for server in uvicorn_servers(args)))


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="kubilitics serve", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ai-port", type=int, default=8081)
    parser.add_argument("--moto-port", type=int, default=8085)
    parser.add_argument(
        "--aws-endpoint-url",
        help="keep the tables at this endpoint (a moto server or DynamoDB Local you run) instead of an "
        "in-process moto: they outlive the server; investigations need KUBILITICS_STATE_MACHINE_ARN",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig to use (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--no-testbed", action="store_true", help="never start the bundled test cluster")
    parser.add_argument("--log-level", default="info")
    return parser


def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto server request lines
    # uvicorn reports a WebSocket refused with an HTTP response (a bad token) as an error; it is not.
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: "without completing handshake" not in record.getMessage()
    )
    token = prepare(args)
    from kubilitics.config import get_settings
    from kubilitics.container import get_container
    from kubilitics.services.insight_schedule import InsightSchedule

    # EventBridge runs the scan in AWS; here a timer does (once at start, then every interval).
    InsightSchedule(get_container(), get_settings().insight_scan_interval_seconds).start()
    print(
        "\nKubilitics local server\n"
        f"  API:      http://{args.host}:{args.port}  (docs: http://{args.host}:{args.port}/docs)\n"
        f"  AI API:   http://{args.host}:{args.ai_port}\n"
        f"  DynamoDB: {os.environ['KUBILITICS_AWS_ENDPOINT_URL']}"
        f"{'' if getattr(args, 'aws_endpoint_url', None) else ' (moto)'}\n"
        f"  Cluster:  {os.environ.get('KUBILITICS_KUBECONFIG', 'none')}\n"
        f"\n{token_instructions(get_settings(), token)}",
        flush=True,
    )
    asyncio.run(serve(args))


def main() -> None:
    run(build_parser().parse_args())


if __name__ == "__main__":
    main()
