#!/usr/bin/env bash
# Start the testbed cluster (or reuse a running one) and write <repo>/.testbed/kubeconfig.
#
# A real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# metrics-server) run by `kwokctl --runtime binary` from binaries built by build.sh, with
# simulated nodes served by kwok. Everything binds to 127.0.0.1; nothing is downloaded.
# Idempotent: if the cluster answers, it is reused. Safe without stdin (CI=true).
set -euo pipefail

# shellcheck source=versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

# kwokctl keeps each cluster (pids, certs, logs, etcd data) under $KWOK_WORKDIR/clusters/<name>.
export KWOK_WORKDIR="${TESTBED_STATE}/kwok"
# kwokctl adds its context to $KUBECONFIG (default ~/.kube/config); keep the user's file untouched.
export KUBECONFIG="${TESTBED_STATE}/kwokctl-kubeconfig"
CLUSTER_DIR="${KWOK_WORKDIR}/clusters/${TESTBED_CLUSTER}"
KWOKCTL="${TESTBED_BIN}/kwokctl"
KUBECTL="${TESTBED_BIN}/kubectl"
WAIT_TIMEOUT="${KUBILITICS_TESTBED_TIMEOUT:-180}"
# Who plays the kubelet for pods: "nodesim" (scripts/testbed/nodesim.py: image registry catalog,
# realistic failures) or "kwok" (kwok's fast stages: every pod Running at once; for huge loads).
PODS_MODE="${KUBILITICS_TESTBED_PODS:-nodesim}"
RUN_DIR="${TESTBED_STATE}/run"

kc() { "${KUBECTL}" --kubeconfig "${TESTBED_KUBECONFIG}" --context "${TESTBED_CONTEXT}" "$@"; }

# The cluster "answers" when /readyz says ok through our kubeconfig.
answers() {
  [[ -s "${TESTBED_KUBECONFIG}" && -x "${KUBECTL}" ]] &&
    [[ "$(kc get --raw /readyz --request-timeout=5s 2>/dev/null)" == "ok" ]]
}

# wait_for DESCRIPTION SECONDS command...: poll until the command succeeds.
wait_for() {
  local what=$1 limit=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 < limit)) || tb_die "step '$what': not done after ${limit}s (logs: ${CLUSTER_DIR}/logs)"
    sleep 1
  done
  tb_log "$what: ok ($((SECONDS - t0))s)"
}

# Export an admin kubeconfig with a stable context name, certs embedded so it can be copied.
write_kubeconfig() {
  local tmp
  tmp="$(mktemp "${TESTBED_STATE}/kubeconfig.XXXXXX")"
  "${KWOKCTL}" get kubeconfig --name "${TESTBED_CLUSTER}" >"${tmp}.raw"
  "${KUBECTL}" --kubeconfig "${tmp}.raw" config view --flatten --raw >"${tmp}"
  rm -f "${tmp}.raw"
  local ctx
  ctx="$("${KUBECTL}" --kubeconfig "${tmp}" config current-context)"
  if [[ "$ctx" != "${TESTBED_CONTEXT}" ]]; then
    "${KUBECTL}" --kubeconfig "${tmp}" config rename-context "$ctx" "${TESTBED_CONTEXT}" >/dev/null
  fi
  chmod 600 "${tmp}"
  mv "${tmp}" "${TESTBED_KUBECONFIG}"
}

# RBAC: the service's roles as shipped, and the test users' binding (impersonate mode).
apply_rbac() {
  kc apply -f "${TESTBED_SCRIPTS}/../../deploy/rbac/kubilitics-service.yaml" >/dev/null
  kc apply -f "${TESTBED_SCRIPTS}/manifests/rbac-test-users.yaml" >/dev/null
}

# Objects every cluster gets: nodes and the kwok behaviour CRs (exec, logs, usage).
seed_cluster() {
  kc apply -f "${TESTBED_SCRIPTS}/manifests/nodes.yaml" >/dev/null
  apply_rbac
  # exec goes through simexec.py, started by a launcher that names the interpreter (kwok runs the
  # wrapper directly; the path in the ClusterExec may not contain arguments).
  local launcher="${RUN_DIR}/simexec"
  mkdir -p "${RUN_DIR}"
  printf '#!/bin/sh\nexec %q %q "$@"\n' "$(nodesim_python)" "${TESTBED_SCRIPTS}/simexec.py" >"${launcher}"
  chmod 755 "${launcher}"
  local esc_launcher esc_state
  esc_launcher="$(printf '%s' "${launcher}" | sed 's/[&|\\]/\\&/g')"
  esc_state="$(printf '%s' "${TESTBED_STATE}" | sed 's/[&|\\]/\\&/g')"
  sed -e "s|@EXEC_WRAPPER@|${esc_launcher}|" -e "s|@TESTBED_STATE@|${esc_state}|" \
    "${TESTBED_SCRIPTS}/manifests/kwok-defaults.yaml" | kc apply -f - >/dev/null
}

# Python with the kubernetes client for nodesim: $KUBILITICS_TESTBED_PYTHON, else a venv kept in
# the build cache (outside the work tree), made once from PyPI.
nodesim_python() {
  if [[ -n "${KUBILITICS_TESTBED_PYTHON:-}" ]]; then echo "${KUBILITICS_TESTBED_PYTHON}"; return; fi
  local venv="${TESTBED_CACHE}/venv"
  if ! "${venv}/bin/python" -c 'import kubernetes, yaml' 2>/dev/null; then
    tb_log "creating ${venv} for nodesim (kubernetes client, pyyaml)"
    python3 -m venv "${venv}" >&2 || tb_die "step 'nodesim venv': python3 -m venv failed (install python3-venv)"
    "${venv}/bin/pip" install -q "kubernetes==37.0.1" "pyyaml>=6" >&2 ||
      tb_die "step 'nodesim venv': pip install kubernetes pyyaml failed"
  fi
  echo "${venv}/bin/python"
}

# Start nodesim (the kubelet stand-in) unless it is already running for this cluster.
ensure_nodesim() {
  [[ "${PODS_MODE}" == "nodesim" ]] || return 0
  mkdir -p "${RUN_DIR}" "${TESTBED_STATE}/logs"
  local pidfile="${RUN_DIR}/nodesim.pid" py
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    return 0
  fi
  py="$(nodesim_python)"
  # setsid + nohup: it must outlive this script (and the CI step that ran it).
  setsid nohup "$py" "${TESTBED_SCRIPTS}/nodesim.py" --kubeconfig "${TESTBED_KUBECONFIG}" \
    --context "${TESTBED_CONTEXT}" --state "${TESTBED_STATE}" \
    >>"${TESTBED_STATE}/logs/nodesim.log" 2>&1 </dev/null 8>&- &
  echo $! >"$pidfile"
  sleep 1
  kill -0 "$(cat "$pidfile")" 2>/dev/null ||
    tb_die "step 'start nodesim': it exited at once; see ${TESTBED_STATE}/logs/nodesim.log"
  tb_log "nodesim started (pid $(cat "$pidfile"), log ${TESTBED_STATE}/logs/nodesim.log)"
}

# metrics-server exits at once when it starts before the API server answers, which happens when
# kwokctl restarts a stopped cluster (every component at once). `kwokctl start cluster` on a running
# cluster starts only the components that are not running: run it again once the API answers.
ensure_metrics() {
  local metrics=(kc wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io)
  "${metrics[@]}" --timeout=20s >/dev/null 2>&1 && return 0
  tb_log "metrics.k8s.io is not available; starting the components that are not running"
  "${KWOKCTL}" start cluster --name "${TESTBED_CLUSTER}" --timeout 60s </dev/null >/dev/null 2>&1 8>&- || true
  wait_for "metrics.k8s.io available" "${WAIT_TIMEOUT}" "${metrics[@]}" --timeout=5s
}

T0=$SECONDS
mkdir -p "${TESTBED_STATE}" "${TESTBED_CACHE}"
# One up.sh at a time (pytest sessions and make may start it together). Every long-lived
# process started below gets `8>&-`, or it would inherit the lock and hold it forever.
exec 8>"${TESTBED_CACHE}/up-$(printf %s "${TESTBED_STATE}" | cksum | cut -d" " -f1).lock"
if command -v flock >/dev/null; then
  flock -w 900 8 || tb_die "step 'lock': another up.sh for ${TESTBED_STATE} held its lock for 15 minutes"
fi

if answers; then
  ensure_nodesim
  ensure_metrics
  apply_rbac
  grep -q "kwok-testbed" "${CLUSTER_DIR}/kwok.yaml" 2>/dev/null ||
    tb_log "WARNING: this cluster was made by an older up.sh: its kwok runs exec commands on this machine; recreate it (down.sh, then up.sh)"
  tb_log "cluster ${TESTBED_CLUSTER} already running; reusing it (kubeconfig: ${TESTBED_KUBECONFIG})"
  exit 0
fi

"${TESTBED_SCRIPTS}/build.sh"

# A cluster that exists but does not answer (machine restarted, processes killed): try to
# start it again; if that fails, throw it away and create a fresh one.
if [[ -d "${CLUSTER_DIR}" ]]; then
  tb_log "cluster ${TESTBED_CLUSTER} exists but does not answer; restarting it"
  if "${KWOKCTL}" start cluster --name "${TESTBED_CLUSTER}" --timeout 90s --wait 60s 8>&- &&
    write_kubeconfig && answers; then
    seed_cluster
    ensure_nodesim
    ensure_metrics
    tb_log "cluster restarted in $((SECONDS - T0))s; kubeconfig: ${TESTBED_KUBECONFIG} (context ${TESTBED_CONTEXT})"
    exit 0
  fi
  tb_log "restart failed; deleting the old cluster state"
  "${KWOKCTL}" delete cluster --name "${TESTBED_CLUSTER}" >/dev/null 2>&1 || true
  rm -rf "${CLUSTER_DIR}"
fi

# kwokctl config: every binary by path (so it downloads nothing), loopback only, local
# metrics-server manifest; kwok gets 127.0.0.1 as the node IP of every simulated node.
CONFIG="${TESTBED_STATE}/kwokctl.yaml"
mkdir -p "${TESTBED_STATE}/exec" "${TESTBED_STATE}/logs" "${KWOK_WORKDIR}/cache"
cat >"${CONFIG}" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeVersion: ${KUBE_VERSION}
  kwokVersion: ${KWOK_VERSION}
  etcdVersion: ${ETCD_VERSION}
  metricsServerVersion: ${METRICS_SERVER_VERSION}
  cacheDir: ${KWOK_WORKDIR}/cache
  etcdBinary: ${TESTBED_BIN}/etcd
  kubeApiserverBinary: ${TESTBED_BIN}/kube-apiserver
  kubeControllerManagerBinary: ${TESTBED_BIN}/kube-controller-manager
  kubeSchedulerBinary: ${TESTBED_BIN}/kube-scheduler
  kubectlBinary: ${TESTBED_BIN}/kubectl
  kwokControllerBinary: ${TESTBED_BIN}/kwok-testbed
  metricsServerBinary: ${TESTBED_BIN}/metrics-server
  metricsServerManifests:
  - ${TESTBED_SCRIPTS}/manifests/metrics-server
  enable:
  - metrics-server
  # Behaviour objects are CRs, so tests and the harness can add per-pod logs/exec/usage at run time.
  enableCRDs: [Logs, ClusterLogs, Exec, ClusterExec, ResourceUsage, ClusterResourceUsage, Attach, ClusterAttach, PortForward, ClusterPortForward]
  # A node whose kwok stops heartbeating turns NotReady within ~20s (upstream default 50s).
  # kwokctl multiplies every heartbeat setting by heartbeatFactor (default 5: grace 1m40s, lease
  # 200s), so it is pinned to 1. A 20s lease is renewed every 5s (kwok renews at 1/4 of it): four
  # renewals per grace period, so a loaded machine does not make healthy nodes flap NotReady.
  heartbeatFactor: 1
  kubeControllerManagerNodeMonitorGracePeriodMilliseconds: 20000
  kubeControllerManagerNodeMonitorPeriodMilliseconds: 5000
  nodeLeaseDurationSeconds: 20
componentsPatches:
# Compact etcd every minute (upstream default 5m) so a watch from an old resourceVersion gets
# 410 Gone soon, as clients must handle on long-running clusters.
- name: kube-apiserver
  extraArgs:
  - key: etcd-compaction-interval
    value: 1m
- name: kwok-controller
  extraArgs:
  - key: node-ip
    value: 127.0.0.1
  # Pod IPs are only status data here: nothing is ever routed to them.
  - key: cidr
    value: 10.244.0.0/16
EOF
if [[ "${PODS_MODE}" == "nodesim" ]]; then
  # Only node stages: any stage given replaces kwok's defaults, so kwok leaves pods to nodesim.
  # A stage of the same name in scripts/testbed/kwok-stages replaces kwok's (the heartbeat keeps
  # the pressure conditions nodesim's eviction manager writes).
  for stage in "${TESTBED_CACHE}"/kwok-stages/*.yaml; do
    own="${TESTBED_SCRIPTS}/kwok-stages/$(basename "$stage")"
    [[ -f "$own" ]] && stage="$own"
    printf -- '---\n' >>"${CONFIG}"
    cat "$stage" >>"${CONFIG}"
  done
  # A pod stage that matches no pod: without any pod stage kwok stops consuming pod events and
  # its pod cache (needed for logs and metrics) stays empty.
  cat >>"${CONFIG}" <<'EOF'
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-left-to-nodesim
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.name'
      operator: 'In'
      values: ['']
  next:
    statusTemplate: '{}'
EOF
fi

tb_log "creating cluster ${TESTBED_CLUSTER} (kubernetes ${KUBE_VERSION}, kwok ${KWOK_VERSION}) ..."
if ! "${KWOKCTL}" --config "${CONFIG}" create cluster --name "${TESTBED_CLUSTER}" \
  --timeout "${WAIT_TIMEOUT}s" --wait "${WAIT_TIMEOUT}s" </dev/null 8>&-; then
  tb_die "step 'kwokctl create cluster' failed; component logs are in ${CLUSTER_DIR}/logs"
fi

write_kubeconfig
wait_for "api server ready" "${WAIT_TIMEOUT}" answers
seed_cluster
ensure_nodesim
wait_for "nodes Ready" "${WAIT_TIMEOUT}" kc wait --for=condition=Ready node --all --timeout=5s
wait_for "default service account" "${WAIT_TIMEOUT}" kc get serviceaccount default -n default
wait_for "metrics.k8s.io available" "${WAIT_TIMEOUT}" \
  kc wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=5s

tb_log "cluster ready in $((SECONDS - T0))s; kubeconfig: ${TESTBED_KUBECONFIG} (context ${TESTBED_CONTEXT})"
