"""Security insights: what a pod spec or an RBAC rule lets an attacker do that it need not.

Rules: privileged containers, containers that (may) run as root, hostPath volumes, host namespaces
(network, PID, IPC), containers without any securityContext, the default ServiceAccount with an
automounted token, wildcard RBAC rules, credentials in environment variables (reported by name only,
never by value), images without a pinned tag, and namespaces whose pods no NetworkPolicy covers.
"""

from __future__ import annotations

import re
from typing import Any

from kubilitics.ai.insights.base import (
    Detection,
    Hit,
    RuleSpec,
    ScanPolicy,
    Severity,
    Snapshot,
    WorkloadRef,
    group,
    in_scope,
    representative_pods,
)
from kubilitics.ai.kube_json import labels_of, meta, name_of

CATEGORY = "security"

PRIVILEGED = RuleSpec(
    CATEGORY,
    "privileged_container",
    "{count} privileged container(s) in {where}",
    "Privileged containers have every capability and the host's devices: a compromise of one is a "
    "compromise of its node ({count} in {where}).",
    "Remove privileged mode",
    (
        "Set securityContext.privileged: false on each listed container",
        "Grant only the capabilities the process needs (securityContext.capabilities.add)",
        "Enforce the 'baseline' Pod Security Standard on the namespace "
        "(label pod-security.kubernetes.io/enforce=baseline)",
    ),
    1.0,
    "medium",
    0.25,
)
ROOT = RuleSpec(
    CATEGORY,
    "root_container",
    "{count} container(s) run as root in {where}",
    "These containers run as UID 0 or may do so (no runAsNonRoot and no non-zero runAsUser): a "
    "container escape then starts as root ({count} in {where}).",
    "Run containers as a non-root user",
    (
        "Set securityContext.runAsNonRoot: true and a non-zero runAsUser (pod or container level)",
        "Make sure the image works as that user (file ownership, ports above 1024)",
        "Set allowPrivilegeEscalation: false",
    ),
    1.0,
    "medium",
    0.25,
)
HOST_PATH = RuleSpec(
    CATEGORY,
    "host_path_volume",
    "{count} workload(s) mount host paths in {where}",
    "hostPath volumes expose the node's file system to the pod; a writable one (or one of the "
    "container runtime's sockets) lets the pod take over the node ({count} in {where}).",
    "Replace hostPath volumes",
    (
        "Use a PersistentVolumeClaim, ConfigMap, Secret or emptyDir instead of hostPath",
        "Where host access is unavoidable, mount read-only and as narrow a path as possible",
        "Enforce the 'baseline' Pod Security Standard on the namespace",
    ),
    2.0,
    "medium",
    0.5,
)
HOST_NAMESPACES = RuleSpec(
    CATEGORY,
    "host_network",
    "{count} workload(s) share the host's network, PID or IPC namespace in {where}",
    "With hostNetwork/hostPID/hostIPC a pod sees the node's interfaces, processes or shared memory "
    "and bypasses NetworkPolicies ({count} in {where}).",
    "Stop sharing host namespaces",
    (
        "Remove hostNetwork, hostPID and hostIPC from the pod spec",
        "Expose ports through a Service instead of the host network",
    ),
    1.0,
    "medium",
    0.25,
)
NO_SECURITY_CONTEXT = RuleSpec(
    CATEGORY,
    "no_security_context",
    "{count} container(s) without a securityContext in {where}",
    "Neither the pod nor the container sets a securityContext, so the image's defaults apply (often "
    "root, privilege escalation allowed, every default capability) ({count} in {where}).",
    "Add a restrictive securityContext",
    (
        "Set runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities.drop: [ALL]",
        "Set readOnlyRootFilesystem: true where the application allows it",
        "Set seccompProfile.type: RuntimeDefault",
    ),
    0.5,
    "low",
    0.25,
)
DEFAULT_SA = RuleSpec(
    CATEGORY,
    "default_service_account_token",
    "{count} workload(s) use the default ServiceAccount with an automounted token in {where}",
    "Their pods carry a Kubernetes API token of the namespace's default ServiceAccount; anyone who "
    "gets into the container can use it, and every role bound to 'default' ({count} in {where}).",
    "Disable token automounting or use a dedicated ServiceAccount",
    (
        "Set automountServiceAccountToken: false on the pod spec (or on the default ServiceAccount)",
        "Give workloads that call the API their own ServiceAccount with a minimal Role",
    ),
    0.5,
    "low",
    0.1,
)
WILDCARD_RBAC = RuleSpec(
    CATEGORY,
    "wildcard_rbac",
    "{count} RBAC role(s) with wildcard rules in {where}",
    "Rules with '*' verbs or resources grant everything present and future, including access added "
    "by CRDs installed later ({count} in {where}).",
    "Replace wildcards with explicit verbs and resources",
    (
        "List the verbs and resources each subject needs (kubectl auth can-i --list helps)",
        "Split broad roles into narrow ones and bind them only where needed",
        "Audit who is bound to the listed roles (RoleBindings and ClusterRoleBindings)",
    ),
    2.0,
    "medium",
    0.5,
)
PLAINTEXT_SECRET_ENV = RuleSpec(
    CATEGORY,
    "plaintext_secret_env",
    "{count} credential(s) in plain-text environment variables in {where}",
    "Environment variables whose names say they hold credentials carry a literal value in the pod "
    "spec: anyone who can read the workload can read them ({count} in {where}; names only shown).",
    "Move credentials to Secrets",
    (
        "Create a Secret holding each value",
        "Reference it with valueFrom.secretKeyRef, or better mount it as a file",
        "Rotate the exposed credentials: they are in the object's history",
    ),
    1.0,
    "low",
    0.25,
)
SECRET_ENV = RuleSpec(
    CATEGORY,
    "secret_in_env",
    "{count} Secret value(s) exposed as environment variables in {where}",
    "Secrets passed as environment variables leak into crash dumps, debug output and child "
    "processes; files are safer ({count} in {where}; names only shown).",
    "Mount Secrets as files",
    (
        "Replace env valueFrom.secretKeyRef / envFrom.secretRef with a secret volume",
        "Have the application read the credential from the mounted file",
    ),
    1.0,
    "low",
    0.25,
)
UNPINNED_IMAGE = RuleSpec(
    CATEGORY,
    "unpinned_image",
    "{count} container(s) use an image without a pinned tag in {where}",
    "Images without a tag or tagged 'latest' change under the workload: a restart can run different "
    "code, and a rollback cannot return to what ran before ({count} in {where}).",
    "Pin image versions",
    (
        "Use an explicit version tag (app:1.4.2), or a digest (app@sha256:...)",
        "Set imagePullPolicy: IfNotPresent once the tag is immutable",
    ),
    0.5,
    "low",
    0.1,
)
NO_NETWORK_POLICY = RuleSpec(
    CATEGORY,
    "namespace_without_network_policy",
    "No NetworkPolicy in {where}",
    "No NetworkPolicy selects the pods of {where}: every pod in the cluster can reach them, and they "
    "can reach everything.",
    "Add a default-deny NetworkPolicy",
    (
        "Create a NetworkPolicy with podSelector: {} and policyTypes [Ingress, Egress] (default deny)",
        "Add policies that allow the traffic each workload needs (DNS egress included)",
        "Check that the cluster's network plugin enforces NetworkPolicies",
    ),
    2.0,
    "medium",
)

RULES: tuple[RuleSpec, ...] = (
    PRIVILEGED,
    ROOT,
    HOST_PATH,
    HOST_NAMESPACES,
    NO_SECURITY_CONTEXT,
    DEFAULT_SA,
    WILDCARD_RBAC,
    PLAINTEXT_SECRET_ENV,
    SECRET_ENV,
    UNPINNED_IMAGE,
    NO_NETWORK_POLICY,
)

SENSITIVE_HOST_PATHS = (
    "/",
    "/etc",
    "/root",
    "/proc",
    "/sys",
    "/var/run",
    "/run",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/lib/kubelet",
)
_CREDENTIAL_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL)", re.I
)
# Names that mention a credential without holding one (paths, ids, switches).
_NOT_A_CREDENTIAL = re.compile(r"(_FILE|_PATH|_DIR|_ID|_NAME|_URL|_ENABLED|_TTL|_EXPIRY|_LENGTH)$", re.I)
# The API group of the roles Kubernetes bootstraps itself (cluster-admin, system:*, ...).
BOOTSTRAP_LABEL = "kubernetes.io/bootstrapping"


def detect(snapshot: Snapshot, policy: ScanPolicy) -> list[Detection]:
    hits: dict[str, list[Hit]] = {spec.rule: [] for spec in RULES}
    for ref, pod in representative_pods(snapshot, policy):
        _pod_rules(snapshot, ref, pod, hits)
    _network_policies(snapshot, policy, hits)
    detections: list[Detection] = []
    for spec in RULES:
        if spec is WILDCARD_RBAC:
            continue
        detections += group(spec, hits[spec.rule])
    detections += _wildcard_rbac(snapshot, policy)
    return detections


# ---- pod specs -------------------------------------------------------------------------------------


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _pod_rules(snapshot: Snapshot, ref: WorkloadRef, pod: dict[str, Any], hits: dict[str, list[Hit]]) -> None:
    ns = ref.namespace
    spec = pod.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    workload = str(ref)

    def add(rule: str, resource: str, severity: Severity, detail: str = "") -> None:
        hits[rule].append(Hit(ns, resource, severity, detail))

    for c in _containers(pod):
        where = f"{workload} container {c.get('name')}"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            add("privileged_container", where, "critical", "securityContext.privileged: true")
        if not sc and not pod_sc:
            add("no_security_context", where, "warning")
        else:
            user = sc.get("runAsUser", pod_sc.get("runAsUser"))
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            if user == 0:
                add("root_container", where, "warning", "runAsUser: 0")
            elif non_root is not True and not user:
                add("root_container", where, "warning", "no runAsNonRoot and no non-zero runAsUser")
        image = str(c.get("image") or "")
        if _unpinned(image):
            add("unpinned_image", where, "warning", f"image {image}")
        for env in c.get("env") or []:
            name = str(env.get("name") or "")
            if (env.get("valueFrom") or {}).get("secretKeyRef"):
                add("secret_in_env", where, "info", f"env {name}")
            elif env.get("value") and _CREDENTIAL_NAME.search(name) and not _NOT_A_CREDENTIAL.search(name):
                add("plaintext_secret_env", where, "critical", f"env {name} holds a literal value")
        for source in c.get("envFrom") or []:
            secret = (source.get("secretRef") or {}).get("name")
            if secret:
                add("secret_in_env", where, "info", f"envFrom Secret {secret}")

    for volume in spec.get("volumes") or []:
        path = (volume.get("hostPath") or {}).get("path")
        if path:
            sensitive = path.rstrip("/") in {p.rstrip("/") for p in SENSITIVE_HOST_PATHS} or path == "/"
            add(
                "host_path_volume",
                workload,
                "critical" if sensitive else "warning",
                f"volume {volume.get('name')}: hostPath {path}",
            )
    shared = [flag for flag in ("hostNetwork", "hostPID", "hostIPC") if spec.get(flag)]
    if shared:
        add("host_network", workload, "warning", ", ".join(f"{flag}: true" for flag in shared))
    if _automounts_default_token(snapshot, ns, spec):
        add("default_service_account_token", workload, "warning")


def _unpinned(image: str) -> bool:
    if not image or "@sha256:" in image:
        return False
    last = image.rsplit("/", 1)[-1]
    return ":" not in last or last.rsplit(":", 1)[1] == "latest"


def _automounts_default_token(snapshot: Snapshot, namespace: str | None, spec: dict[str, Any]) -> bool:
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if account != "default":
        return False
    if "automountServiceAccountToken" in spec:
        return bool(spec["automountServiceAccountToken"])
    sa = next(
        (
            s
            for s in snapshot.service_accounts
            if name_of(s) == "default" and meta(s).get("namespace") == namespace
        ),
        None,
    )
    return not (sa and sa.get("automountServiceAccountToken") is False)


def _network_policies(snapshot: Snapshot, policy: ScanPolicy, hits: dict[str, list[Hit]]) -> None:
    covered = {meta(p).get("namespace") for p in snapshot.network_policies}
    with_pods = {meta(p).get("namespace") for p in snapshot.live_pods()}
    for ns in sorted(n for n in with_pods if n and n not in covered and in_scope(snapshot, policy, n)):
        pods = sum(1 for p in snapshot.live_pods() if meta(p).get("namespace") == ns)
        hits["namespace_without_network_policy"].append(
            Hit(ns, f"Namespace/{ns}", "warning", f"{pods} pod(s), no NetworkPolicy")
        )


# ---- RBAC ------------------------------------------------------------------------------------------


def _wildcard_rules(role: dict[str, Any]) -> tuple[Severity, str] | None:
    worst: tuple[Severity, str] | None = None
    for rule in role.get("rules") or []:
        verbs, resources = rule.get("verbs") or [], rule.get("resources") or []
        groups = rule.get("apiGroups") or []
        if "*" in verbs and "*" in resources:
            return "critical", f"verbs * on resources * (apiGroups {','.join(groups) or '-'})"
        if "*" in verbs or "*" in resources:
            worst = worst or (
                "warning",
                f"verbs {','.join(verbs)} on resources {','.join(resources) or '-'}",
            )
    return worst


def _wildcard_rbac(snapshot: Snapshot, policy: ScanPolicy) -> list[Detection]:
    hits = []
    for role in snapshot.roles:
        ns = meta(role).get("namespace")
        found = _wildcard_rules(role)
        if found and in_scope(snapshot, policy, ns):
            hits.append(Hit(ns, f"{ns}/Role/{name_of(role)}", found[0], found[1]))
    detections = group(WILDCARD_RBAC, hits)
    if snapshot.full:
        cluster_hits = []
        for role in snapshot.cluster_roles:
            name = name_of(role)
            # Kubernetes' own roles (cluster-admin, system:*) are wildcards by design.
            if name.startswith("system:") or labels_of(role).get(BOOTSTRAP_LABEL) == "rbac-defaults":
                continue
            found = _wildcard_rules(role)
            if found:
                cluster_hits.append(Hit(None, f"ClusterRole/{name}", found[0], found[1]))
        detections += group(WILDCARD_RBAC, cluster_hits, per_namespace=False)
    return detections
