"""Wraps an ASGI app for API Gateway (HTTP API v2 and REST) with Mangum and Powertools logging."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def make_handler(app: FastAPI) -> Any:
    from aws_lambda_powertools import Logger
    from mangum import Mangum

    logger = Logger()
    asgi = Mangum(app, lifespan="off")

    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        if "x-request-id" in headers:
            logger.set_correlation_id(headers["x-request-id"])
        return asgi(event, context)

    return handler
