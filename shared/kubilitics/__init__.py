"""Kubilitics Serverless: a Kubernetes management API with an AI troubleshooting layer."""

__version__ = "1.0.0"
API_VERSION = "1.0.0"
