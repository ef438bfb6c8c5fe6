"""Cluster function: GET /api/v1/namespaces, GET /api/v1/contexts."""

from kubilitics.lambda_handler import init_phase

with init_phase():
    from kubilitics.api.app import create_app
    from kubilitics.api.routers import cluster
    from kubilitics.lambda_handler import make_handler

    app = create_app(cluster.router, title="Kubilitics cluster")
    handler = make_handler(app)
