#!/usr/bin/env bash
# Build the testbed binaries from Go modules, only those that are missing or stale.
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
#   kwok, kwokctl, metrics-server  ->  ${KUBILITICS_TESTBED_CACHE:-~/.cache/kubilitics-testbed}/bin
# Nothing here is downloaded prebuilt: everything is compiled from the Go module proxy.
# Usage: scripts/testbed/build.sh [--force]
set -euo pipefail

# shellcheck source=versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

command -v go >/dev/null || tb_die "step 'check go': go is not on PATH (Go >= 1.26 is needed for kwok ${KWOK_VERSION})"
mkdir -p "${TESTBED_BIN}" "${TESTBED_SRC}"

# One build at a time: the pytest fixture and `make testbed-up` may race.
exec 9>"${TESTBED_CACHE}/build.lock"
if command -v flock >/dev/null; then
  flock -n 9 || { tb_log "another build is running; waiting for it"; flock 9; }
fi

BUILD_START=$SECONDS
CURRENT_STEP="start"
trap 'rc=$?; if [[ $rc -ne 0 ]]; then printf "[testbed] ERROR: build step %s failed (exit %s); see output above\n" "$CURRENT_STEP" "$rc" >&2; fi' EXIT

# A binary is up to date when it exists and its stamp records the version it was built from.
stamp_of() { echo "${TESTBED_BIN}/.$1.version"; }
artifact_of() { # what a step produces: a binary, or for kwok-stages the stage files
  if [[ $1 == kwok-stages ]]; then echo "${TESTBED_CACHE}/kwok-stages/node-initialize.yaml"; else echo "${TESTBED_BIN}/$1"; fi
}
is_fresh() { [[ $FORCE -eq 0 && -e "$(artifact_of "$1")" && "$(cat "$(stamp_of "$1")" 2>/dev/null)" == "$2" ]]; }
mark_built() { echo "$2" >"$(stamp_of "$1")"; }

# run_step NAME VERSION -- command...: builds one binary with progress and timing.
run_step() {
  local name=$1 version=$2; shift 3
  if is_fresh "$name" "$version"; then
    tb_log "$name $version: cached"
    return 0
  fi
  CURRENT_STEP="$name"
  local t0=$SECONDS
  tb_log "$name $version: building (total elapsed $((SECONDS - BUILD_START))s) ..."
  "$@"
  [[ -e "$(artifact_of "$name")" ]] || tb_die "build step $name: command finished but $(artifact_of "$name") is missing"
  mark_built "$name" "$version"
  tb_log "$name $version: built in $((SECONDS - t0))s"
}

# go_mod_file MODULE@VERSION: path of that module's go.mod in the module cache.
go_mod_file() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p'
}

# ---- etcd: a tiny main around etcdmain.Main (the etcd module itself has local replaces) ----
build_etcd() {
  local dir="${TESTBED_SRC}/etcd-${ETCD_VERSION}"
  mkdir -p "$dir"
  cat >"$dir/main.go" <<'EOF'
// Command etcd is etcd's own server entry point, built from the Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (
    cd "$dir"
    [[ -f go.mod ]] || go mod init kubilitics.local/testbed/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    go mod tidy
    go build -trimpath -ldflags "-s -w" -o "${TESTBED_BIN}/etcd" .
  )
}

# ---- kwok / kwokctl / metrics-server: plain modules without replace lines ----
build_kwok_cmd() { # $1 = kwok | kwokctl, $2 = the binary's name in the cache (default $1)
  local ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBE_VERSION#v}"
  local dir src="${TESTBED_SRC}/kwok-${KWOK_VERSION}"
  dir="$(go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [[ -d "$dir" ]] || tb_die "step $1: module sigs.k8s.io/kwok@${KWOK_VERSION} not found"
  # kwok (the node side) gets two changes, applied to a copy of the module in the cache (nothing
  # is vendored in the repo): `kubectl exec` reports the command's exit code as a kubelet does
  # (kwok-patch/exec_exit_code.go), and an exec target may name a wrapper that runs the command
  # in the simulated container instead of on the host (kwok-patch/exec_wrapper.go).
  rm -rf "$src" && cp -r "$dir" "$src" && chmod -R u+w "$src"
  local exec_go="$src/pkg/kwok/server/debugging_exec.go"
  grep -q 'err := utilsexec.Exec(ctx, cmd\[0\], cmd\[1:\]...)' "$exec_go" ||
    tb_die "step $1: kwok ${KWOK_VERSION} exec code changed; update scripts/testbed/kwok-patch"
  grep -q '^	// Set the environment variables.$' "$exec_go" ||
    tb_die "step $1: kwok ${KWOK_VERSION} exec code changed; update scripts/testbed/kwok-patch"
  sed -i '/err := utilsexec.Exec(ctx, cmd\[0\], cmd\[1:\]...)/{n;n;s/return err/return kubiliticsExitCode(err)/}' "$exec_go"
  sed -i 's|^	// Set the environment variables.$|	cmd = kubiliticsExecWrapper(execTarget.Local.Envs, podNamespace, podName, container, cmd)\n\n&|' "$exec_go"
  grep -q 'return kubiliticsExitCode(err)' "$exec_go" && grep -q 'cmd = kubiliticsExecWrapper(' "$exec_go" ||
    tb_die "step $1: patching $exec_go failed"
  cp "${TESTBED_SCRIPTS}/kwok-patch/exec_exit_code.go" "$src/pkg/kwok/server/zz_kubilitics_exec_exit_code.go"
  cp "${TESTBED_SCRIPTS}/kwok-patch/exec_wrapper.go" "$src/pkg/kwok/server/zz_kubilitics_exec_wrapper.go"
  (cd "$src" && go build -trimpath -ldflags "$ld" -o "${TESTBED_BIN}/${2:-$1}" "./cmd/$1")
}

build_metrics_server() {
  # Version stamp as upstream does it (kwokctl reads `metrics-server --version`).
  GOBIN="${TESTBED_BIN}" go install -trimpath \
    -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=${METRICS_SERVER_VERSION} -X k8s.io/component-base/version.gitVersion=${METRICS_SERVER_VERSION}" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@${METRICS_SERVER_VERSION}"
}

# ---- Kubernetes: wrapper module requiring k8s.io/kubernetes with every staging module pinned ----
prepare_kube_module() {
  local dir="${TESTBED_SRC}/kubernetes-${KUBE_VERSION}"
  KUBE_MOD_DIR="$dir"
  [[ -f "$dir/.ready" ]] && return 0
  CURRENT_STEP="kubernetes module setup"
  tb_log "kubernetes ${KUBE_VERSION}: resolving module and staging replaces ..."
  rm -rf "$dir" && mkdir -p "$dir"  # start clean: a half-finished setup may have a wrong go.sum
  local kmod staging_ver="v0.${KUBE_VERSION#v1.}"
  kmod="$(go_mod_file "k8s.io/kubernetes@${KUBE_VERSION}")"
  [[ -f "$kmod" ]] || tb_die "step 'kubernetes module setup': could not download k8s.io/kubernetes@${KUBE_VERSION}"
  {
    echo "module kubilitics.local/testbed/kubernetes"
    echo
    # Same language version and GODEBUG defaults as the upstream build.
    grep -E '^(go|godebug) ' "$kmod"
    echo
    echo "require k8s.io/kubernetes ${KUBE_VERSION}"
    echo
    echo "replace ("
    # Upstream requires its staging modules at v0.0.0 and replaces them with ./staging paths;
    # the published equivalents are tagged v0.<minor>.<patch>.
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9.-]*\) => ./staging/src/.*#\1#p' "$kmod" |
      while read -r m; do echo "	$m => $m ${staging_ver}"; done
    echo ")"
  } >"$dir/go.mod"
  (
    cd "$dir"
    # Record the commands as tools so go.sum covers them; no importable main needed.
    # Each path carries @version: without it `go get` would upgrade to the newest Kubernetes.
    go get -tool \
      "k8s.io/kubernetes/cmd/kube-apiserver@${KUBE_VERSION}" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@${KUBE_VERSION}" \
      "k8s.io/kubernetes/cmd/kube-scheduler@${KUBE_VERSION}" \
      "k8s.io/kubernetes/cmd/kubectl@${KUBE_VERSION}"
    grep -q "k8s.io/kubernetes ${KUBE_VERSION}\$" go.mod ||
      tb_die "step 'kubernetes module setup': go.mod no longer requires k8s.io/kubernetes ${KUBE_VERSION}"
  )
  touch "$dir/.ready"
}

build_kube_cmd() { # $1 = command name under k8s.io/kubernetes/cmd
  prepare_kube_module
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${pkg}.gitVersion=${KUBE_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
    ld+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  done
  (
    cd "${KUBE_MOD_DIR}"
    go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags "$ld" \
      -o "${TESTBED_BIN}/$1" "k8s.io/kubernetes/cmd/$1"
  )
}

tb_log "cache: ${TESTBED_CACHE}  (kubernetes ${KUBE_VERSION}, etcd ${ETCD_VERSION}, kwok ${KWOK_VERSION}, metrics-server ${METRICS_SERVER_VERSION})"
run_step etcd "${ETCD_VERSION}" -- build_etcd
# The patched kwok has its own name (kwok-testbed): caches shared with checkouts that still use
# the older patch set (binary `kwok`) then keep both instead of rebuilding each other's.
run_step kwok-testbed "${KWOK_VERSION}/${KUBE_VERSION}+exitcode+execwrapper" -- build_kwok_cmd kwok kwok-testbed
run_step kwokctl "${KWOK_VERSION}/${KUBE_VERSION}" -- build_kwok_cmd kwokctl
run_step metrics-server "${METRICS_SERVER_VERSION}" -- build_metrics_server
# kwok's own node stages (initialize + heartbeat with lease), copied from the module into the
# cache so up.sh can give them to kwok without the repo vendoring them.
copy_kwok_stages() {
  local dir src
  dir="$(go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [[ -d "$dir" ]] || tb_die "step 'kwok stages': module sigs.k8s.io/kwok@${KWOK_VERSION} not found"
  mkdir -p "${TESTBED_CACHE}/kwok-stages"
  for src in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml; do
    cp "$dir/kustomize/stage/$src" "${TESTBED_CACHE}/kwok-stages/"
  done
  chmod u+w "${TESTBED_CACHE}"/kwok-stages/*.yaml
}
run_step kwok-stages "${KWOK_VERSION}" -- copy_kwok_stages

for cmd in kubectl kube-apiserver kube-controller-manager kube-scheduler; do
  run_step "$cmd" "${KUBE_VERSION}" -- build_kube_cmd "$cmd"
done
CURRENT_STEP="done"
tb_log "all binaries ready in ${TESTBED_BIN} (build took $((SECONDS - BUILD_START))s)"
