"""Lambda entry points: the init phase of a function module, and the HTTP handler (Mangum+Powertools)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI


@contextmanager
def init_phase() -> Iterator[None]:
    """Wraps a function module's imports: no garbage collection while they run.

    What a cold start creates lives as long as the process, so collecting it while importing is
    wasted work (about a tenth of a cold start). At the end those objects are frozen, out of the
    collector's sight for good, and collection resumes for what the requests create.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def make_handler(app: FastAPI) -> Any:
    """Wraps an ASGI app for API Gateway (HTTP API v2 and REST)."""
    from aws_lambda_powertools import Logger
    from mangum import Mangum

    from kubilitics.api.blocking import inline_blocking_calls

    logger = Logger()
    asgi = Mangum(app, lifespan="off")

    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        if "x-request-id" in headers:
            logger.set_correlation_id(headers["x-request-id"])
        with inline_blocking_calls():  # one request at a time: no thread hops (api/blocking.py)
            return asgi(event, context)

    return handler
