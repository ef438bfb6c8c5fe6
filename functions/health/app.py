"""Health function: GET /health, GET /api/v1/version."""

from kubilitics.lambda_handler import init_phase

with init_phase():
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import system
    from kubilitics.lambda_handler import make_handler

    app = create_app(system.router, title="Kubilitics health")
    handler = make_handler(app)
