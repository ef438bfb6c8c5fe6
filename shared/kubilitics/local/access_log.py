"""No token in the local server's log: uvicorn writes request lines with their query strings.

A WebSocket client passes its bearer token as `?token=` (browsers cannot set headers on a WebSocket),
and uvicorn logs the path with its query string twice over: the access log (`uvicorn.access`, HTTP
requests) and the handshake lines (`uvicorn.error`: `"WebSocket /api/v1/ws?token=..." [accepted]`).
The filter masks the value of every query parameter named like a token before any handler sees the
record, so the line stays useful (who, which path, what status) and the credential is gone.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

MASK = "***"
# The loggers through which uvicorn reports request paths (on every protocol implementation).
UVICORN_LOGGERS = ("uvicorn.access", "uvicorn.error")
# A query parameter: after ? or &, a name, =, a value. Linear: a name stops at the next "?", "&",
# "=", whitespace or quote, so the names tried from successive starts never overlap.
_PARAMETER = re.compile(r"""([?&])([^=&?\s"']*)=([^&\s"'#]*)""")
_SECRET_NAMES = frozenset({"token", "access_token", "id_token", "auth", "authorization", "jwt"})


def mask_tokens(text: str) -> str:
    """`text` with the values of token-like query parameters replaced by ***. A name is compared
    decoded (`%74oken` is `token` to the server), so an encoded name does not slip through."""
    if "=" not in text:
        return text

    def masked(match: re.Match[str]) -> str:
        name = unquote_plus(match.group(2)).strip().lower()
        if name in _SECRET_NAMES:
            return f"{match.group(1)}{match.group(2)}={MASK}"
        return match.group(0)

    return _PARAMETER.sub(masked, text)


class TokenQueryFilter(logging.Filter):
    """Masks token query parameters in a record's message and arguments (kept as arguments: uvicorn's
    access formatter unpacks them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _masked(value) for key, value in record.args.items()}
        return True


def _masked(value: Any) -> Any:
    return mask_tokens(value) if isinstance(value, str) else value


def install() -> None:
    """Add the filter to uvicorn's loggers (once; uvicorn's logging configuration keeps it)."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenQueryFilter) for f in logger.filters):
            logger.addFilter(TokenQueryFilter())
