"""Watch fan-out on the local server (issue 5, "Benchmark"): 100 subscribers, 1,000 object changes.

Starts `kubilitics serve` on free ports against the test cluster, opens 100 WebSocket connections that
each subscribe to the ConfigMaps of one namespace, then makes 1,000 changes there (creates, updates,
deletes, at --rate changes per second from a few writers). Every change is identified by what it did
(`ADDED name`, `MODIFIED name seq`, `DELETED name`), so each subscriber's messages can be checked:
none lost, none twice. Latency is from just before the write request was sent to the moment the client
read the message (an upper bound: it includes the write's own round trip).
Prints figures; exits 1 only if an event was lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TESTBED_KUBECONFIG = REPO / ".testbed" / "kubeconfig"
TARGET_P99_SECONDS = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """`kubilitics serve` in a subprocess (its own moto, its own relay)."""

    def __init__(self, kubeconfig: Path):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBILITICS_", "AWS_"))}
        env["PYTHONPATH"] = str(REPO / "shared")
        self.log = Path(f"/tmp/kubilitics-bench-websocket-{self.port}.log")
        ports = ["--port", str(self.port), "--ai-port", str(free_port()), "--moto-port", str(free_port())]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kubilitics.cli", "serve", *ports, "--kubeconfig", str(kubeconfig),
             "--no-testbed", "--log-level", "warning"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO,
        )  # fmt: skip
        self.token = self._wait_for_token()
        self._wait_for_port()

    def _wait_for_port(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise SystemExit(f"the local server did not listen on {self.port}:\n{self.log.read_text()}")

    def _wait_for_token(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"Development admin token.*\n(\S+)\n", self.log.read_text())
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                raise SystemExit(f"the local server exited:\n{self.log.read_text()}")
            time.sleep(0.2)
        raise SystemExit(f"the local server printed no token:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.unlink(missing_ok=True)


class Cluster:
    """Writes through the product's own Kubernetes gateway (raw JSON over urllib3: cheap per call)."""

    def __init__(self, kubeconfig: Path):
        sys.path.insert(0, str(REPO / "shared"))
        from kubilitics.adapters.kube_rest import KubeRestClients
        from kubilitics.adapters.kubeconfig import KubeconfigSource
        from kubilitics.adapters.kubernetes import KubernetesGateway

        self.context = KubeconfigSource(path=kubeconfig).get().resolve(None)
        self.gateway = KubernetesGateway(KubeRestClients(), 30)
        self.configmaps = self.gateway.resource_type(self.context, "ConfigMap")
        self.namespaces = self.gateway.resource_type(self.context, "Namespace")

    def create_namespace(self, name: str) -> None:
        self.gateway.create(self.context, self.namespaces, None, {"metadata": {"name": name}}, dry_run=False)

    def delete_namespace(self, name: str) -> None:
        self.gateway.delete(self.context, self.namespaces, None, name)

    def apply(self, namespace: str, change: tuple[str, str, int]) -> None:
        kind, name, seq = change
        body = {"metadata": {"name": name, "namespace": namespace}, "data": {"seq": str(seq)}}
        if kind == "ADDED":
            self.gateway.create(self.context, self.configmaps, namespace, body, dry_run=False)
        elif kind == "MODIFIED":
            self.gateway.patch(
                self.context, self.configmaps, namespace, name, {"data": {"seq": str(seq)}}, "merge"
            )
        else:
            self.gateway.delete(self.context, self.configmaps, namespace, name)


def plan(changes: int, objects: int) -> list[list[tuple[str, str, int]]]:
    """Per object: create, updates, delete; `changes` in all, spread over `objects` objects."""
    per_object = max(2, changes // objects)
    lanes = []
    for index in range(objects):
        name = f"bench-{index:04d}"
        steps = [("ADDED", name, 0)] + [("MODIFIED", name, seq) for seq in range(1, per_object - 1)]
        lanes.append([*steps, ("DELETED", name, per_object - 1)])
    return lanes


def key_of(message: dict[str, Any]) -> str:
    resource = message["resource"]
    name = resource["metadata"]["name"]
    if message["type"] == "MODIFIED":
        return f"MODIFIED {name} {resource.get('data', {}).get('seq')}"
    return f"{message['type']} {name}"


def change_key(change: tuple[str, str, int]) -> str:
    kind, name, seq = change
    return f"MODIFIED {name} {seq}" if kind == "MODIFIED" else f"{kind} {name}"


async def subscriber(
    url: str,
    namespace: str,
    expected: int,
    ready: asyncio.Event,
    counts: list[int],
    received: dict[str, list[float]],
    done: asyncio.Event,
    deadline: list[float],
) -> None:
    """One client: subscribe, then record when each change arrives (until all came or time is up)."""
    import websockets

    async with websockets.connect(url, max_size=None, open_timeout=30) as ws:
        await ws.send(
            json.dumps({"action": "subscribe", "resource_kind": "ConfigMap", "namespace": namespace})
        )
        ack = json.loads(await ws.recv())
        assert ack["type"] == "SUBSCRIBED", ack
        counts[0] += 1
        if counts[0] == counts[1]:
            ready.set()
        seen = 0
        while seen < expected:
            left = deadline[0] - time.time()
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=min(1.0, max(0.1, left)))
            except TimeoutError:
                if time.time() >= deadline[0]:
                    break
                continue
            now = time.time()
            message = json.loads(raw)
            if message.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                received.setdefault(key_of(message), []).append(now)
                seen += 1
    counts[2] += 1
    if counts[2] == counts[1]:
        done.set()


def run(args: argparse.Namespace) -> int:
    kubeconfig = Path(args.kubeconfig)
    cluster = Cluster(kubeconfig)
    namespace = f"bench-ws-{uuid.uuid4().hex[:6]}"
    cluster.create_namespace(namespace)
    server = LocalServer(kubeconfig)
    try:
        return asyncio.run(measure(args, cluster, server, namespace))
    finally:
        server.stop()
        cluster.delete_namespace(namespace)


async def measure(args: argparse.Namespace, cluster: Cluster, server: LocalServer, namespace: str) -> int:
    lanes = plan(args.changes, args.objects)
    changes = sum(len(lane) for lane in lanes)
    url = f"ws://127.0.0.1:{server.port}/api/v1/ws?token={server.token}"
    ready, done = asyncio.Event(), asyncio.Event()
    counts = [0, args.subscribers, 0]
    per_client: list[dict[str, list[float]]] = [{} for _ in range(args.subscribers)]
    deadline = [time.time() + 600]
    tasks = [
        asyncio.create_task(subscriber(url, namespace, changes, ready, counts, per_client[i], done, deadline))
        for i in range(args.subscribers)
    ]
    await asyncio.wait_for(ready.wait(), timeout=120)
    print(f"{args.subscribers} subscribers connected; making {changes} changes at ~{args.rate:g}/s")

    sent_at: dict[str, float] = {}  # just before the write request
    committed_at: dict[str, float] = {}  # when the API server answered it (the change is committed)
    writer_done = threading.Event()

    def apply(change: tuple[str, str, int]) -> None:
        cluster.apply(namespace, change)
        committed_at[change_key(change)] = time.time()

    def write() -> None:
        # Objects advance one step at a time, round robin, paced to the target rate.
        interval = 1.0 / args.rate
        steps = [change for round_ in zip(*lanes, strict=True) for change in round_]
        start = time.monotonic()
        with ThreadPoolExecutor(args.writers) as pool:
            futures = []
            for index, change in enumerate(steps):
                delay = start + index * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent_at[change_key(change)] = time.time()
                futures.append(pool.submit(apply, change))
                if index % len(lanes) == len(lanes) - 1:
                    for future in futures:
                        future.result()  # the next step of an object waits for its previous one
                    futures = []
            for future in futures:
                future.result()
        writer_done.set()

    started = time.time()
    await asyncio.to_thread(write)
    wrote = time.time() - started
    deadline[0] = time.time() + args.settle
    await asyncio.wait_for(done.wait(), timeout=args.settle + 30)
    for task in tasks:
        await task

    from_commit, from_request, lost, duplicated = [], [], 0, 0
    for received in per_client:
        for key, at in sent_at.items():
            times = received.get(key, [])
            if not times:
                lost += 1
                continue
            duplicated += len(times) - 1
            from_request.append(times[0] - at)
            # The API server may push the event before its answer to the writer arrives: 0 then.
            from_commit.append(max(0.0, times[0] - committed_at[key]))
        duplicated += sum(len(v) for k, v in received.items() if k not in sent_at)
    expected = changes * args.subscribers
    write_ms = statistics.median((committed_at[k] - sent_at[k]) * 1000 for k in sent_at)
    print(f"changes written: {changes} in {wrote:.1f} s ({changes / wrote:.0f}/s), {args.writers} writers")
    print(f"messages expected: {expected}, delivered: {len(from_commit)}, lost: {lost}, dup: {duplicated}")
    p50, p99, worst = (percentile(from_commit, f) * 1000 for f in (0.5, 0.99, 1.0))
    verdict = "met" if p99 <= TARGET_P99_SECONDS * 1000 else "NOT met"
    print(
        f"event-to-client latency, from the write's commit: median {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"max {worst:.0f} ms (target p99 <= {TARGET_P99_SECONDS * 1000:.0f} ms: {verdict})"
    )
    r50, r99 = (percentile(from_request, f) * 1000 for f in (0.5, 0.99))
    print(
        f"  from just before the write request: median {r50:.0f} ms, p99 {r99:.0f} ms "
        f"(the write's own round trip: median {write_ms:.0f} ms)"
    )
    return 0 if lost == 0 and duplicated == 0 else 1


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[round(fraction * (len(ordered) - 1))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench websocket", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--objects", type=int, default=100, help="objects the changes are spread over")
    parser.add_argument("--rate", type=float, default=100.0, help="changes per second")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds to wait for the last events")
    parser.add_argument("--kubeconfig", default=str(TESTBED_KUBECONFIG))
    args = parser.parse_args(argv)
    if not Path(args.kubeconfig).exists():
        print(
            f"no kubeconfig at {args.kubeconfig}: start the test cluster (make testbed-up)", file=sys.stderr
        )
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
