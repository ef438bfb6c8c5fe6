"""AI investigations function: POST /api/v1/ai/investigate, GET /api/v1/ai/investigations."""

from kubilitics.lambda_handler import init_phase

with init_phase():
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import ai_investigations
    from kubilitics.lambda_handler import make_handler

    app = create_app(ai_investigations.router, title="Kubilitics AI investigations")
    handler = make_handler(app)
