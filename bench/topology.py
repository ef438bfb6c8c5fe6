"""GET /api/v1/topology for a whole cluster, against the raw list calls it makes (issue 4, "Benchmark").

On a KWOK cluster of its own (scripts/testbed/up.sh with its own state folder and kwok playing the
kubelet, so thousands of pods are cheap), loaded twice: first with --pods pods over --nodes nodes in
--namespaces namespaces, then with twice as many of each. At each size it prints the median of:

- topology: the observability function's Lambda handler, in this process (DynamoDB from a moto
  server process), answering `GET /api/v1/topology` (depth 3, metrics included, the whole cluster);
- raw calls: the very HTTP requests that answer made (recorded during a warm-up call), fired all at
  once from the same process and read to the last byte, with no parsing: the floor for any client;
- full lists: for context, the full JSON lists of the same kinds as `kubectl get -o json` reads them.

The targets: topology <= 1.5x the raw calls, and doubling the cluster at most doubles the time.
Prints figures only: nothing here fails on a slow time. `--kubeconfig` runs against an existing
cluster instead (the load goes into labelled namespaces and nodes, removed at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import LambdaContext, dynamodb_process, environment

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TESTBED = REPO / "scripts" / "testbed"
STATE = Path.home() / ".cache" / "kubilitics-testbed" / "bench-topology"
CLUSTER = "kubilitics-bench"
LOAD_LABEL = "kubilitics.bench/topology"
TARGET_RATIO = 1.5
JWT_SECRET = "kubilitics-bench-secret-for-the-topology-benchmark"
QUERY = {"depth": "3", "include_metrics": "true"}


# --- the cluster and its load ----------------------------------------------------------------------


def testbed_env() -> dict[str, str]:
    return {
        **os.environ,
        "KUBILITICS_TESTBED_STATE": str(STATE),
        "KUBILITICS_TESTBED_CLUSTER": CLUSTER,
        "KUBILITICS_TESTBED_PODS": "kwok",  # kwok's own fast pod stages: every pod Running at once
    }


def start_bench_cluster() -> Path:
    print(f"starting the bench cluster {CLUSTER} (state in {STATE}) ...", flush=True)
    proc = subprocess.run(
        ["bash", str(TESTBED / "up.sh")], env=testbed_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"scripts/testbed/up.sh failed:\n{proc.stderr[-4000:]}")
    return STATE / "kubeconfig"


def stop_bench_cluster() -> None:
    subprocess.run(["bash", str(TESTBED / "down.sh")], env=testbed_env(), capture_output=True, check=False)


class Cluster(harness.Cluster):
    def __init__(self, kubeconfig: Path, context: str | None):
        super().__init__(kubeconfig, context, timeout=120)


@dataclass(frozen=True)
class Size:
    pods: int
    nodes: int
    namespaces: int

    def doubled(self) -> Size:
        return Size(self.pods * 2, self.nodes * 2, self.namespaces * 2)


def node_manifest(index: int) -> dict[str, Any]:
    name = f"bench-node-{index:04d}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"type": "kwok", "kubernetes.io/hostname": name, LOAD_LABEL: "true"},
            "annotations": {
                "metrics.k8s.io/resource-metrics-path": f"/metrics/nodes/{name}/metrics/resource"
            },
        },
        "spec": {"taints": [{"key": LOAD_LABEL, "value": "true", "effect": "NoSchedule"}]}
        if index % 10 == 0
        else {},
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
        },
    }


def pod_manifest(index: int, node: str) -> dict[str, Any]:
    app = f"app-{index % 10}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{app}-{index:06d}", "labels": {"app": app, LOAD_LABEL: "true"}},
        "spec": {
            "nodeName": node,  # bound directly: the scheduler has nothing to do
            "containers": [
                {
                    "name": "main",
                    "image": f"registry.example.com/{app}:1.{index % 7}.0",
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": [{"name": f"SETTING_{n}", "value": f"value-{n}-{index}"} for n in range(5)],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                    },
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
                }
            ],
            "tolerations": [{"key": LOAD_LABEL, "operator": "Exists"}],
        },
    }


def namespace_objects(ns: str) -> list[tuple[str, dict[str, Any]]]:
    """What a namespace holds besides pods: workloads to count, a quota, policies, services."""
    apps, batch, core, net = "/apis/apps/v1", "/apis/batch/v1", "/api/v1", "/apis/networking.k8s.io/v1"
    pod_spec = {"containers": [{"name": "c", "image": "nginx"}]}
    template = {"metadata": {"labels": {"app": "x"}}, "spec": pod_spec}
    selector = {"matchLabels": {"app": "x"}}
    nowhere_template = {**template, "spec": {**pod_spec, "nodeSelector": {"kubilitics.bench/nowhere": "x"}}}
    job_template = {"spec": {"template": {**template, "spec": {**pod_spec, "restartPolicy": "Never"}}}}

    def obj(group: str, plural: str, name: str, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        body = {"metadata": {"name": name, "labels": {LOAD_LABEL: "true"}}, "spec": spec}
        return f"{group}/namespaces/{ns}/{plural}", body

    return [
        *(obj(apps, "deployments", f"web-{n}", {"replicas": 0, "selector": selector, "template": template})
          for n in range(3)),
        obj(apps, "statefulsets", "db", {"replicas": 0, "serviceName": "db", "selector": selector,
                                         "template": template}),
        obj(apps, "daemonsets", "agent", {"selector": selector, "template": nowhere_template}),
        obj(batch, "cronjobs", "nightly", {"schedule": "0 3 * * *", "suspend": True,
                                           "jobTemplate": job_template}),
        obj(core, "resourcequotas", "pods", {"hard": {"pods": "1000"}}),
        obj(net, "networkpolicies", "deny-all", {"podSelector": {}}),
        obj(net, "networkpolicies", "allow-app", {"podSelector": {"matchLabels": {"app": "app-1"}},
                                                  "ingress": [{}]}),
        # headless and without a selector: no service IP to allocate, no endpoints to maintain
        *(obj(core, "services", f"svc-{n}", {"clusterIP": "None", "ports": [{"port": 80}]})
          for n in range(10)),
    ]  # fmt: skip


def load(cluster: Cluster, size: Size, workers: int = 16) -> float:
    """Make the cluster hold `size` (adds to what a smaller load made); returns the seconds it took."""
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: cluster.create("/api/v1/nodes", node_manifest(i)), range(size.nodes)))
        namespaces = [f"bench-topo-{i:03d}" for i in range(size.namespaces)]
        list(pool.map(lambda ns: cluster.create("/api/v1/namespaces", {
            "metadata": {"name": ns, "labels": {LOAD_LABEL: "true"}}}), namespaces))  # fmt: skip
        per_namespace = size.pods // size.namespaces

        def fill(ns_index: int) -> None:
            ns = namespaces[ns_index]
            for path, body in namespace_objects(ns):
                cluster.create(path, body)
            for n in range(per_namespace):
                index = ns_index * per_namespace + n
                node = f"bench-node-{index % size.nodes:04d}"
                cluster.create(f"/api/v1/namespaces/{ns}/pods", pod_manifest(index, node))

        list(pool.map(fill, range(size.namespaces)))

    def settled() -> bool:  # kwok has marked every pod Running
        pending = cluster.call(
            "GET", "/api/v1/pods", params={"fieldSelector": "status.phase!=Running", "limit": 1}
        )
        return not pending["items"]

    deadline = time.monotonic() + 600
    while not settled() and time.monotonic() < deadline:
        time.sleep(2)
    return time.perf_counter() - started


def unload(cluster: Cluster) -> None:
    """Remove the load from a cluster that is not the bench's own."""
    from kubilitics.errors import KubiliticsError

    for path in ("/api/v1/namespaces", "/api/v1/nodes"):
        for item in cluster.call("GET", path, params={"labelSelector": LOAD_LABEL})["items"]:
            with contextlib.suppress(KubiliticsError):
                cluster.call("DELETE", f"{path}/{item['metadata']['name']}")


# --- the function, the recorded calls and their replay ---------------------------------------------


class Function:
    """The observability function's handler, called in this process with an API Gateway v2 event."""

    def __init__(self, context_name: str) -> None:
        from urllib.parse import urlencode

        self.handler, token = harness.handler_and_token("observability")
        event = json.loads((REPO / "events" / "observability" / "get_topology.json").read_text())
        event["rawQueryString"] = urlencode(QUERY)
        event["queryStringParameters"] = dict(QUERY)
        event["headers"].update({"authorization": f"Bearer {token}", "x-kubeconfig-context": context_name})
        self.event = event

    def call(self) -> dict[str, Any]:
        """One invocation, as Lambda would run it: the response is not parsed here."""
        response: dict[str, Any] = self.handler(json.loads(json.dumps(self.event)), LambdaContext(1024))
        if response["statusCode"] != 200:
            raise RuntimeError(f"topology: {response['statusCode']} {response['body'][:300]}")
        return response

    def topology(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.call()["body"])
        return result


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: tuple[tuple[str, Any], ...]
    accept: str


@contextlib.contextmanager
def recording() -> Iterator[list[Call]]:
    """Every request the product's REST client sends meanwhile."""
    from kubilitics.adapters.kube_rest import KubeRestClient

    calls: list[Call] = []
    original = KubeRestClient.request

    def spy(self: Any, method: str, path: str, **kwargs: Any) -> Any:
        params = tuple(sorted((kwargs.get("params") or {}).items()))
        calls.append(Call(method, path, params, kwargs.get("accept", "application/json")))
        return original(self, method, path, **kwargs)

    KubeRestClient.request = spy  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        KubeRestClient.request = original  # type: ignore[method-assign]


def replay(cluster: Cluster, calls: list[Call]) -> int:
    """All the calls at once, each read to its last byte (no parsing); returns the bytes read."""

    def one(call: Call) -> int:
        params = {k: v for k, v in call.params if v is not None}
        return len(
            cluster.client.request(
                call.method, call.path, timeout=120, params=params, accept=call.accept
            ).data
        )

    with ThreadPoolExecutor(len(calls)) as pool:
        return sum(pool.map(one, calls))


FULL_LISTS = [
    "/api/v1/nodes", "/api/v1/pods", "/api/v1/namespaces", "/api/v1/services", "/api/v1/resourcequotas",
    "/apis/apps/v1/deployments", "/apis/apps/v1/statefulsets", "/apis/apps/v1/daemonsets",
    "/apis/batch/v1/jobs", "/apis/batch/v1/cronjobs", "/apis/networking.k8s.io/v1/networkpolicies",
    "/apis/metrics.k8s.io/v1beta1/nodes", "/apis/metrics.k8s.io/v1beta1/pods",
]  # fmt: skip


def full_lists(cluster: Cluster) -> int:
    return replay(cluster, [Call("GET", path, (), "application/json") for path in FULL_LISTS])


@dataclass
class Figures:
    size: Size
    pods: int
    nodes: int
    namespaces: int
    calls: int
    raw_bytes: int
    full_bytes: int
    raw: float
    topology: float
    full: float
    raw_min: float
    topology_min: float


def measure(cluster: Cluster, function: Function, runs: int, size: Size) -> Figures:
    body = function.topology()  # warm: connections, discovery of nothing, imports
    with recording() as calls:
        body = function.topology()
    samples: dict[str, list[float]] = {"raw": [], "topology": [], "full": []}
    raw_bytes = full_bytes = 0
    sides: dict[str, Callable[[], Any]] = {
        "raw": lambda: replay(cluster, calls),
        "topology": function.call,
        "full": lambda: full_lists(cluster),
    }
    for round_ in range(runs + 1):  # round 0 warms the replay's connections
        order = list(sides)
        order = order[round_ % 3 :] + order[: round_ % 3]  # no side always goes first
        for side in order:
            started = time.perf_counter()
            result = sides[side]()
            elapsed = time.perf_counter() - started
            if side == "raw":
                raw_bytes = result
            elif side == "full":
                full_bytes = result
            if round_:
                samples[side].append(elapsed)
    return Figures(
        size=size,
        pods=body["cluster"]["total_pods"],
        nodes=body["cluster"]["total_nodes"],
        namespaces=len(body["namespaces"]),
        calls=len(calls),
        raw_bytes=raw_bytes,
        full_bytes=full_bytes,
        raw=statistics.median(samples["raw"]),
        topology=statistics.median(samples["topology"]),
        full=statistics.median(samples["full"]),
        raw_min=min(samples["raw"]),
        topology_min=min(samples["topology"]),
    )


HEADER = (
    f"{'pods':>6} {'nodes':>6} {'ns':>4} {'calls':>6} {'raw MB':>7} {'raw ms':>7} {'topology ms':>12} "
    f"{'ratio':>6} {'(min: raw, topology, ratio)':>28} {'full lists MB':>14} {'full lists ms':>14}"
)


def row(f: Figures) -> str:
    fastest = f"{f.raw_min * 1000:.0f}, {f.topology_min * 1000:.0f}, {f.topology_min / f.raw_min:.2f}x"
    return (
        f"{f.pods:>6} {f.nodes:>6} {f.namespaces:>4} {f.calls:>6} {f.raw_bytes / 1e6:>7.1f} "
        f"{f.raw * 1000:>7.0f} {f.topology * 1000:>12.0f} {f.topology / f.raw:>5.2f}x {fastest:>28} "
        f"{f.full_bytes / 1e6:>14.1f} {f.full * 1000:>14.0f}"
    )


def report(rows: list[Figures], runs: int) -> None:
    print(
        f"\nGET /api/v1/topology?depth=3&include_metrics=true (whole cluster): median of {runs} runs, and min"
    )
    print(HEADER)
    for f in rows:
        print(row(f))
    print(f"target: topology <= {TARGET_RATIO}x the raw calls it makes")
    if len(rows) == 2:
        small, large = rows
        print(
            f"doubling the cluster: topology {large.topology / small.topology:.2f}x, "
            f"raw calls {large.raw / small.raw:.2f}x, full lists {large.full / small.full:.2f}x "
            "(target: topology <= 2x)"
        )
        # The two sizes are measured minutes apart: the fastest runs compare them with less noise.
        print(
            f"  fastest runs: topology {large.topology_min / small.topology_min:.2f}x, "
            f"raw calls {large.raw_min / small.raw_min:.2f}x"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench topology", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pods", type=int, default=5000, help="pods at the first size (doubled at the second)"
    )
    parser.add_argument("--nodes", type=int, default=100, help="KWOK nodes at the first size")
    parser.add_argument("--namespaces", type=int, default=20, help="namespaces at the first size")
    parser.add_argument("--runs", type=int, default=21, help="rounds per size (default 21)")
    parser.add_argument("--kubeconfig", type=Path, help="an existing cluster instead of the bench's own")
    parser.add_argument("--context")
    parser.add_argument("--keep", action="store_true", help="leave the cluster and its load for the next run")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "shared"))
    own = args.kubeconfig is None
    kubeconfig = start_bench_cluster() if own else args.kubeconfig
    cluster = Cluster(kubeconfig, args.context)
    rows: list[Figures] = []
    try:
        with dynamodb_process() as endpoint, environment({
            "KUBILITICS_ENV": "test", "KUBILITICS_JWT_SECRET": JWT_SECRET,
            "KUBILITICS_KUBECONFIG": str(kubeconfig), "KUBILITICS_AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_LOG_LEVEL": "WARNING",
        }):  # fmt: skip
            function = Function(cluster.context.name)
            size = Size(args.pods, args.nodes, args.namespaces)
            for step in (size, size.doubled()):
                print(
                    f"loading {step.pods} pods over {step.nodes} nodes in {step.namespaces} namespaces ...",
                    flush=True,
                )
                print(f"  loaded in {load(cluster, step):.0f} s", flush=True)
                rows.append(measure(cluster, function, args.runs, step))
                print(f"  {HEADER.strip()}\n  {row(rows[-1]).strip()}", flush=True)
    finally:
        if not args.keep:
            if own:
                stop_bench_cluster()
            else:
                unload(cluster)
    report(rows, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
