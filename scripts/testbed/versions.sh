# shellcheck shell=bash
# Versions and paths shared by the testbed scripts (sourced, not executed).
# Changing a version here makes build.sh rebuild the affected binaries on next run.

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.8.0}"

# Build cache lives outside the work tree so it survives fresh clones (CI) and is never committed.
TESTBED_CACHE="${KUBILITICS_TESTBED_CACHE:-${HOME:-/root}/.cache/kubilitics-testbed}"
TESTBED_BIN="${TESTBED_CACHE}/bin"
TESTBED_SRC="${TESTBED_CACHE}/src"

# Runtime state (kubeconfig, pids, logs, etcd data) lives in the repo, under the ignored .testbed/.
TESTBED_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TESTBED_REPO="$(cd "${TESTBED_SCRIPTS}/../.." && pwd)"
TESTBED_STATE="${KUBILITICS_TESTBED_STATE:-${TESTBED_REPO}/.testbed}"
TESTBED_CLUSTER="${KUBILITICS_TESTBED_CLUSTER:-kubilitics-testbed}"
TESTBED_CONTEXT="${TESTBED_CLUSTER}"
TESTBED_KUBECONFIG="${TESTBED_STATE}/kubeconfig"

# Never let `go` fetch a different toolchain: only the module proxy is reachable.
export GOTOOLCHAIN=local
export CGO_ENABLED=0

TESTBED_BINARIES=(etcd kwok-testbed kwokctl metrics-server kubectl kube-apiserver kube-controller-manager kube-scheduler)

tb_log() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
tb_die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }
