"""Pods function: GET /api/v1/pods/{namespace}/{name}/logs, POST /api/v1/pods/{namespace}/{name}/exec.

Mangum buffers whole responses, so here `follow=true` returns the log as it is (no SSE stream).
"""

from kubilitics.lambda_handler import init_phase

with init_phase():
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import pods
    from kubilitics.lambda_handler import make_handler

    app = create_app(pods.router, title="Kubilitics pods")
    handler = make_handler(app)
