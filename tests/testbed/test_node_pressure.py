"""Node-pressure eviction as a user sees it, arising only from what the manifests say.

A small node (2Gi, 1536Mi allocatable) and two pods that request 64Mi but keep 900M allocated
(`stress --vm 1 --vm-bytes 900M`, no limit): together they pass allocatable, memory.available
falls below the kubelet's hard threshold (100Mi), and nodesim's eviction manager reports
MemoryPressure and evicts the pod using most above its request. The memory-pressure taint comes
from the real node lifecycle controller, the replacement pod from the real ReplicaSet controller.
"""

from __future__ import annotations

import json
import re

from kubilitics_testbed_cluster import TestbedCluster, wait_until  # loaded by conftest

EVICTION_MESSAGE = re.compile(
    r"The node was low on resource: memory\. Threshold quantity: 100Mi, available: -?\d+(Ki|Mi)\. "
    r"Container resizer was using \d+(Ki|Mi), request is 64Mi, has larger consumption of memory\. $"
)


def manifests(node: str) -> str:
    return f"""
apiVersion: v1
kind: Node
metadata:
  name: {node}
  labels: {{kubernetes.io/hostname: {node}, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}}
spec:
  taints: [{{key: dedicated, value: media, effect: NoSchedule}}]
status:
  allocatable: {{cpu: "2", memory: 1536Mi, pods: "110"}}
  capacity: {{cpu: "2", memory: 2Gi, pods: "110"}}
  nodeInfo: {{architecture: amd64, operatingSystem: linux, kubeletVersion: v1.34.4,
             containerRuntimeVersion: "containerd://1.7.24"}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: resizer
spec:
  replicas: 2
  selector: {{matchLabels: {{app: resizer}}}}
  template:
    metadata: {{labels: {{app: resizer}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      tolerations: [{{key: dedicated, operator: Equal, value: media, effect: NoSchedule}}]
      containers:
        - name: resizer
          image: polinux/stress
          args: ["--vm", "1", "--vm-bytes", "900M", "--vm-hang", "0"]
          resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}
"""


def get_json(cluster: TestbedCluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def condition(obj: dict, ctype: str) -> dict:
    return next((c for c in obj["status"].get("conditions") or [] if c["type"] == ctype), {})


def test_memory_pressure_evicts_pod_over_its_request(k8s_cluster: TestbedCluster, k8s_namespace: str) -> None:
    ns, node = k8s_namespace, f"{k8s_namespace}-small"
    k8s_cluster.kubectl("-n", ns, "apply", "-f", "-", input=manifests(node))
    try:

        def evicted() -> list[dict]:
            pods = get_json(k8s_cluster, "-n", ns, "pods", "-l", "app=resizer")["items"]
            return [p for p in pods if p["status"].get("reason") == "Evicted"]

        pod = wait_until(evicted, timeout=90, interval=1, what="an Evicted pod")[0]
        st = pod["status"]
        assert st["phase"] == "Failed"
        assert EVICTION_MESSAGE.fullmatch(st["message"]), st["message"]
        target = condition(pod, "DisruptionTarget")
        assert target["status"] == "True" and target["reason"] == "TerminationByKubelet"
        term = st["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == 143 and st["containerStatuses"][0]["ready"] is False

        events = get_json(
            k8s_cluster,
            "-n",
            ns,
            "events",
            "--field-selector",
            f"involvedObject.name={pod['metadata']['name']}",
        )["items"]
        ev = next(e for e in events if e["reason"] == "Evicted")
        assert ev["type"] == "Warning" and ev["source"]["component"] == "kubelet"
        assert ev["message"] == st["message"]

        # The node reports the pressure; the node lifecycle controller taints it.
        n = get_json(k8s_cluster, "node", node)
        pressure = condition(n, "MemoryPressure")
        assert pressure["status"] == "True" and pressure["reason"] == "KubeletHasInsufficientMemory"
        assert pressure["message"] == "kubelet has insufficient memory available"
        wait_until(
            lambda: any(
                t["key"] == "node.kubernetes.io/memory-pressure" and t["effect"] == "NoSchedule"
                for t in get_json(k8s_cluster, "node", node)["spec"].get("taints") or []
            ),
            timeout=30,
            what="memory-pressure taint",
        )
        node_events = get_json(
            k8s_cluster, "-n", "default", "events", "--field-selector", f"involvedObject.name={node}"
        )["items"]
        assert any(
            e["reason"] == "EvictionThresholdMet" and e["message"] == "Attempting to reclaim memory"
            for e in node_events
        )
        # The ReplicaSet replaces the evicted pod (it may land and be evicted again, as for real).
        wait_until(
            lambda: len(get_json(k8s_cluster, "-n", ns, "pods", "-l", "app=resizer")["items"]) >= 3,
            timeout=30,
            what="a replacement pod",
        )

        # Without the workload the node recovers once the pressure transition period is over.
        k8s_cluster.kubectl("-n", ns, "scale", "deployment/resizer", "--replicas=0")
        wait_until(
            lambda: (
                condition(get_json(k8s_cluster, "node", node), "MemoryPressure").get("reason")
                == "KubeletHasSufficientMemory"
            ),
            timeout=120,
            interval=2,
            what="MemoryPressure=False",
        )
        wait_until(
            lambda: (
                not any(
                    t["key"] == "node.kubernetes.io/memory-pressure"
                    for t in get_json(k8s_cluster, "node", node)["spec"].get("taints") or []
                )
            ),
            timeout=30,
            what="memory-pressure taint removed",
        )
    finally:
        k8s_cluster.kubectl("delete", "node", node, "--ignore-not-found", "--wait=false", check=False)
