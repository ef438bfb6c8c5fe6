"""What the events/ payloads assume exists: the pods they name in `default` on the test cluster, no
leftover of the ConfigMap they create, the investigation record the state machine's tasks update.

Runs in the harness (the development venv): it prepares data, it is not what is tested.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from tests.lambda_runtime.stack import CREDENTIALS, REGION, LocalStack

NAMESPACE = "default"
# The pods events/ name (pods/*, websocket logs and shell, shell_session/*, ai_investigations start),
# as the node simulator runs them: web-0 prints lines and keeps running; the other one crashes.
PODS: dict[str, dict[str, Any]] = {
    "web-0": {
        "metadata": {"name": "web-0", "labels": {"app": "web", "kubilitics.lambda-test": "1"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", "echo started; echo serving; while true; do sleep 5; done"],
                }
            ]
        },
    },
    "crash-loop-pod-abc123": {
        "metadata": {"name": "crash-loop-pod-abc123", "labels": {"kubilitics.lambda-test": "1"}},
        "spec": {
            "containers": [
                {"name": "app", "image": "busybox:1.36", "command": ["sh", "-c", "echo boom; exit 1"]}
            ]
        },
    },
}
CONFIG_MAP = "app-config"  # created, updated and deleted by events/resources


@contextlib.contextmanager
def cluster_objects(kubeconfig: Path) -> Iterator[list[str]]:
    """The pods exist (made here when missing, and deleted afterwards); yields notes."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    notes, made = [], []
    with contextlib.suppress(ApiException):
        api.delete_namespaced_config_map(CONFIG_MAP, NAMESPACE)  # a leftover of an interrupted run
    for name, body in PODS.items():
        try:
            api.read_namespaced_pod(name, NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
            api.create_namespaced_pod(NAMESPACE, cast(Any, body))  # the client takes plain dicts too
            made.append(name)
    deadline = time.monotonic() + 60
    while getattr(api.read_namespaced_pod("web-0", NAMESPACE).status, "phase", None) != "Running":
        if time.monotonic() > deadline:
            notes.append("pod default/web-0 is not Running after 60 s")
            break
        time.sleep(0.5)
    try:
        yield notes
    finally:
        for name in made:
            with contextlib.suppress(ApiException):
                api.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)


def current_context(kubeconfig: Path) -> str:
    import yaml

    return str(yaml.safe_load(kubeconfig.read_text())["current-context"])


def investigation(stack: LocalStack, investigation_id: str, resource: dict[str, Any], context: str) -> None:
    """The record the start route writes before the state machine runs (the tasks update it)."""
    from kubilitics import config
    from kubilitics.adapters import aws
    from kubilitics.adapters.dynamodb import DynamoInvestigationStore

    os.environ.update(
        KUBILITICS_ENV="test",
        KUBILITICS_AWS_ENDPOINT_URL=stack.endpoint,
        AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
        AWS_REGION=REGION,
    )
    config.get_settings.cache_clear()
    aws.reset_clients()
    DynamoInvestigationStore(stack.values["StateTable"]).create(
        {
            "investigation_id": investigation_id,
            "status": "in_progress",
            "resource": resource,
            "start_time": time.time(),
            "progress_percent": 10,
            "requested_by": "alice",
            "context": context,
        }
    )
