"""`make soak`: 50 concurrent clients against the local server on the test cluster (issue 17, item 2).

Starts `kubilitics serve` on free ports, a scratch namespace with a pod that logs, and for
`--seconds` runs `--clients` clients, each with its own token, mixing reads (pods, namespaces, events,
pod metrics, topology), writes (ConfigMaps created, replaced and deleted), log reads, exec,
investigations and chat turns; `--watchers` more clients hold a watch on the scratch namespace's
ConfigMaps for the whole run, and one greedy client asks for the version as fast as it can with one token.

It prints p50/p99 per route, the statuses per route, the server's RSS over time, and checks:
  * no 5xx at all;
  * RSS after warm-up (the first fifth of the run, at least 30 s) grows by at most 10%;
  * the rate limit held exactly: the greedy client was admitted at most limit + burst per window
    (and was refused: the check ran);
  * no watch event lost or doubled: every watcher saw one ADDED per ConfigMap created, one MODIFIED
    per replace and one DELETED per delete that the API answered with success.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.websocket: the local server and the cluster writer
from bench.websocket import Cluster, LocalServer  # noqa: E402

WARM_UP_FRACTION, MIN_WARM_UP_SECONDS = 0.2, 30.0  # caches and pools fill first
RSS_GROWTH_LIMIT = 0.10
# services/ratelimit.py: "standard" (GET /api/v1/version) per minute, and the burst allowance.
STANDARD_LIMIT, BURST = 100, 20
GREEDY_LANES = 8
EXEC_PODS = 4  # exec is serialized per pod: the clients spread their commands over these
TICKER = """
apiVersion: v1
kind: Pod
metadata: {name: NAME, labels: {app: ticker}}
spec:
  nodeSelector: {topology.kubernetes.io/region: local-1}
  containers:
    - name: app
      image: busybox:1.36
      command: ["sh", "-c", "while true; do echo \\"GET /health 200\\"; sleep 1; done"]
"""


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self.server_errors: list[str] = []
        self.writes: Counter[str] = Counter()  # ADDED / MODIFIED / DELETED the API confirmed
        self.greedy_admitted: Counter[int] = Counter()  # window start -> admitted requests
        self.greedy_refused = 0

    def record(self, route: str, status: int, seconds: float, detail: str = "") -> None:
        self.latency[route].append(seconds)
        self.statuses[route][status] += 1
        if status >= 500:
            self.server_errors.append(f"{route} {status} {detail[:200]}")


async def call(stats: Stats, http: Any, route: str, method: str, path: str, **kwargs: Any) -> Any:
    started = time.perf_counter()
    response = await http.request(method, path, **kwargs)
    stats.record(route, response.status_code, time.perf_counter() - started, response.text)
    return response


async def client_loop(i: int, args: Any, stats: Stats, base: str, ns: str, token: str, stop: float) -> None:
    import httpx

    rng = random.Random(i)
    headers = {"Authorization": f"Bearer {token}"}
    mine: list[str] = []  # this client's ConfigMaps
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        while time.monotonic() < stop:
            op = rng.choices(
                ["read", "write", "logs", "exec", "investigate", "chat"], weights=[50, 25, 10, 5, 2, 8]
            )[0]
            if op == "read":
                route, path, params = rng.choice(
                    [
                        ("GET /resources/Pod", "/api/v1/resources/Pod", {"namespace": ns, "limit": 20}),
                        ("GET /namespaces", "/api/v1/namespaces", {}),
                        ("GET /events", "/api/v1/events", {"namespace": ns}),
                        ("GET /metrics/pods", "/api/v1/metrics/pods", {"namespace": ns}),
                        ("GET /topology", "/api/v1/topology", {"namespace": ns}),
                    ]
                )
                await call(stats, http, route, "GET", path, params=params)
            elif op == "write":
                await write(rng, stats, http, ns, i, mine)
            elif op == "logs":
                await call(
                    stats,
                    http,
                    "GET /pods/logs",
                    "GET",
                    f"/api/v1/pods/{ns}/ticker-{rng.randrange(EXEC_PODS)}/logs",
                    params={"tail_lines": 20},
                )
            elif op == "exec":
                body = {"command": ["echo", f"soak {i}"]}
                await call(
                    stats,
                    http,
                    "POST /pods/exec",
                    "POST",
                    f"/api/v1/pods/{ns}/ticker-{rng.randrange(EXEC_PODS)}/exec",
                    json=body,
                )
            elif op == "investigate":
                body = {"resource_kind": "Pod", "resource_name": "ticker-0", "namespace": ns}
                await call(stats, http, "POST /ai/investigate", "POST", "/api/v1/ai/investigate", json=body)
            else:
                await chat(stats, base, token, ns)
            await asyncio.sleep(rng.uniform(0.05, 0.3))


async def write(rng: random.Random, stats: Stats, http: Any, ns: str, i: int, mine: list[str]) -> None:
    if not mine or (len(mine) < 5 and rng.random() < 0.5):
        name = f"soak-{i}-{uuid.uuid4().hex[:6]}"
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
            "data": {"n": "0"},
        }
        response = await call(
            stats, http, "POST /resources", "POST", "/api/v1/resources/ConfigMap", json=body
        )
        if response.status_code == 201:
            mine.append(name)
            stats.writes["ADDED"] += 1
        return
    name = rng.choice(mine)
    if rng.random() < 0.7:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
            "data": {"n": uuid.uuid4().hex},
        }
        response = await call(
            stats, http, "PUT /resources", "PUT", f"/api/v1/resources/ConfigMap/{ns}/{name}", json=body
        )
        if response.status_code == 200:
            stats.writes["MODIFIED"] += 1
    else:
        response = await call(
            stats, http, "DELETE /resources", "DELETE", f"/api/v1/resources/ConfigMap/{ns}/{name}"
        )
        if response.status_code == 200:
            mine.remove(name)
            stats.writes["DELETED"] += 1


async def chat(stats: Stats, base: str, token: str, ns: str) -> None:
    import websockets

    url = base.replace("http://", "ws://") + f"/api/v1/ai/chat?token={token}"
    started = time.perf_counter()
    async with websockets.connect(url, open_timeout=30) as ws:
        await ws.send(json.dumps({"message": f"what is broken in {ns}?", "context": {"namespace": ns}}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
            if message.get("type") in ("CHAT", "ERROR"):
                break
    error = (message.get("error") or {}) if message.get("type") == "ERROR" else {}
    status = 200 if not error else {"rate_limit_exceeded": 429}.get(str(error.get("error")), 500)
    stats.record("WS /ai/chat", status, time.perf_counter() - started, json.dumps(error))


async def watcher(
    base: str, token: str, ns: str, seen: Counter[str], ready: asyncio.Event, stop: asyncio.Event
) -> None:
    import websockets

    async with websockets.connect(
        f"{base.replace('http://', 'ws://')}/api/v1/ws?token={token}", max_size=None
    ) as ws:
        await ws.send(json.dumps({"action": "subscribe", "resource_kind": "ConfigMap", "namespace": ns}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "SUBSCRIBED", ack
        ready.set()
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.5))
            except TimeoutError:
                continue
            name = ((message.get("resource") or {}).get("metadata") or {}).get("name", "")
            if message.get("type") in ("ADDED", "MODIFIED", "DELETED") and str(name).startswith("soak-"):
                seen[message["type"]] += 1


async def greedy(stats: Stats, base: str, token: str, stop: float, lanes: int = GREEDY_LANES) -> None:
    """One token, `lanes` requests at a time, as fast as the server answers: over the limit."""
    import httpx

    async def lane(http: Any) -> None:
        while time.monotonic() < stop:
            response = await call(stats, http, "GET /version (greedy)", "GET", "/api/v1/version")
            if response.status_code == 200:
                # The window the server counted it in: the one its X-RateLimit-Reset ends.
                stats.greedy_admitted[int(response.headers["x-ratelimit-reset"]) - 60] += 1
            elif response.status_code == 429:
                stats.greedy_refused += 1

    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=60) as http:
        await asyncio.gather(*(lane(http) for _ in range(lanes)))


def rss_kib(pid: int) -> int:
    """Resident memory of the server process and its children."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total


async def sample_rss(pid: int, samples: list[tuple[float, int]], start: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append((time.monotonic() - start, rss_kib(pid)))
        await asyncio.sleep(5)


async def soak(args: Any, server: LocalServer, cluster: Cluster, ns: str) -> int:
    from tests.support import dev_token

    base = f"http://127.0.0.1:{server.port}"
    stats = Stats()
    scopes = "read,write,delete,exec"
    tokens = [dev_token(f"soak-{i}", scopes) for i in range(args.clients)]
    seen: list[Counter[str]] = [Counter() for _ in range(args.watchers)]
    ready = [asyncio.Event() for _ in range(args.watchers)]
    ended = asyncio.Event()
    watchers = [
        asyncio.create_task(watcher(base, dev_token(f"soak-watch-{w}", "read"), ns, seen[w], ready[w], ended))
        for w in range(args.watchers)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), timeout=60)
    start = time.monotonic()
    stop = start + args.seconds
    samples: list[tuple[float, int]] = []
    sampler = asyncio.create_task(sample_rss(server.process.pid, samples, start, ended))
    await asyncio.gather(
        *(client_loop(i, args, stats, base, ns, tokens[i], stop) for i in range(args.clients)),
        greedy(stats, base, dev_token("soak-greedy", "read"), stop),
    )
    await asyncio.sleep(5)  # the last events reach the watchers
    ended.set()
    await asyncio.gather(*watchers, sampler)
    return report(args, stats, samples, seen)


def report(args: Any, stats: Stats, samples: list[tuple[float, int]], seen: list[Counter[str]]) -> int:
    failures = []
    print(f"\n{args.clients} clients + {args.watchers} watchers + 1 greedy reader for {args.seconds:g} s")
    print(f"{'route':34} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for route in sorted(stats.latency):
        values = sorted(stats.latency[route])
        p50 = values[len(values) // 2] * 1000
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
        codes = " ".join(f"{code}x{n}" for code, n in sorted(stats.statuses[route].items()))
        print(f"{route:34} {len(values):8d} {p50:8.0f} {p99:8.0f}  {codes}")
    print(f"5xx: {len(stats.server_errors)}")
    if stats.server_errors:
        failures.append(f"{len(stats.server_errors)} server errors, e.g. {stats.server_errors[:3]}")

    print(
        "RSS of the server (MiB) over time: " + ", ".join(f"{t:.0f}s {kib / 1024:.0f}" for t, kib in samples)
    )
    warm_up = max(args.seconds * WARM_UP_FRACTION, min(MIN_WARM_UP_SECONDS, args.seconds / 2))
    after = [kib for t, kib in samples if t >= warm_up]
    if len(after) >= 3:
        first, last = after[0], statistics.mean(after[-max(1, len(after) // 5) :])
        growth = (last - first) / first
        print(
            f"RSS after warm-up: {first / 1024:.0f} MiB -> {last / 1024:.0f} MiB ({growth:+.1%}; limit +10%)"
        )
        if growth > RSS_GROWTH_LIMIT:
            failures.append(f"RSS grew {growth:.1%} after warm-up")

    worst = max(stats.greedy_admitted.values(), default=0)
    print(
        f"greedy reader admitted per window: {dict(stats.greedy_admitted)} "
        f"(at most {STANDARD_LIMIT + BURST}), refused {stats.greedy_refused}"
    )
    if worst > STANDARD_LIMIT + BURST:
        failures.append(f"rate limit: {worst} requests admitted in one window")
    if not stats.greedy_refused:
        failures.append("rate limit not exercised: the greedy reader was never refused")

    print(f"writes confirmed: {dict(stats.writes)}; each watcher saw: {[dict(s) for s in seen]}")
    for w, got in enumerate(seen):
        if got != stats.writes:
            failures.append(f"watcher {w} saw {dict(got)}, the writes were {dict(stats.writes)}")

    for failure in failures:
        print(f"FAILED: {failure}")
    print("soak: " + ("FAILED" if failures else "passed"))
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--watchers", type=int, default=3)
    parser.add_argument("--kubeconfig", default=str(REPO / ".testbed" / "kubeconfig"))
    args = parser.parse_args(argv)
    kubeconfig = Path(args.kubeconfig)
    cluster = Cluster(kubeconfig)
    ns = f"soak-{uuid.uuid4().hex[:6]}"
    cluster.create_namespace(ns)
    pods = cluster.gateway.resource_type(cluster.context, "Pod")
    import yaml

    for n in range(EXEC_PODS):
        manifest = yaml.safe_load(TICKER.replace("NAME", f"ticker-{n}"))
        cluster.gateway.create(cluster.context, pods, ns, manifest, dry_run=False)
    os.environ.setdefault("KUBILITICS_LOG_LEVEL", "warning")
    server = LocalServer(kubeconfig)
    try:
        _wait_running(cluster, pods, ns)
        return asyncio.run(soak(args, server, cluster, ns))
    finally:
        server.stop()
        cluster.delete_namespace(ns)


def _wait_running(cluster: Cluster, pods: Any, ns: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phases = [
            (cluster.gateway.get(cluster.context, pods, ns, f"ticker-{n}").get("status") or {}).get("phase")
            for n in range(EXEC_PODS)
        ]
        if phases == ["Running"] * EXEC_PODS:
            return
        time.sleep(0.5)
    raise SystemExit("the ticker pod did not start")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
