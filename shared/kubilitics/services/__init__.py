"""Use cases. Each gets its ports injected; none imports boto3 or the Kubernetes client."""
