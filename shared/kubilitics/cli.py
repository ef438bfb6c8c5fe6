"""`kubilitics` command line: mint and revoke tokens, run the local server.

kubilitics token create --sub alice --scope read,write --type user
kubilitics token revoke --token <jwt>
kubilitics serve
"""

from __future__ import annotations

import argparse
import json
import sys

from kubilitics.auth.tokens import SCOPES, TOKEN_TYPES


def _create(args: argparse.Namespace) -> int:
    from kubilitics.container import get_container

    services = get_container()
    token, claims = services.token_codec.mint(
        sub=args.sub,
        scopes=args.scope.split(","),
        token_type=args.type,
        now=services.clock.now(),
        cluster_id=args.cluster_id,
        namespace=args.namespace,
        ttl_seconds=args.ttl_seconds,
    )
    print(json.dumps({"token": token, "claims": claims}, indent=2) if args.json else token)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from kubilitics.container import get_container

    services = get_container()
    principal = services.token_codec.decode(args.token, now=services.clock.now())
    services.revocations.revoke(principal.jti, principal.expires_at, revoked_by=args.by)
    print(f"revoked token {principal.jti} of {principal.sub} (all instances refuse it within 30 s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from kubilitics.local.server import build_parser as serve_parser

    parser = argparse.ArgumentParser(prog="kubilitics", description="Kubilitics command line")
    commands = parser.add_subparsers(dest="command", required=True)

    token = commands.add_parser("token", help="mint or revoke bearer tokens").add_subparsers(
        dest="token_command", required=True
    )
    create = token.add_parser("create", help="mint a token signed with the configured secret")
    create.add_argument("--sub", required=True, help="user or service identifier")
    create.add_argument("--scope", default="read", help=f"comma-separated, of: {', '.join(SCOPES)}")
    create.add_argument("--type", default="user", choices=list(TOKEN_TYPES))
    create.add_argument("--cluster-id", help="limit the token to this kubeconfig context")
    create.add_argument("--namespace", help="the bearer's default namespace")
    create.add_argument("--ttl-seconds", type=int, help="lifetime (default: by type: 24 h, 7 d, 90 d)")
    create.add_argument("--json", action="store_true", help="print the claims too")
    create.set_defaults(func=_create)

    revoke = token.add_parser("revoke", help="revoke a token by its jti (stored until it expires)")
    revoke.add_argument("--token", required=True, help="the token to revoke")
    revoke.add_argument("--by", default="cli", help="who revoked it (recorded)")
    revoke.set_defaults(func=_revoke)

    serve = commands.add_parser("serve", help="run the local server")
    serve_parser(serve)
    serve.set_defaults(func=lambda args: _serve(args))
    return parser


def _serve(args: argparse.Namespace) -> int:
    from kubilitics.local.server import run

    run(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    from kubilitics.errors import KubiliticsError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (KubiliticsError, ValueError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
