"""The AI provider key in Secrets Manager (the template's AiSecret, created empty)."""

from __future__ import annotations

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


def _unavailable(exc: Exception) -> KubiliticsError:
    return KubiliticsError(
        "The AI key store (Secrets Manager) is unavailable",
        code="service_unavailable",
        details={"reason": type(exc).__name__},
    )
