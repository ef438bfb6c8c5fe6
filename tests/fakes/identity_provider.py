"""A local identity provider: an RSA and an EC signing key, published as a JWKS over HTTP.

    with FakeIdentityProvider() as idp:
        idp.jwks_url                                   # http://127.0.0.1:<port>/jwks.json
        token = idp.sign({"sub": "alice", ...})        # RS256 with kid "rsa-1"
        token = idp.sign(claims, kid="ec-1")           # ES256
        idp.fetches                                    # how many times the JWKS was read

`/slow/jwks.json` answers only after `slow_seconds` (a provider that hangs).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ALGORITHM_OF_KID = {"rsa-1": "RS256", "ec-1": "ES256"}


class FakeIdentityProvider:
    def __init__(self, slow_seconds: float = 2.0):
        self.keys: dict[str, Any] = {
            "rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec-1": ec.generate_private_key(ec.SECP256R1()),
        }
        self.slow_seconds = slow_seconds
        self.fetches = 0
        jwks = {"keys": [self._public_jwk(kid, key) for kid, key in self.keys.items()]}
        self._body = json.dumps(jwks).encode()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a hanging /slow request must not hold up stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    def sign(self, claims: dict[str, Any], kid: str = "rsa-1", headers: dict[str, Any] | None = None) -> str:
        """A token signed with the key `kid` and the algorithm that key is for."""
        return jwt.encode(
            claims, self.keys[kid], algorithm=ALGORITHM_OF_KID[kid], headers={"kid": kid, **(headers or {})}
        )

    def start(self) -> FakeIdentityProvider:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeIdentityProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _public_jwk(kid: str, key: Any) -> dict[str, Any]:
        algorithm = jwt.algorithms.RSAAlgorithm if kid.startswith("rsa") else jwt.algorithms.ECAlgorithm
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        jwk.update(kid=kid, use="sig", alg=ALGORITHM_OF_KID[kid])
        return dict(jwk)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in ("/jwks.json", "/slow/jwks.json"):
                    self.send_error(404)
                    return
                if self.path.startswith("/slow/"):
                    time.sleep(idp.slow_seconds)
                idp.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(idp._body)))
                self.end_headers()
                self.wfile.write(idp._body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
