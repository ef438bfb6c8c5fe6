#!/usr/bin/env bash
# Stop the testbed cluster and remove its runtime state (<repo>/.testbed).
# The build cache (binaries) is kept. Usage: scripts/testbed/down.sh [--keep-state]
#   --keep-state  only stop the processes; `up.sh` can then restart the same cluster and data.
set -euo pipefail

# shellcheck source=versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

export KWOK_WORKDIR="${TESTBED_STATE}/kwok"
export KUBECONFIG="${TESTBED_STATE}/kwokctl-kubeconfig"  # as in up.sh: never the user's file
# Do not tear down while an up.sh is starting the cluster.
mkdir -p "${TESTBED_CACHE}"
exec 8>"${TESTBED_CACHE}/up-$(printf %s "${TESTBED_STATE}" | cksum | cut -d" " -f1).lock"
command -v flock >/dev/null && flock -w 300 8
CLUSTER_DIR="${KWOK_WORKDIR}/clusters/${TESTBED_CLUSTER}"
KWOKCTL="${TESTBED_BIN}/kwokctl"

# Stop anything the harness started next to the cluster (e.g. the node simulator).
for pidfile in "${TESTBED_STATE}"/run/*.pid; do
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    tb_log "stopping $(basename "$pidfile" .pid) (pid $pid)"
    kill "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done

if [[ ! -d "${CLUSTER_DIR}" ]]; then
  tb_log "no cluster ${TESTBED_CLUSTER} under ${KWOK_WORKDIR}; nothing to stop"
elif [[ "${1:-}" == "--keep-state" ]]; then
  [[ -x "${KWOKCTL}" ]] || tb_die "step 'stop cluster': ${KWOKCTL} is missing"
  "${KWOKCTL}" stop cluster --name "${TESTBED_CLUSTER}"
  tb_log "cluster ${TESTBED_CLUSTER} stopped (state kept in ${CLUSTER_DIR})"
  exit 0
else
  if [[ -x "${KWOKCTL}" ]]; then
    "${KWOKCTL}" delete cluster --name "${TESTBED_CLUSTER}" || tb_log "kwokctl delete failed; killing by pid files"
  fi
  # Belt and braces: kill any component whose pid file kwokctl left behind.
  for pidfile in "${CLUSTER_DIR}"/pids/*.pid; do
    [[ -f "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done
  tb_log "cluster ${TESTBED_CLUSTER} deleted"
fi

# Refuse to delete anything that is obviously not our state folder.
case "${TESTBED_STATE}" in
  / | "${HOME:-/root}" | "${TESTBED_REPO}") tb_die "refusing to remove ${TESTBED_STATE}" ;;
esac
rm -rf "${TESTBED_STATE}"
tb_log "removed ${TESTBED_STATE}"
