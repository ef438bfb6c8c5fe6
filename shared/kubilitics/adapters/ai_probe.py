"""AI provider status for /health and /version, without importing the anthropic SDK."""

from __future__ import annotations

from collections.abc import Callable

import urllib3

DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicProbe:
    """`not_configured` without a key (the rule-based analyzers still work); else checks the API."""

    def __init__(self, api_key: Callable[[], str | None], base_url: str | None, timeout: float):
        self._api_key = api_key
        self._base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._timeout = timeout

    @property
    def endpoint(self) -> str:
        return self._base_url

    def __call__(self) -> str:
        return self.check()[0]

    def check(self) -> tuple[str, str | None]:
        """(status, reason when not healthy): `GET /api/v1/ai/status` reports the reason."""
        api_key = self._api_key()
        if not api_key:
            return "not_configured", None
        try:
            response = urllib3.request(
                "GET",
                f"{self._base_url}/v1/models",
                headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
                timeout=urllib3.Timeout(total=self._timeout),
                retries=False,
            )
        except urllib3.exceptions.NewConnectionError:  # a subclass of the timeout error in urllib3 2
            return "unhealthy", "connection_error"
        except urllib3.exceptions.TimeoutError:
            return "unhealthy", "connection_timeout"
        except urllib3.exceptions.HTTPError:
            return "unhealthy", "connection_error"
        if response.status == 401:
            return "unhealthy", "authentication_failed"
        if response.status >= 500:
            return "unhealthy", f"http_{response.status}"
        return "healthy", None
