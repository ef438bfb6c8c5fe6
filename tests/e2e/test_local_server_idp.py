"""`kubilitics serve` with an identity provider configured: it starts, says where tokens come from
(printing none), accepts the provider's tokens and honours a subject revocation from the CLI.
Needs no cluster: the routes used answer without one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import jwt

from tests.e2e.conftest import REPO, _wait_for_http, free_port
from tests.fakes.identity_provider import FakeIdentityProvider

ISSUER = "https://dex.example.com"


def test_local_server_runs_with_tokens_from_an_identity_provider(tmp_path):
    port, ai_port, moto_port = free_port(), free_port(), free_port()
    with FakeIdentityProvider() as idp:
        settings = {
            "KUBILITICS_JWT_ALGORITHM": "RS256,ES256",
            "KUBILITICS_JWKS_URL": idp.jwks_url,
            "KUBILITICS_JWT_ISSUER": ISSUER,
            "KUBILITICS_JWT_AUDIENCE": "kubilitics",
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBILITICS_", "AWS_", "KUBECONFIG"))}
        env.update(settings, PYTHONPATH=str(REPO / "shared"))
        env["KUBILITICS_INSIGHT_SCAN_INTERVAL_SECONDS"] = "0"
        env["KUBILITICS_REVOCATION_CACHE_SECONDS"] = "0"  # see a revocation at once
        log_path = tmp_path / "server.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "kubilitics.cli", "serve", "--port", str(port),
                 "--ai-port", str(ai_port), "--moto-port", str(moto_port),
                 "--kubeconfig", str(tmp_path / "none"), "--no-testbed"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO,
            )  # fmt: skip
            try:
                _wait_for_http(f"http://127.0.0.1:{port}/openapi.json", process, log_path)
                banner = log_path.read_text()
                assert (
                    f"Tokens come from your identity provider (verified: RS256,ES256 keys from {idp.jwks_url}"
                    in banner
                )
                assert "Development admin token" not in banner

                now = int(time.time())

                def token(sub: str, issued_at: int, kid: str) -> str:
                    claims = {
                        "iss": ISSUER,
                        "aud": "kubilitics",
                        "sub": sub,
                        "iat": issued_at,
                        "exp": now + 600,
                    }
                    return idp.sign({**claims, "groups": ["devs"], "scope": "openid read"}, kid=kid)

                def status(bearer: str) -> tuple[int, str | None]:
                    response = httpx.get(
                        f"http://127.0.0.1:{port}/api/v1/ai/status",
                        headers={"Authorization": f"Bearer {bearer}"},
                        timeout=30,
                    )
                    return response.status_code, response.json().get("error")

                older, newer = token("alice", now - 120, "ec-1"), token("alice", now - 10, "rsa-1")
                assert status(older) == (200, None)
                assert status(newer) == (200, None)
                dev_key_token = jwt.encode(
                    {"sub": "mallory", "iat": now, "exp": now + 60, "jti": "j", "scope": "admin"},
                    "kubilitics-development-secret-do-not-use-in-production",
                )
                assert status(dev_key_token) == (401, "unauthorized")

                cli_env = {
                    **env,
                    "KUBILITICS_ENV": "development",
                    "KUBILITICS_AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
                    "AWS_ACCESS_KEY_ID": "local",
                    "AWS_SECRET_ACCESS_KEY": "local",
                    "AWS_DEFAULT_REGION": "us-east-1",
                }
                revoke = subprocess.run(
                    [sys.executable, "-m", "kubilitics.cli", "token", "revoke", "--sub", "alice",
                     "--before", str(now - 60)],
                    capture_output=True, text=True, env=cli_env, timeout=60,
                )  # fmt: skip
                assert revoke.returncode == 0, revoke.stderr
                assert status(older) == (401, "token_revoked")
                assert status(newer) == (200, None)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
