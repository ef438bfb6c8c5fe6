"""AI insights function: GET /api/v1/ai/insights, POST /api/v1/ai/insights/{id}/dismiss."""

from kubilitics.lambda_handler import init_phase

with init_phase():
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import ai_insights
    from kubilitics.lambda_handler import make_handler

    app = create_app(ai_insights.router, title="Kubilitics AI insights")
    handler = make_handler(app)
