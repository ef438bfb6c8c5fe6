"""Observability function: GET /api/v1/events, /api/v1/metrics/{nodes,pods}, /api/v1/topology."""

from kubilitics.lambda_handler import init_phase

with init_phase():
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import observability
    from kubilitics.lambda_handler import make_handler

    app = create_app(observability.router, title="Kubilitics observability")
    handler = make_handler(app)
