"""The eval runner's diagnoser through the real API: `POST /api/v1/ai/investigate`, then
`GET /api/v1/ai/investigations` until the investigation is completed (`python -m tests.evals.run --api`).

Each diagnosis is a whole investigation: the local server validates the target, starts the state
machine on moto's Step Functions interpreter, whose tasks gather, analyze (rules only: the server
has no AI key unless one is configured) and complete; the answer is read back from the listing with
`include_findings=true`. Nothing here sees the scenario: only kind, namespace and name. Namespace,
Node and Cluster targets are asked for as a user would (`{"resource_kind": "Namespace",
"resource_name": ...}`, `{"resource_kind": "Cluster"}`); their items carry the roll-up's findings
(each with its subject) and `triage`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

POLL_SECONDS = 0.2
SCOPE_POLL_SECONDS = 0.5  # Namespace/Node/Cluster: their listing is not narrowed by a namespace


@dataclass(frozen=True)
class RootCause:
    category: str
    summary: str
    confidence: float


class RolledUp:
    """What the runner reads of a diagnosis, from an investigation item (or, in-process, from a
    namespace, node or cluster roll-up: the same keys)."""

    def __init__(self, item: dict[str, Any]):
        root = item.get("root_cause") or {}
        self.item = item
        self.root_cause = RootCause(
            str(root.get("category") or "error"),
            str(root.get("summary") or ""),
            float(root.get("confidence") or 0),
        )
        self.settled = bool(item.get("settled", True))

    def to_dict(self) -> dict[str, Any]:
        return self.item


ApiDiagnosis = RolledUp
UNNAMESPACED_SCOPES = ("Namespace", "Node", "Cluster")


class ApiDiagnoser:
    def __init__(self, base_url: str, token: str, context: str | None = None, timeout: float = 120):
        headers = {"Authorization": f"Bearer {token}"}
        if context:
            headers["X-Kubeconfig-Context"] = context
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=30)
        self._timeout = timeout

    def __call__(self, kind: str, namespace: str, name: str) -> tuple[None, RolledUp]:
        body: dict[str, Any] = {"resource_kind": kind, "namespace": namespace, "resource_name": name}
        unnamespaced = kind in UNNAMESPACED_SCOPES
        if unnamespaced:  # as a user asks for them: no namespace; the cluster without a name
            body = {"resource_kind": kind, **({"resource_name": name} if kind != "Cluster" else {})}
        started = self._request("POST", "/api/v1/ai/investigate", json=body)
        investigation_id = started["investigation_id"]
        deadline = time.monotonic() + self._timeout
        while True:
            if unnamespaced:
                item = self._find_unnamespaced(investigation_id)
            else:
                listed = self._request(
                    "GET",
                    "/api/v1/ai/investigations",
                    params={"namespace": namespace, "include_findings": "true", "limit": 500},
                )
                item = next((i for i in listed["items"] if i["investigation_id"] == investigation_id), None)
            if item and item["status"] == "completed":
                return None, RolledUp(item)
            if item and item["status"] == "failed":
                raise RuntimeError(f"investigation {investigation_id} failed: {item.get('error')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"investigation {investigation_id} not done after {self._timeout:.0f}s")
            time.sleep(SCOPE_POLL_SECONDS if unnamespaced else POLL_SECONDS)

    def _find_unnamespaced(self, investigation_id: str) -> dict[str, Any] | None:
        """A Namespace, Node or Cluster investigation's item. Their records have no namespace to filter
        the listing on: its status from the newest records without findings (cheap), then, once it
        is done, the newest records with findings down to it (a few)."""
        for limit in (40, 500):
            listed = self._request("GET", "/api/v1/ai/investigations", params={"limit": limit})
            ids = [i["investigation_id"] for i in listed["items"]]
            if investigation_id in ids:
                break
        else:
            return None
        item = listed["items"][ids.index(investigation_id)]
        if item["status"] != "completed":
            return dict(item)
        detailed = self._request(
            "GET",
            "/api/v1/ai/investigations",
            params={"include_findings": "true", "limit": min(500, ids.index(investigation_id) + 10)},
        )
        found = next((i for i in detailed["items"] if i["investigation_id"] == investigation_id), None)
        return dict(found) if found else None

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        for attempt in range(10):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                # A kept-alive connection the server closed as it was reused: try again (a repeated
                # POST only starts one more investigation).
                if attempt >= 3:
                    raise
                time.sleep(0.5)
                continue
            if response.status_code == 429:  # rate limits: wait as told, as a client should
                time.sleep(float(response.headers.get("retry-after", "2")))
                continue
            store_busy = response.status_code == 503 or (
                response.status_code == 500 and "database_error" in response.text
            )
            if store_busy and attempt < 6:
                # The local server's store (moto) timing out while 2 cores run everything ("try again
                # shortly"): retried with backoff as a client would; a seventh time fails the scenario.
                time.sleep(float(response.headers.get("retry-after") or min(8.0, 0.5 * 2**attempt)))
                continue
            if response.status_code >= 400:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
            result: dict[str, Any] = response.json()
            return result
        raise RuntimeError(f"{method} {path}: still rate limited")


def api_diagnoser(args: Any, stack: Any) -> ApiDiagnoser:
    """For run.py: a running server (`--api-url`, `--token`), or a local server started for the run
    (kept open by `stack`, an ExitStack the runner closes at the end)."""
    if args.api_url:
        if not args.token:
            raise SystemExit("--api-url needs --token")
        return ApiDiagnoser(args.api_url, args.token, args.context)
    from kubilitics.local.process import local_server

    server = stack.enter_context(local_server(args.kubeconfig))
    print(f"local server on {server.url} (log: {server.log})", flush=True)
    return ApiDiagnoser(server.url, server.admin_token, args.context)
