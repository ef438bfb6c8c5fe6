"""Helpers for the investigation and action tests: workloads that fail the way real ones do on the
test cluster, and calls to the AI functions' Lambda handlers with the events/ payloads."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from tests.support import LambdaContext, load_event

START = "ai_investigations/start_investigation.json"
LIST = "ai_investigations/list_investigations.json"
PENDING = "ai_actions/list_pending_actions.json"
APPROVE = "ai_actions/approve_action.json"
REJECT = "ai_actions/reject_action.json"

# The testbed's own nodes (a benchmark may add load nodes to the shared cluster; no kubelet plays
# their pods).
NODES = "nodeSelector: {topology.kubernetes.io/region: local-1}"

# A bare pod whose program panics at start (exit 1): CrashLoopBackOff.
CRASHING_POD = f"""
apiVersion: v1
kind: Pod
metadata: {{name: orders, labels: {{app: orders}}}}
spec:
  {NODES}
  containers:
    - name: orders
      image: ghcr.io/kubilitics-demo/orders:2.3.1
      resources: {{requests: {{cpu: 10m, memory: 32Mi}}, limits: {{memory: 128Mi}}}}
"""


def oom_deployment(name: str, limit: str) -> str:
    """The queue worker grows to ~700Mi a few seconds after start: OOMKilled under `limit` if smaller."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      {NODES}
      terminationGracePeriodSeconds: 1
      containers:
        - name: worker
          image: ghcr.io/kubilitics-demo/queue-worker:1.1
          resources:
            requests: {{cpu: 10m, memory: 64Mi}}
            limits: {{memory: {limit}}}
"""


def invoke(handler: Callable[..., Any], event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = handler(event, LambdaContext())
    body = response.get("body") or "null"
    return (
        response["statusCode"],
        {k.lower(): v for k, v in (response.get("headers") or {}).items()},
        json.loads(body),
    )


def start_event(token: str | None, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = body if isinstance(body, str) else json.dumps(body)
    return load_event(
        START, token=token, body=raw, headers={"content-length": str(len(raw)), **(headers or {})}
    )


def list_event(token: str | None, **query: Any) -> dict[str, Any]:
    return _with_query(load_event(LIST, token=token), query)


def pending_event(token: str | None, **query: Any) -> dict[str, Any]:
    return _with_query(load_event(PENDING, token=token), query)


def decision_event(sample: str, token: str | None, action_id: str, body: Any = None) -> dict[str, Any]:
    verb = "approve" if sample == APPROVE else "reject"
    event = load_event(sample, token=token)
    path = f"/api/v1/ai/actions/{action_id}/{verb}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = {"id": action_id}
    if body is None:
        event.pop("body", None)
        event["headers"].pop("content-type", None)
        event["headers"]["content-length"] = "0"
    else:
        raw = body if isinstance(body, str) else json.dumps(body)
        event["body"] = raw
        event["headers"]["content-length"] = str(len(raw))
    return event


def _with_query(event: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
    values = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
    event["rawQueryString"] = urlencode(values)
    if values:
        event["queryStringParameters"] = values
    else:
        event.pop("queryStringParameters", None)
    return event


def find(
    handler: Callable[..., Any], token: str, investigation_id: str, namespace: str
) -> dict[str, Any] | None:
    status, _, body = invoke(
        handler, list_event(token, namespace=namespace, include_findings=True, limit=500)
    )
    assert status == 200, body
    return next((i for i in body["items"] if i["investigation_id"] == investigation_id), None)


def wait_finished(
    handler: Callable[..., Any],
    token: str,
    investigation_id: str,
    namespace: str,
    timeout: float = 90,
    seen: list[int] | None = None,
) -> dict[str, Any]:
    """Poll GET /api/v1/ai/investigations until the investigation is completed or failed."""
    deadline = time.monotonic() + timeout
    while True:
        item = find(handler, token, investigation_id, namespace)
        assert item is not None, f"{investigation_id} is not listed"
        if seen is not None and (not seen or seen[-1] != item["progress_percent"]):
            seen.append(item["progress_percent"])
        if item["status"] in ("completed", "failed"):
            return item
        assert time.monotonic() < deadline, f"{investigation_id} still {item['status']} after {timeout}s"
        time.sleep(0.05)


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def pod_terminated_reason(cluster: Any, namespace: str, selector: str) -> str:
    out = cluster.kubectl(
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        selector,
        "-o",
        "jsonpath={.items[*].status.containerStatuses[*].lastState.terminated.reason}",
        check=False,
    ).stdout
    return str(out)


@contextmanager
def ooming_namespace(cluster: Any, prefix: str, limits: dict[str, str]) -> Iterator[str]:
    """A fresh namespace of Deployments (name -> memory limit) whose workers are OOMKilled, once they
    all have been; deleted afterwards."""
    from tests.pods_testbed import create_namespace, delete_namespace

    ns = create_namespace(cluster, prefix)
    try:
        manifests = "\n---\n".join(oom_deployment(name, limit) for name, limit in limits.items())
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifests)
        for name in limits:
            wait_for(
                lambda name=name: "OOMKilled" in pod_terminated_reason(cluster, ns, f"app={name}"),
                timeout=120,
                what=f"{name} to be OOMKilled",
            )
        yield ns
    finally:
        delete_namespace(cluster, ns)
