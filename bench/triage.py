"""A rules-only cluster investigation (ai/cluster_triage.py) of 5,000 pods on 200 nodes (issue 15, item 3).

The cluster is the topology bench's (bench/topology.py: `node_manifest`, `pod_manifest`,
`namespace_objects`, `load`), with a few broken pods added so that the roll-up has something to
find: one node NotReady with its pods, and a crash-looping pod in two namespaces.

- default: the objects served from memory by a stand-in for the Kubernetes port (what the lists
  return, as the API server returns them): the figure is the investigation's own work (lists parsed,
  every node and namespace judged, the suspects gathered, the diagnosis), without network time;
- `--kubeconfig PATH`: against a real cluster, loaded with topology's `load` (labelled namespaces
  and nodes, removed at the end): the figure includes the API server's time.

Prints the gather, analyze and total seconds (median of --runs) against the 10 s target. A figure
printed, not a test: nothing fails on a slow time.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import topology
from bench.topology import REPO, Size

TARGET_SECONDS = 10.0


class MemoryKube:
    """The port's read side over objects held in memory (list, get; field selectors the triage uses)."""

    timeout = 10.0

    def __init__(self, objects: dict[str, list[dict[str, Any]]]):
        self._objects = objects

    def resource_type(self, context: Any, kind: str) -> Any:
        namespaced = kind not in ("Node", "Namespace")
        return type("RType", (), {"kind": kind, "namespaced": namespaced})()

    def list_objects(self, context: Any, rtype: Any, **kw: Any) -> dict[str, Any]:
        items = self._objects.get(rtype.kind, [])
        ns, selector = kw.get("namespace"), kw.get("field_selector") or ""
        if ns:
            items = [i for i in items if i["metadata"].get("namespace") == ns]
        if selector == "type=Warning":
            items = [i for i in items if i.get("type") == "Warning"]
        # what the API server sends: fresh JSON each time (the triage owns what it parses)
        return {"items": copy.deepcopy(items[: kw.get("limit") or None]), "metadata": {}}

    def get(self, context: Any, rtype: Any, namespace: str | None, name: str) -> dict[str, Any]:
        from kubilitics.errors import KubiliticsError

        for item in self._objects.get(rtype.kind, []):
            if item["metadata"]["name"] == name and item["metadata"].get("namespace") == namespace:
                return copy.deepcopy(item)
        raise KubiliticsError(f"{rtype.kind} {name} not found", code="not_found")

    def pod_logs(self, context: Any, namespace: str, name: str, params: dict[str, Any]) -> str:
        return ""


def build(size: Size) -> dict[str, list[dict[str, Any]]]:
    """topology's cluster as the API server would list it, plus the broken bits."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    nodes = [topology.node_manifest(i) for i in range(size.nodes)]
    ready = [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": now},
        *({"type": t, "status": "False"} for t in ("MemoryPressure", "DiskPressure", "PIDPressure")),
    ]
    for node in nodes:
        node["status"]["conditions"] = copy.deepcopy(ready)
    nodes[7]["status"]["conditions"][0].update(status="Unknown", reason="NodeStatusUnknown")
    objects: dict[str, list[dict[str, Any]]] = {"Node": nodes, "Namespace": [], "Pod": []}
    namespaces = [f"bench-topo-{i:03d}" for i in range(size.namespaces)]
    per_namespace = size.pods // size.namespaces
    kinds = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet",
             "cronjobs": "CronJob", "resourcequotas": "ResourceQuota", "services": "Service",
             "networkpolicies": "NetworkPolicy"}  # fmt: skip
    for n_index, ns in enumerate(namespaces):
        objects["Namespace"].append({"kind": "Namespace", "metadata": {"name": ns}})
        for path, body in topology.namespace_objects(ns):
            kind = kinds[path.rsplit("/", 1)[1]]
            extra = {"namespace": ns, "creationTimestamp": now, "uid": f"{ns}-{kind}"}
            body = {**body, "kind": kind, "metadata": {**body["metadata"], **extra}}
            objects.setdefault(kind, []).append(body)
        for n in range(per_namespace):
            index = n_index * per_namespace + n
            node_name = f"bench-node-{index % size.nodes:04d}"
            pod = topology.pod_manifest(index, node_name)
            pod["kind"] = "Pod"
            pod["metadata"].update(namespace=ns, creationTimestamp=now, uid=f"pod-{index}")
            on_dead_node = index % size.nodes == 7
            pod["status"] = {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False" if on_dead_node else "True",
                        "lastTransitionTime": now,
                    }
                ],
                "containerStatuses": [
                    {
                        "name": "main",
                        "ready": not on_dead_node,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            }
            if n == 0 and n_index in (3, 11):  # a crash loop in two namespaces
                pod["status"]["conditions"][0]["status"] = "False"
                pod["status"]["containerStatuses"][0] = {
                    "name": "main", "ready": False, "restartCount": 9,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": now}},
                }  # fmt: skip
            objects["Pod"].append(pod)
    return objects


def measure(kube: Any, context: Any, runs: int) -> list[tuple[float, float, dict[str, Any]]]:
    from kubilitics.ai.cluster_triage import diagnose_cluster, gather_cluster

    out = []
    for _ in range(runs):
        started = time.perf_counter()
        document = gather_cluster(kube, context, 60)
        gathered = time.perf_counter()
        diagnosis = diagnose_cluster(document)
        out.append((gathered - started, time.perf_counter() - gathered, diagnosis))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench triage", description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kubeconfig", type=Path, help="a real cluster (loaded, then unloaded)")
    parser.add_argument("--context")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "shared"))
    size = Size(args.pods, args.nodes, args.namespaces)
    print(
        f"cluster triage, rules only: {size.pods} pods on {size.nodes} nodes in {size.namespaces} namespaces"
    )
    if args.kubeconfig is None:
        where = "in memory (no API server time)"
        results = measure(MemoryKube(build(size)), None, args.runs)
    else:
        from kubilitics.container import get_container

        cluster = topology.Cluster(args.kubeconfig, args.context)
        try:
            print(f"  loaded in {topology.load(cluster, size):.0f} s", flush=True)
            context = cluster.context  # the kubeconfig's own identity (no impersonation)
            results = measure(get_container().kube, context, args.runs)
            where = f"against {context.name}"
        finally:
            topology.unload(cluster)
    gather = statistics.median(r[0] for r in results)
    analyze = statistics.median(r[1] for r in results)
    diagnosis = results[-1][2]
    total = gather + analyze
    verdict = "met" if total <= TARGET_SECONDS else "MISSED"
    print(
        f"  {where}, median of {args.runs}: gather {gather:.2f} s + analyze {analyze:.2f} s = {total:.2f} s"
    )
    print(f"  target <= {TARGET_SECONDS:.0f} s: {verdict}")
    print(f"  root cause: {diagnosis['root_cause']['category']}: {diagnosis['root_cause']['summary'][:160]}")
    print(f"  namespaces ranked: {[n['namespace'] for n in diagnosis['triage']['namespaces']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
