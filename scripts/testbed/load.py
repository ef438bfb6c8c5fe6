#!/usr/bin/env python3
"""Load the testbed with N extra nodes and M pods, for benchmarks; or remove that load.

  python scripts/testbed/load.py --nodes 50 --pods 2000          # add, wait until Running
  python scripts/testbed/load.py --delete                         # remove what it added

Nodes are kwok nodes like the default ones (no addresses: loopback only), labelled
kubilitics.testbed/load=true. Pods come from Deployments in namespace `load` (--namespace),
spread over the nodes by the real scheduler, running nginx/redis/busybox images from the
simulated registry; so every pod is a real API object with status, events, logs and metrics.
Prints how long creation and the roll-out took.

Uses the cluster of <repo>/.testbed/kubeconfig (start it with scripts/testbed/up.sh).
Needs the `kubernetes` Python client (the venv up.sh makes: ~/.cache/kubilitics-testbed/venv).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

REPO = Path(__file__).resolve().parents[2]
LABEL = "kubilitics.testbed/load"
IMAGES = ["nginx:1.27", "redis:7.4", "registry.k8s.io/pause:3.10"]


def node_manifest(name: str, cpu: str, memory: str, pods: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {LABEL: "true", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "type": "kwok"},
            "annotations": {"metrics.k8s.io/resource-metrics-path": f"/metrics/nodes/{name}/metrics/resource"},
        },
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "v1.34.4",
                         "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0-28-amd64",
                         "containerRuntimeVersion": "containerd://1.7.24", "kubeProxyVersion": "",
                         "bootID": "", "machineID": "", "systemUUID": ""},
        },
    }


def deployment(name: str, replicas: int, image: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {LABEL: "true", "app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, LABEL: "true"}},
                "spec": {"containers": [{"name": "app", "image": image,
                                         "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
            },
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10, help="extra nodes to add (default 10)")
    ap.add_argument("--pods", type=int, default=200, help="pods to run (default 200)")
    ap.add_argument("--per-deployment", type=int, default=100, help="replicas per Deployment (default 100)")
    ap.add_argument("--namespace", default="load")
    ap.add_argument("--node-pods", default="250", help="pod capacity of each added node")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for Running")
    ap.add_argument("--no-wait", action="store_true")
    ap.add_argument("--delete", action="store_true", help="remove the load (namespace and nodes)")
    ap.add_argument("--kubeconfig", default=str(REPO / ".testbed" / "kubeconfig"))
    ap.add_argument("--context", default="kubilitics-testbed")
    args = ap.parse_args()

    api = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
    v1, apps = client.CoreV1Api(api), client.AppsV1Api(api)

    if args.delete:
        try:
            v1.delete_namespace(args.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
        v1.delete_collection_node(label_selector=f"{LABEL}=true", _preload_content=False)
        print(f"deleted namespace {args.namespace} and nodes labelled {LABEL}=true")
        return 0

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        def add_node(i: int) -> None:
            try:
                v1.create_node(node_manifest(f"load-node-{i}", "32", "128Gi", args.node_pods), _preload_content=False)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        list(pool.map(add_node, range(1, args.nodes + 1)))
    print(f"{args.nodes} nodes created in {time.monotonic() - t0:.1f}s")

    try:
        v1.create_namespace({"metadata": {"name": args.namespace, "labels": {LABEL: "true"}}}, _preload_content=False)
    except ApiException as exc:
        if exc.status != 409:
            raise
    t1 = time.monotonic()
    remaining, n = args.pods, 0
    while remaining > 0:
        replicas = min(args.per_deployment, remaining)
        n += 1
        try:
            apps.create_namespaced_deployment(args.namespace, deployment(f"load-{n}", replicas, IMAGES[n % len(IMAGES)]),
                                             _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise
        remaining -= replicas
    print(f"{n} deployments ({args.pods} pods) created in {time.monotonic() - t1:.1f}s")
    if args.no_wait:
        return 0

    last = -1
    while time.monotonic() - t1 < args.timeout:
        # Raw JSON: the generated models are slow and strict for thousands of pods.
        resp = v1.list_namespaced_pod(args.namespace, label_selector=f"{LABEL}=true",
                                      field_selector="status.phase=Running", _preload_content=False,
                                      _request_timeout=120)
        running = len(json.loads(resp.data)["items"])
        if running != last:
            print(f"  {running}/{args.pods} Running after {time.monotonic() - t1:.0f}s", flush=True)
            last = running
        if running >= args.pods:
            print(f"all {args.pods} pods Running in {time.monotonic() - t1:.1f}s")
            return 0
        time.sleep(3)
    print(f"timeout: {last}/{args.pods} Running after {args.timeout:.0f}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
