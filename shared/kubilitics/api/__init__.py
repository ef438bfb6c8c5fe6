"""HTTP layer: FastAPI routers, dependencies, and the one map from domain errors to responses."""
