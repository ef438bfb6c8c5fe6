"""The root-cause taxonomy (../shared/scenarios/README.md): every category an investigation may name.

`PRECEDENCE` orders the categories from the most fundamental cause to the most generic symptom. When
several findings hold at once, the earlier category explains the later ones: a node that is down
explains pods that are not ready; a missing ConfigMap or an exhausted quota explains a rollout that
does not finish; an OOM kill explains a restart loop.
"""

from __future__ import annotations

from typing import Literal

Severity = Literal["critical", "high", "medium", "low"]
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}

HEALTHY = "healthy"
UNKNOWN = "unknown"

# category -> what a user sees (one line, for summaries and the LLM prompt)
CATEGORIES: dict[str, str] = {
    "app_crash": "the application exits with an error and restarts (CrashLoopBackOff)",
    "oom_killed": "the container is killed for using more memory than its limit (OOMKilled, exit 137)",
    "image_not_found": "the image or tag does not exist in the registry",
    "image_pull_auth": "the registry refuses the pull without credentials",
    "invalid_image_name": "the image reference cannot be parsed",
    "image_never_pull": "imagePullPolicy Never and the image is not on the node",
    "missing_configmap": "a referenced ConfigMap does not exist",
    "missing_configmap_key": "a referenced key is missing from a ConfigMap",
    "missing_secret": "a referenced Secret does not exist",
    "missing_secret_key": "a referenced key is missing from a Secret",
    "command_not_found": "the container command is not in the image",
    "exec_format_error": "the image is built for another CPU architecture",
    "init_container_failure": "an init container fails, so the pod never starts",
    "insufficient_cpu": "no node has enough free CPU for the pod's requests",
    "insufficient_memory": "no node has enough free memory for the pod's requests",
    "node_selector_mismatch": "no node matches the pod's node selector or affinity",
    "untolerated_taint": "the nodes carry taints the pod does not tolerate",
    "unbound_pvc": "a PersistentVolumeClaim the pod needs is not bound",
    "readiness_probe_failure": "the readiness probe fails, so the pod never receives traffic",
    "liveness_probe_failure": "the liveness probe fails and the kubelet restarts the container",
    "service_selector_mismatch": "the Service selector matches no pod",
    "service_port_mismatch": "the Service targetPort is not a port the pods serve",
    "node_not_ready": "the node the pods run on (or must run on) is not ready",
    "eviction_pressure": "pods are evicted because the node runs out of memory or disk",
    "quota_exceeded": "a ResourceQuota forbids creating the pods",
    "job_backoff_limit": "the Job failed: its pods failed more often than backoffLimit",
    "job_deadline_exceeded": "the Job ran longer than activeDeadlineSeconds",
    "rollout_stuck": "the Deployment rollout exceeded its progress deadline",
    "hpa_missing_requests": "the HPA cannot compute utilization: containers lack resource requests",
    "rbac_forbidden": "the application is refused by the Kubernetes API (RBAC)",
    "certificate_expired": "a TLS certificate the application uses has expired",
    "dns_failure": "the application cannot resolve a host name",
    # Beyond the shared taxonomy: causes a running application names in its log (issue 15).
    "disk_full": "the application runs out of disk space (no space left on device)",
    "connection_refused": "a service the application calls refuses its connections",
    "dependency_timeout": "a service the application calls does not answer in time",
    "apiserver_not_ready": "the Kubernetes API server fails its own readiness checks (/readyz)",
    HEALTHY: "nothing is wrong",
    UNKNOWN: "the evidence does not support a cause",
}

PRECEDENCE: tuple[str, ...] = (
    "apiserver_not_ready",
    "node_not_ready",
    "eviction_pressure",
    "quota_exceeded",
    "unbound_pvc",
    "missing_configmap",
    "missing_configmap_key",
    "missing_secret",
    "missing_secret_key",
    "image_pull_auth",
    "image_not_found",
    "invalid_image_name",
    "image_never_pull",
    "insufficient_cpu",
    "insufficient_memory",
    "node_selector_mismatch",
    "untolerated_taint",
    "init_container_failure",
    "command_not_found",
    "exec_format_error",
    "oom_killed",
    "rbac_forbidden",
    "certificate_expired",
    "dns_failure",
    "disk_full",
    "connection_refused",
    "dependency_timeout",
    "liveness_probe_failure",
    "job_deadline_exceeded",
    "job_backoff_limit",
    "app_crash",
    "readiness_probe_failure",
    "service_selector_mismatch",
    "service_port_mismatch",
    "hpa_missing_requests",
    "rollout_stuck",
)

assert set(PRECEDENCE) == set(CATEGORIES) - {HEALTHY, UNKNOWN}, "every category needs a precedence"

# Categories the cluster triage names from what the cluster reports about itself, not an analyzer
# from a workload's evidence (ai/cluster_triage.py).
CLUSTER_CATEGORIES = frozenset({"apiserver_not_ready"})


def precedence(category: str) -> int:
    """Lower is more fundamental; unknown categories sort last."""
    try:
        return PRECEDENCE.index(category)
    except ValueError:
        return len(PRECEDENCE)
