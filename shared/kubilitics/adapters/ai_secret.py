"""The AI provider key in Secrets Manager (the template's AiSecret, created empty)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from kubilitics.adapters.aws import client
from kubilitics.errors import KubiliticsError

# Secrets Manager refuses an empty SecretString; a blank value means "no key" (see container).
CLEARED = " "


class SecretsManagerValue:
    def __init__(self, arn: str):
        self._arn = arn

    def get(self) -> str | None:
        try:
            value = client("secretsmanager").get_secret_value(SecretId=self._arn)["SecretString"]
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None  # created empty: nothing stored yet
            raise _unavailable(exc) from exc
        return str(value).strip() or None

    def put(self, value: str) -> None:
        try:
            client("secretsmanager").put_secret_value(SecretId=self._arn, SecretString=value or CLEARED)
        except Exception as exc:
            raise _unavailable(exc) from exc


class CachedKey:
    """The AI key as an instance sees it: read from its store at most once per `max_age` seconds (the
    key is needed by every chat turn and investigation step, and by /health). A key stored through this
    instance applies here at once; other instances see it within `max_age`."""

    def __init__(self, store: SecretsManagerValue, clock: Callable[[], float], max_age: float):
        self._store = store
        self._clock = clock
        self._max_age = max_age
        self._cached: tuple[float, str | None] | None = None  # (read at, value)
        self._lock = threading.Lock()

    def get(self) -> str | None:
        with self._lock:
            cached = self._cached
        if cached is not None and self._clock() - cached[0] < self._max_age:
            return cached[1]
        value = self._store.get()  # an unreadable store raises, and nothing is cached
        with self._lock:
            self._cached = (self._clock(), value)
        return value

    def put(self, value: str) -> None:
        self._store.put(value)
        with self._lock:
            self._cached = (self._clock(), value.strip() or None)


def _unavailable(exc: Exception) -> KubiliticsError:
    # The service's own error code when there is one (AccessDeniedException: a role without the grant).
    reason = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
    return KubiliticsError(
        "The AI key store (Secrets Manager) is unavailable",
        code="service_unavailable",
        details={"reason": reason},
    )
