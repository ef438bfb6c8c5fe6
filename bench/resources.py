"""GET /api/v1/resources/{kind} on a loaded cluster, against a direct API server list (issue 4, "Benchmark").

Loads the test cluster with pods (default 5,000 in one namespace), then prints:
- the median latency of `GET /api/v1/resources/Pod?namespace=X&limit=50`, without and with a label
  selector, through the resources function's Lambda handler (in process, DynamoDB from moto), next to
  a direct API server list with the same selector and limit, measured interleaved in the same run;
- the peak memory of the function (a fresh interpreter, VmHWM; tracemalloc for the call itself)
  while it sorts every pod of the cluster (`sort_by=created`), against the 512 MB of the Lambda.

The pods are never scheduled (an unknown schedulerName), so neither the scheduler nor the testbed's
kubelet stand-in works on them; their status is written through the status subresource so that each
one is the size of a running pod. The namespace is deleted at the end unless --keep is given.
Prints figures only: nothing here fails on a slow time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from bench import harness
from bench.harness import LambdaContext, dynamodb_process, environment

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TESTBED_KUBECONFIG = REPO / ".testbed" / "kubeconfig"
NAMESPACE = "kubilitics-bench-resources"
LOAD_LABEL = "kubilitics.bench/load"
APPS = 10  # label app=app-0..app-9: a selector on one app matches a tenth of the pods
TARGET_RATIO = 1.3
MEMORY_LIMIT_MB = 512
JWT_SECRET = "kubilitics-bench-secret-of-at-least-32-bytes"  # shorter HS256 keys draw a warning


# --- the load --------------------------------------------------------------------------------------


def pod_manifest(index: int, nodes: list[str]) -> dict[str, Any]:
    app = f"app-{index % APPS}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-{index:05d}-x7k2p",
            "labels": {
                "app": app,
                "tier": ("frontend", "backend", "worker")[index % 3],
                "pod-template-hash": f"{index % 97:08x}",
                LOAD_LABEL: "true",
            },
            "annotations": {
                "kubilitics.io/owner": "bench",
                "kubectl.kubernetes.io/restartedAt": "2026-01-01",
            },
        },
        "spec": {
            # Never scheduled: no scheduler or kubelet stand-in spends time on the load.
            "schedulerName": "kubilitics-bench-unscheduled",
            "containers": [
                {
                    "name": "main",
                    "image": f"registry.example.com/{app}:1.{index % 7}.0",
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "env": [{"name": f"SETTING_{n}", "value": f"value-{n}-{index}"} for n in range(5)],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                    },
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
                    "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 20},
                }
            ],
        },
        "_node": nodes[index % len(nodes)],
    }


def running_status(node_ip: str, index: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "status": {
            "phase": "Running",
            "hostIP": node_ip,
            "podIP": f"10.244.{index // 250}.{index % 250 + 1}",
            "startTime": now,
            "conditions": [
                {"type": kind, "status": "True", "lastTransitionTime": now}
                for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": "main",
                    "ready": True,
                    "started": True,
                    "restartCount": index % 3,
                    "image": "registry.example.com/app:1.0.0",
                    "imageID": "registry.example.com/app@sha256:" + f"{index:064x}",
                    "containerID": "containerd://" + f"{index * 7919:064x}",
                    "state": {"running": {"startedAt": now}},
                }
            ],
        }
    }


class Cluster(harness.Cluster):
    """Raw JSON calls to the test cluster (its current context)."""

    def __init__(self, kubeconfig: Path):
        super().__init__(kubeconfig, timeout=60)

    def count(self, namespace: str) -> int:
        listed = self.call("GET", f"/api/v1/namespaces/{namespace}/pods", params={"limit": 1})
        return len(listed["items"]) + int(listed["metadata"].get("remainingItemCount", 0))


def load(cluster: Cluster, count: int, workers: int = 16) -> float:
    """Make sure NAMESPACE holds `count` pods; returns the seconds it took."""
    from kubilitics.errors import KubiliticsError

    started = time.perf_counter()
    while True:  # a namespace left terminating by the previous run takes no new pods
        try:
            phase = cluster.call("GET", f"/api/v1/namespaces/{NAMESPACE}")["status"].get("phase")
        except KubiliticsError as exc:
            if exc.code != "not_found":
                raise
            break
        if phase != "Terminating":
            break
        time.sleep(1)
    cluster.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE, "labels": {LOAD_LABEL: "true"}}})
    present = cluster.count(NAMESPACE)
    if present >= count:
        return time.perf_counter() - started
    nodes = [n["metadata"]["name"] for n in cluster.call("GET", "/api/v1/nodes")["items"]] or ["none"]

    def make(index: int) -> None:
        manifest = pod_manifest(index, nodes)
        manifest.pop("_node")
        cluster.create(f"/api/v1/namespaces/{NAMESPACE}/pods", manifest)
        cluster.call(
            "PATCH",
            f"/api/v1/namespaces/{NAMESPACE}/pods/{manifest['metadata']['name']}/status",
            running_status("127.0.0.1", index),
            content_type="application/merge-patch+json",
        )

    with ThreadPoolExecutor(workers) as pool:
        for done, _ in enumerate(pool.map(make, range(count)), 1):
            if done % 1000 == 0:
                print(f"  loaded {done}/{count} pods ({time.perf_counter() - started:.0f} s)", flush=True)
    return time.perf_counter() - started


def unload(cluster: Cluster) -> None:
    from kubilitics.errors import KubiliticsError

    try:
        cluster.call("DELETE", f"/api/v1/namespaces/{NAMESPACE}")
    except KubiliticsError as exc:
        if exc.code != "not_found":
            raise


# --- the function and its environment --------------------------------------------------------------


def with_service_context(kubeconfig: Path, folder: Path) -> Path:
    """A copy of the kubeconfig with SERVICE_CONTEXT beside its current context: the same cluster and
    user, run in service mode (no impersonation), so that both modes are measured in one process."""
    import yaml

    document = yaml.safe_load(kubeconfig.read_text())
    current = next(c for c in document["contexts"] if c["name"] == document["current-context"])
    document["contexts"].append({"name": SERVICE_CONTEXT, "context": dict(current["context"])})
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


def function_env(kubeconfig: Path, endpoint: str) -> dict[str, str]:
    return {
        "KUBILITICS_ENV": "test",
        "KUBILITICS_JWT_SECRET": JWT_SECRET,
        "KUBILITICS_KUBECONFIG": str(kubeconfig),
        # The default context impersonates the caller (the default mode); SERVICE_CONTEXT does not.
        "KUBILITICS_KUBE_AUTHORIZATION_MODES": json.dumps({SERVICE_CONTEXT: "service"}),
        "KUBILITICS_AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "kubilitics",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


class Function:
    """The resources function's Lambda handler, called in this process with API Gateway v2 events."""

    def __init__(self) -> None:
        self.handler, self.token = harness.handler_and_token("resources")
        self.template = json.loads((REPO / "events" / "resources" / "list_resources.json").read_text())

    def get(self, kind: str, query: dict[str, str], context: str | None = None) -> dict[str, Any]:
        from urllib.parse import urlencode

        event = json.loads(json.dumps(self.template))
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/api/v1/resources/{kind}"
        event["rawQueryString"] = urlencode(query)
        event["queryStringParameters"] = query
        event["pathParameters"] = {"kind": kind}
        event["headers"]["authorization"] = f"Bearer {self.token}"
        if context:
            event["headers"]["x-kubeconfig-context"] = context
        response = self.handler(event, LambdaContext(MEMORY_LIMIT_MB))
        if response["statusCode"] != 200:
            raise RuntimeError(f"{kind}?{query}: {response['statusCode']} {response['body'][:300]}")
        # Parsed as the direct side's client parses the API server's answer (orjson), so that both
        # sides end with the caller holding the objects, at the same parsing cost per byte.
        result: dict[str, Any] = orjson.loads(response["body"])
        return result


# --- latency ----------------------------------------------------------------------------------------


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


class CounterStore:
    """An in-memory rate-limit store: what the function costs without DynamoDB's round trip."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def increment_window(self, key: str, expires_at: int, usage: Any = None) -> int:
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]


@contextlib.contextmanager
def limiter_in_memory() -> Iterator[None]:
    from kubilitics.container import get_container
    from kubilitics.services.ratelimit import RateLimiter

    services = get_container()
    saved = services.rate_limiter
    services.__dict__["rate_limiter"] = RateLimiter(CounterStore(), services.clock)  # type: ignore[arg-type]
    try:
        yield
    finally:
        services.__dict__["rate_limiter"] = saved


SIDES = ("direct", "function", "function, in-memory limiter")
# The same two function sides without impersonation (the kubeconfig's identity, service mode): what
# impersonation and its extra API server authorization cost (issue 13: at most 0.05x).
SERVICE_SIDES = ("function, service identity", "in-memory limiter, service identity")
SERVICE_CONTEXT = "bench-service-identity"
# Only for the selector row: what an exact total_count costs any client. With a selector the API
# server gives no remainingItemCount and has no count call, so every match must be listed too.
FLOOR = "direct page + count"


def page_and_count(cluster: Cluster, path: str, params: dict[str, Any], pool: ThreadPoolExecutor) -> Any:
    """The page, and every match counted at the same time (table rows without objects, as the
    function counts them): the least work an exact total_count with a selector takes."""
    from kubilitics.adapters.kubernetes import TABLE_ACCEPT

    selector = {"labelSelector": params["labelSelector"], "includeObject": "None"}
    counting = pool.submit(cluster.client.json, "GET", path, timeout=60, params=selector, accept=TABLE_ACCEPT)
    page = cluster.call("GET", path, params=params)
    return page, len(counting.result()["rows"])


def latency(cluster: Cluster, function: Function, runs: int, pods: int) -> list[tuple[str, dict[str, float]]]:
    """Median ms per side for each list scenario; sides interleaved, each round in another order."""
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    pool = ThreadPoolExecutor(1)
    scenarios: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
        "limit=50": ({"namespace": NAMESPACE, "limit": "50"}, {"limit": 50}),
        "limit=50, label_selector=app=app-3": (
            {"namespace": NAMESPACE, "limit": "50", "label_selector": "app=app-3"},
            {"limit": 50, "labelSelector": "app=app-3"},
        ),
        # The fixed cost of a request: one pod, so Kubernetes' own time is small.
        "limit=1": ({"namespace": NAMESPACE, "limit": "1"}, {"limit": 1}),
    }
    samples: dict[str, dict[str, list[float]]] = {
        name: {
            side: [] for side in (*SIDES, *SERVICE_SIDES, FLOOR) if side != FLOOR or "label_selector" in ours
        }
        for name, (ours, _) in scenarios.items()
    }

    def function_side(query: dict[str, str], in_memory: bool, context: str | None = None) -> dict[str, Any]:
        with limiter_in_memory() if in_memory else contextlib.nullcontext():
            return function.get("Pod", query, context)

    for round_ in range(runs + 3):  # the first 3 rounds warm connections and caches, unrecorded
        for name, (ours, direct) in scenarios.items():
            calls: dict[str, Callable[[], Any]] = {
                "direct": functools.partial(cluster.call, "GET", path, params=direct),
                "function": functools.partial(function_side, ours, False),
                "function, in-memory limiter": functools.partial(function_side, ours, True),
                SERVICE_SIDES[0]: functools.partial(function_side, ours, False, SERVICE_CONTEXT),
                SERVICE_SIDES[1]: functools.partial(function_side, ours, True, SERVICE_CONTEXT),
                FLOOR: functools.partial(page_and_count, cluster, path, direct, pool),
            }
            order = list(samples[name])
            shift = round_ % len(order)  # no side always goes first
            for side in order[shift:] + order[:shift]:
                started = time.perf_counter()
                result = calls[side]()
                elapsed = time.perf_counter() - started
                if side == "function" and name == "limit=50":
                    assert result["total_count"] == pods and result["page"]["returned"] == 50, result["page"]
                if round_ >= 3:
                    samples[name][side].append(elapsed)
    return [
        (name, {side: median_ms(values) for side, values in sides.items()}) for name, sides in samples.items()
    ]


def extra_latency(function: Function, runs: int) -> list[tuple[str, float]]:
    """Paths with no direct counterpart (the API server neither skips nor sorts): figures only."""
    scenarios = {
        "offset=2500, limit=50": ("Pod", {"namespace": NAMESPACE, "limit": "50", "offset": "2500"}),
        "label_selector=app=app-3, offset=250": (
            "Pod",
            {"namespace": NAMESPACE, "limit": "50", "label_selector": "app=app-3", "offset": "250"},
        ),
        "all namespaces, sort_by=created": ("Pod", {"limit": "50", "sort_by": "created"}),
    }
    figures = []
    for name, (kind, query) in scenarios.items():
        function.get(kind, query)
        samples = []
        for _ in range(max(3, runs // 3)):
            started = time.perf_counter()
            function.get(kind, query)
            samples.append(time.perf_counter() - started)
        figures.append((name, median_ms(samples)))
    return figures


# --- memory -----------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries it over from the parent
    through fork and exec, so a child would report the bench's own footprint."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(offset: int) -> None:
    """In a fresh interpreter: the function sorts every pod; prints one JSON line of figures."""
    import tracemalloc

    function = Function()
    function.get("Pod", {"namespace": "default", "limit": "1"})  # imports, discovery, connections
    before = peak_rss_mb()
    query = {"limit": "50", "sort_by": "created", "offset": str(offset)}
    started = time.perf_counter()
    body = function.get("Pod", query)
    seconds = time.perf_counter() - started
    after = peak_rss_mb()
    tracemalloc.start()
    function.get("Pod", query)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        "BENCH_RESULT "
        + json.dumps(
            {
                "total": body["total_count"],
                "returned": body["page"]["returned"],
                "seconds": seconds,
                "rss_before_mb": before,
                "rss_peak_mb": after,
                "traced_peak_mb": traced_peak / 2**20,
            }
        )
    )


def deepest_offset(pods: int) -> int:
    """The last page of a sorted list of every pod, or the deepest offset the API accepts."""
    from kubilitics.services.resources import MAX_OFFSET

    return min(MAX_OFFSET, max(0, pods - 50))


def memory(env: dict[str, str], offset: int) -> dict[str, Any]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBILITICS_", "AWS_"))}
    child_env.update(env, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "shared")]))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.resources", "--memory-child", str(offset)],
        capture_output=True,
        text=True,
        env=child_env,
        cwd=REPO,
        timeout=600,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise RuntimeError(
            f"memory child failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
    return result


# --- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench resources", description=__doc__)
    parser.add_argument("--pods", type=int, default=5000, help="pods to load (default 5000)")
    parser.add_argument("--runs", type=int, default=30, help="measured rounds (default 30)")
    parser.add_argument("--kubeconfig", type=Path, default=TESTBED_KUBECONFIG)
    parser.add_argument("--keep", action="store_true", help=f"leave namespace {NAMESPACE} loaded")
    parser.add_argument("--memory-child", type=int, metavar="OFFSET", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return 0

    kubeconfig = args.kubeconfig.resolve()
    try:
        cluster = Cluster(kubeconfig)
        cluster.call("GET", "/version")
    except Exception as exc:
        print(
            f"resources: test cluster unavailable ({exc}); start it with `make testbed-up`", file=sys.stderr
        )
        return 2
    print(f"loading {args.pods} pods into namespace {NAMESPACE} ...", flush=True)
    seconds = load(cluster, args.pods)
    in_namespace = cluster.count(NAMESPACE)
    everywhere = len(cluster.call("GET", "/api/v1/pods", params={"limit": 1})["items"])
    everywhere += int(
        cluster.call("GET", "/api/v1/pods", params={"limit": 1})["metadata"].get("remainingItemCount", 0)
    )
    print(
        f"cluster: {in_namespace} pods in {NAMESPACE}, {everywhere} in all namespaces (load: {seconds:.0f} s)"
    )
    try:
        with dynamodb_process() as endpoint, tempfile.TemporaryDirectory() as folder:
            env = function_env(with_service_context(kubeconfig, Path(folder)), endpoint)
            with environment(env):
                function = Function()
                rows = latency(cluster, function, args.runs, in_namespace)
                extra = extra_latency(function, args.runs)
            memories = [memory(env, 0), memory(env, deepest_offset(everywhere))]
    finally:
        if not args.keep:
            unload(cluster)
            print(f"namespace {NAMESPACE} deleted (pass --keep to reuse the load)")

    print(
        f"\nGET /api/v1/resources/Pod?namespace=X (X holds {in_namespace} pods), median of {args.runs} (ms):"
    )
    print(
        f"  {'query':36s} {'direct':>8s} {'function':>9s} {'ratio':>6s} {'in-mem limiter':>15s} {'ratio':>6s}"
    )
    for name, medians in rows:
        direct, ours, alone = (medians[side] for side in SIDES)
        print(
            f"  {name:36s} {direct:8.1f} {ours:9.1f} {ours / direct:5.2f}x"
            f" {alone:15.1f} {alone / direct:5.2f}x"
        )
        if FLOOR in medians:
            floor = medians[FLOOR]
            print(f"  {'  direct page + count of matches':36s} {floor:8.1f} {'':9s} {floor / direct:5.2f}x")
    print("  the same without impersonation (the kubeconfig's identity; issue 13: at most 0.05x apart):")
    print(f"  {'query':36s} {'':8s} {'function':>9s} {'ratio':>6s} {'in-mem limiter':>15s} {'ratio':>6s}")
    for name, medians in rows:
        direct, (ours, alone) = medians["direct"], (medians[side] for side in SERVICE_SIDES)
        print(f"  {name:36s} {'':8s} {ours:9.1f} {ours / direct:5.2f}x {alone:15.1f} {alone / direct:5.2f}x")
    print(f"  target: function <= {TARGET_RATIO}x direct. 'in-mem limiter': the rate-limit counter in memory")
    print("  instead of DynamoDB (moto on the same machine): the function's own cost. 'direct page + count':")
    print("  the page and a count of every match at once, the least an exact total_count with a selector")
    print("  takes (the API server neither counts selected objects nor offers a count call).")
    print("  function only (the API server has no offset or sort):")
    for name, ours in extra:
        print(f"  {name:40s} {ours:8.1f}ms")
    print(f"\nsorting all {everywhere} pods of the cluster (sort_by=created, limit=50), fresh interpreter:")
    for label, figures in zip(("offset=0", f"offset={deepest_offset(everywhere)}"), memories, strict=True):
        fits = "fits" if figures["rss_peak_mb"] < MEMORY_LIMIT_MB else "DOES NOT FIT"
        print(
            f"  {label:14s} peak RSS {figures['rss_peak_mb']:6.1f} MB, {fits} in {MEMORY_LIMIT_MB} MB"
            f" (before the call {figures['rss_before_mb']:.1f} MB; Python allocations of the call"
            f" {figures['traced_peak_mb']:.1f} MB); {figures['seconds'] * 1000:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
