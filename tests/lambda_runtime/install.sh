#!/usr/bin/env bash
# The two pieces of the Lambda runtime that `make lambda-test` runs functions on, built once and cached
# outside the work tree (reused while their pins are unchanged):
#   * the AWS Lambda Runtime Interface Emulator (the one the Lambda base images ship), built from its
#     Go module:  ${KUBILITICS_RIE_DIR:-~/.cache/kubilitics/rie}/<version>/aws-lambda-rie
#   * a python3.11 of its own (not the development venv):
#     ${KUBILITICS_LAMBDA_RUNTIME_DIR:-~/.cache/kubilitics/lambda-python3.11}/
#       venv/         awslambdaric only (the runtime interface client, as in /var/runtime)
#       var-runtime/  boto3 + botocore, which the python3.11 runtime bundles and the deps layer omits
#                     (the versions of requirements-dev.txt, so tests and lambda-test use one SDK)
# Prints three lines: RIE=<binary>, PYTHON=<interpreter>, RUNTIME_DIR=<the var-runtime dir>.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RIE_MODULE="github.com/aws/aws-lambda-runtime-interface-emulator"
RIE_VERSION="${KUBILITICS_RIE_VERSION:-v0.0.0-20261030222936-bef5c4ba774d}"
AWSLAMBDARIC_VERSION="${KUBILITICS_AWSLAMBDARIC_VERSION:-4.2.2}"
RIE_DIR="${KUBILITICS_RIE_DIR:-$HOME/.cache/kubilitics/rie}/${RIE_VERSION}"
RUNTIME="${KUBILITICS_LAMBDA_RUNTIME_DIR:-$HOME/.cache/kubilitics/lambda-python3.11}"

log() { printf '[lambda-install] %s\n' "$*" >&2; }

mkdir -p "$(dirname "$RIE_DIR")" "$(dirname "$RUNTIME")"
exec 9>"${RUNTIME}.lock"  # one install at a time
command -v flock >/dev/null && flock 9

# --- the emulator ------------------------------------------------------------------------------------
RIE="${RIE_DIR}/aws-lambda-rie"
if [[ -x "$RIE" ]]; then
  log "cached: $RIE"
else
  command -v go >/dev/null || { log "ERROR: go is needed to build the emulator"; exit 1; }
  log "building ${RIE_MODULE}@${RIE_VERSION} (Go module proxy; about 30 s)"
  mkdir -p "$RIE_DIR.tmp"
  (cd "$RIE_DIR.tmp" && GOBIN="$RIE_DIR.tmp" GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
    go install "${RIE_MODULE}/cmd/aws-lambda-rie@${RIE_VERSION}")
  mkdir -p "$RIE_DIR" && mv "$RIE_DIR.tmp/aws-lambda-rie" "$RIE" && rm -rf "$RIE_DIR.tmp"
fi

# --- the runtime's python ----------------------------------------------------------------------------
pin() { grep -E "^$1==" "$ROOT/requirements-dev.txt" | head -n 1; }
WANT="awslambdaric==${AWSLAMBDARIC_VERSION} $(pin boto3) $(pin botocore)"
STAMP="${RUNTIME}/.stamp"
if [[ -x "${RUNTIME}/venv/bin/python" && "$(cat "$STAMP" 2>/dev/null)" == "$WANT" ]]; then
  log "cached: ${RUNTIME} ($WANT)"
else
  command -v python3.11 >/dev/null || { log "ERROR: python3.11 must be on PATH"; exit 1; }
  log "creating ${RUNTIME} ($WANT)"
  rm -rf "$RUNTIME"
  python3.11 -m venv "${RUNTIME}/venv"
  pip=("${RUNTIME}/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input)
  "${pip[@]}" "awslambdaric==${AWSLAMBDARIC_VERSION}"
  # shellcheck disable=SC2046
  "${pip[@]}" --target "${RUNTIME}/var-runtime" $(pin boto3) $(pin botocore)
  echo "$WANT" >"$STAMP"
fi

echo "RIE=${RIE}"
echo "PYTHON=${RUNTIME}/venv/bin/python"
echo "RUNTIME_DIR=${RUNTIME}/var-runtime"
