"""`kubilitics` command line: mint and revoke tokens, run the local server.

kubilitics token create --sub alice --scope read,write --type user --group team-a
kubilitics token revoke --token <jwt>
kubilitics token revoke --sub alice [--before 2026-12-01T00:00:00Z]
kubilitics serve
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

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
        groups=args.group,
    )
    print(json.dumps({"token": token, "claims": claims}, indent=2) if args.json else token)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from kubilitics.container import get_container

    services = get_container()
    if args.sub:
        # Default: now, rounded up, so that no token issued in this very second survives.
        before = _unix_time(args.before) if args.before else int(services.clock.now()) + 1
        services.revocations.revoke_subject(args.sub, before, revoked_by=args.by)
        print(f"revoked every token of {args.sub} issued before {before} (all instances within 30 s)")
        return 0
    if args.before:
        raise ValueError("--before goes with --sub")
    principal = services.token_codec.decode(args.token, now=services.clock.now())
    services.revocations.revoke(principal.jti, principal.expires_at, revoked_by=args.by)
    print(f"revoked token {principal.jti} of {principal.sub} (all instances refuse it within 30 s)")
    return 0


def _unix_time(value: str) -> int:
    """Unix seconds, or an ISO 8601 time (UTC unless it names its offset)."""
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--before {value!r}: give Unix seconds or an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


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
    create.add_argument(
        "--group", action="append", default=[], help="a group of the bearer (repeatable; the `groups` claim)"
    )
    create.add_argument("--ttl-seconds", type=int, help="lifetime (default: by type: 24 h, 7 d, 90 d)")
    create.add_argument("--json", action="store_true", help="print the claims too")
    create.set_defaults(func=_create)

    revoke = token.add_parser(
        "revoke", help="revoke one token (by its jti), or every token of a subject issued before a time"
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--token", help="the token to revoke")
    which.add_argument("--sub", help="revoke every token of this subject issued before --before")
    revoke.add_argument("--before", help="with --sub: Unix seconds or ISO 8601 time (default: now)")
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
    if args.command == "token" and "KUBILITICS_ENV" not in os.environ:
        # A developer's tool first: it signs with the development key, which only `kubilitics serve`
        # accepts (on loopback). A deployment's tokens: KUBILITICS_ENV=production and its secret.
        os.environ["KUBILITICS_ENV"] = "development"
        secret_given = "KUBILITICS_JWT_SECRET" in os.environ or "KUBILITICS_JWT_SECRET_ARN" in os.environ
        if args.token_command == "create" and not secret_given:
            print("note: signed with the development key (only a local server accepts it)", file=sys.stderr)
    try:
        return int(args.func(args))
    except (KubiliticsError, ValueError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
