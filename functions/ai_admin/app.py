"""AI admin function: GET /api/v1/ai/status, GET/PUT /api/v1/ai/config, GET /api/v1/ai/usage."""

from kubilitics.lambda_handler import init_phase

with init_phase():
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import ai_admin
    from kubilitics.lambda_handler import make_handler

    app = create_app(ai_admin.router, title="Kubilitics AI admin")
    handler = make_handler(app)
