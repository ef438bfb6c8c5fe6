"""Adapters: the only code that talks to boto3 and the Kubernetes API. SDK errors become domain errors."""
