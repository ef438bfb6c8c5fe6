"""AI actions function: GET /api/v1/ai/actions/pending, POST /api/v1/ai/actions/{id}/approve|reject."""

from kubilitics.lambda_handler import init_phase

with init_phase():
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import ai_actions
    from kubilitics.lambda_handler import make_handler

    app = create_app(ai_actions.router, title="Kubilitics AI actions")
    handler = make_handler(app)
