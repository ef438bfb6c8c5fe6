"""Resources function: GET/POST /api/v1/resources/{kind}, PUT/DELETE /api/v1/resources/{kind}/{ns}/{name}."""

from kubilitics.lambda_handler import init_phase

with init_phase():
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import resources
    from kubilitics.lambda_handler import make_handler

    app = create_app(resources.router, title="Kubilitics resources")
    handler = make_handler(app)
