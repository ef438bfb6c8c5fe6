#!/usr/bin/env bash
# Seed the test cluster with a small demo for `make run`: one healthy workload and a few broken on
# purpose, each in its own namespace, from the public diagnosis scenarios (tests/evals/scenarios).
# Idempotent (kubectl apply); safe to run on every start.
set -euo pipefail

# shellcheck source=versions.sh
source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"
SCENARIOS="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests/evals/scenarios" && pwd)"

# namespace -> scenario whose manifests it holds
DEMO=(
  "demo-shop:healthy-deployment"
  "demo-orders:crashloop-app-error"
  "demo-checkout:missing-configmap"
  "demo-catalog:bad-image-tag"
)

kc() { "${TESTBED_BIN}/kubectl" --kubeconfig "${TESTBED_KUBECONFIG}" --context "${TESTBED_CONTEXT}" "$@"; }

for entry in "${DEMO[@]}"; do
  namespace="${entry%%:*}"
  scenario="${entry#*:}"
  kc create namespace "${namespace}" --dry-run=client -o yaml | kc apply -f - >/dev/null
  kc apply -n "${namespace}" -f "${SCENARIOS}/${scenario}/manifests.yaml" >/dev/null
  tb_log "demo: ${namespace} <- ${scenario}"
done
