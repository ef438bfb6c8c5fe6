"""AI investigations end to end (issue 6, "Benchmark"): POST /api/v1/ai/investigate to completed.

Starts the local server (`kubilitics serve`, moto's Step Functions interpreter running the real state
machine, tasks in the server process) against the test cluster, puts troubled workloads in a
namespace of its own, then:

- rules only (no AI key): `--runs` investigations one after the other, each timed from the POST to
  the first GET /api/v1/ai/investigations that shows it completed (polled every 20 ms); prints the
  median and p95 (target: median <= 3 s);
- the LLM path: an AI key is stored (PUT /api/v1/ai/config) and the server talks to the fake Messages
  API (tests/fakes/messages_api.py), scripted to call one read-only tool and answer; for each target
  it prints what one investigation sends: characters (system, messages and tools of every request)
  and input tokens as the fake server counts and reports them (1 token per 4 characters), the size
  of the first request (system prompt, tools, task and the compacted evidence), and the size of the
  evidence gathered as JSON, i.e. what would be sent without compaction.

Prints figures only: nothing here fails on a slow time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TESTBED_KUBECONFIG = REPO / ".testbed" / "kubeconfig"
KUBECTL = Path.home() / ".cache" / "kubilitics-testbed" / "bin" / "kubectl"
TARGET_MEDIAN_SECONDS = 3.0
NODES = "nodeSelector: {topology.kubernetes.io/region: local-1}"  # the testbed's own nodes

WORKLOADS = f"""
apiVersion: v1
kind: Pod
metadata: {{name: orders, labels: {{app: orders}}}}
spec:
  {NODES}
  containers:
    - {{name: orders, image: "ghcr.io/kubilitics-demo/orders:2.3.1"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: worker}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: worker}}}}
  template:
    metadata: {{labels: {{app: worker}}}}
    spec:
      {NODES}
      containers:
        - name: worker
          image: ghcr.io/kubilitics-demo/queue-worker:1.1
          resources: {{requests: {{cpu: 10m, memory: 64Mi}}, limits: {{memory: 256Mi}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 5
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      {NODES}
      containers: [{{name: web, image: "nginx:1.27", ports: [{{containerPort: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 80}}]
"""
TARGETS = [("Pod", "orders"), ("Deployment", "worker"), ("Deployment", "web")]


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    binary = str(KUBECTL) if KUBECTL.exists() else "kubectl"
    proc = subprocess.run(
        [binary, "--kubeconfig", str(kubeconfig), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])}: {proc.stderr.strip()}")
    return proc.stdout


def prepare(kubeconfig: Path) -> str:
    namespace = f"bench-investigations-{uuid.uuid4().hex[:5]}"
    kubectl(kubeconfig, "create", "namespace", namespace)
    deadline = time.monotonic() + 60
    while not kubectl(kubeconfig, "get", "sa", "-n", namespace, "-o", "name").strip():
        if time.monotonic() > deadline:
            raise RuntimeError("no default ServiceAccount")
        time.sleep(0.5)
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=WORKLOADS)
    # Wait until the failures show, so every run investigates the same picture.
    deadline = time.monotonic() + 180
    while True:
        reasons = kubectl(
            kubeconfig,
            "get",
            "pods",
            "-n",
            namespace,
            "-o",
            "jsonpath={.items[*].status.containerStatuses[*].lastState.terminated.reason}",
        )
        if "OOMKilled" in reasons and "Error" in reasons:
            return namespace
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workloads did not fail as expected: {reasons!r}")
        time.sleep(1)


class Api:
    def __init__(self, base: str, token: str):
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def investigate(self, namespace: str, kind: str, name: str) -> tuple[float, dict[str, Any]]:
        """(seconds from the POST to the first listing that shows it completed, the item)"""
        started = time.perf_counter()
        response = self.http.post(
            "/api/v1/ai/investigate",
            json={"resource_kind": kind, "namespace": namespace, "resource_name": name},
        )
        response.raise_for_status()
        investigation_id = response.json()["investigation_id"]
        while True:
            listed = self.http.get(
                "/api/v1/ai/investigations", params={"namespace": namespace, "include_findings": "true"}
            )
            listed.raise_for_status()
            item = next(i for i in listed.json()["items"] if i["investigation_id"] == investigation_id)
            if item["status"] in ("completed", "failed"):
                return time.perf_counter() - started, item
            time.sleep(0.02)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def rules_only(api: Api, namespace: str, runs: int) -> None:
    times: list[float] = []
    categories: dict[str, str] = {}
    for i in range(runs):
        kind, name = TARGETS[i % len(TARGETS)]
        seconds, item = api.investigate(namespace, kind, name)
        times.append(seconds)
        categories[f"{kind}/{name}"] = (
            item["root_cause"]["category"] if item["status"] == "completed" else "failed"
        )
    median = statistics.median(times)
    verdict = "within" if median <= TARGET_MEDIAN_SECONDS else "OVER"
    print(f"rules only, POST -> completed over {runs} investigations:")
    print(
        f"  median {median:.2f} s ({verdict} the {TARGET_MEDIAN_SECONDS:g} s target), "
        f"p95 {percentile(times, 95):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s"
    )
    print(f"  diagnoses: {', '.join(f'{t} -> {c}' for t, c in categories.items())}")


def evidence_chars(kubeconfig: Path, namespace: str, kind: str, name: str) -> int:
    """The evidence an investigation gathers, as JSON: what would be sent without compaction."""
    from kubilitics.adapters.kube_rest import KubeRestClients
    from kubilitics.adapters.kubeconfig import KubeconfigSource
    from kubilitics.adapters.kubernetes import KubernetesGateway
    from kubilitics.ai.gather import gather_evidence

    gateway = KubernetesGateway(KubeRestClients("us-east-1"), 10)
    context = KubeconfigSource(path=kubeconfig).get().resolve(None)
    evidence = gather_evidence(gateway, context, kind, namespace, name)
    return len(json.dumps(evidence.to_dict(), separators=(",", ":")))


def llm_path(kubeconfig: Path, namespace: str, api: Api, base: str, token: str, fake: Any) -> None:
    stored = httpx.put(
        f"{base}/api/v1/ai/config",
        headers={"Authorization": f"Bearer {token}"},
        json={"llm_configuration": {"api_key": fake.api_key}},
        timeout=30,
    )
    stored.raise_for_status()
    print("LLM path (fake Messages API; one read-only tool call, then the answer), sent per investigation:")
    print(
        f"  {'target':<22} {'calls':>5} {'chars sent':>11} {'tokens':>7} {'1st request':>12} "
        f"{'evidence gathered':>18}"
    )
    for kind, name in TARGETS:
        fake.requests.clear()
        fake.reply_tool_use("get_object", {"kind": kind, "namespace": namespace, "name": name})
        verdict = {"category": "unknown", "confidence": 0.5, "summary": "bench"}
        fake.reply_text("Explanation.\n" + json.dumps(verdict))
        _, item = api.investigate(namespace, kind, name)
        assert item["analysis"]["mode"] == "rules+llm", item["analysis"]
        sent = fake.message_requests
        chars = sum(r.prompt_chars for r in sent)
        tokens = item["analysis"]["llm"]["input_tokens"]  # the usage the fake server reported
        raw = evidence_chars(kubeconfig, namespace, kind, name)
        target, first = f"{kind}/{name}", sent[0].prompt_chars
        print(f"  {target:<22} {len(sent):>5} {chars:>11,} {tokens:>7,} {first:>12,} {raw:>18,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench investigations", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=21, help="rules-only investigations to time")
    parser.add_argument("--kubeconfig", type=Path, default=TESTBED_KUBECONFIG)
    parser.add_argument("--keep", action="store_true", help="leave the bench namespace")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # tests.fakes (the fake Messages API)
    from kubilitics.local.process import local_server

    from tests.fakes.messages_api import FakeMessagesAPI

    try:
        kubectl(args.kubeconfig, "get", "--raw", "/readyz")
    except Exception as exc:
        print(
            f"investigations: test cluster unavailable ({exc}); start it with `make testbed-up`",
            file=sys.stderr,
        )
        return 1
    namespace = prepare(args.kubeconfig)
    try:
        with (
            FakeMessagesAPI() as fake,
            local_server(args.kubeconfig, {"KUBILITICS_ANTHROPIC_BASE_URL": fake.url}) as server,
        ):
            api = Api(server.url, server.admin_token)
            api.investigate(namespace, "Pod", "orders")  # warm-up: first imports of the task code
            rules_only(api, namespace, args.runs)
            llm_path(args.kubeconfig, namespace, api, server.url, server.admin_token, fake)
    finally:
        if not args.keep:
            kubectl(args.kubeconfig, "delete", "namespace", namespace, "--wait=false")
    return 0


if __name__ == "__main__":
    sys.exit(main())
