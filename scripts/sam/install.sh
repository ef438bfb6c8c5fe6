#!/usr/bin/env bash
# Install aws-sam-cli (and cfn-lint) into a venv of their own, outside the repo.
#   venv: ${KUBILITICS_SAM_VENV:-$HOME/.cache/kubilitics/sam-venv}
# Reused when it already holds the pinned versions. Prints the venv's bin dir on the last line.
# Usage: scripts/sam/install.sh [--force]
set -euo pipefail

SAM_CLI_VERSION="${KUBILITICS_SAM_CLI_VERSION:-1.170.0}"
CFN_LINT_VERSION="${KUBILITICS_CFN_LINT_VERSION:-1.58.0}"
VENV="${KUBILITICS_SAM_VENV:-$HOME/.cache/kubilitics/sam-venv}"
STAMP="${VENV}/.kubilitics-sam-stamp"
WANT="aws-sam-cli==${SAM_CLI_VERSION} cfn-lint==${CFN_LINT_VERSION}"

log() { printf '[sam-install] %s\n' "$*" >&2; }

FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

# One install at a time (make lint and make test may race for it).
mkdir -p "$(dirname "${VENV}")"
exec 9>"${VENV}.lock"
if command -v flock >/dev/null; then
  flock -n 9 || { log "another install is running; waiting for it"; flock 9; }
fi

if [[ $FORCE -eq 0 && -x "${VENV}/bin/sam" && -x "${VENV}/bin/cfn-lint" && "$(cat "$STAMP" 2>/dev/null)" == "$WANT" ]]; then
  log "cached: ${VENV} ($WANT)"
  echo "${VENV}/bin"
  exit 0
fi

# Pick a Python 3.11+ interpreter (sam-cli supports 3.9-3.13; the project uses 3.11).
PY="${KUBILITICS_SAM_PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3.12 python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
      PY="$(command -v "$cand")"
      break
    fi
  done
fi
[[ -n "$PY" ]] || { log "ERROR: no Python >= 3.9 found on PATH"; exit 1; }

if [[ $FORCE -eq 1 || ! -x "${VENV}/bin/python" ]]; then
  log "creating venv ${VENV} with $("$PY" --version 2>&1)"
  rm -rf "${VENV}"
  mkdir -p "$(dirname "${VENV}")"
  "$PY" -m venv "${VENV}"
fi

log "installing ${WANT}"
"${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# shellcheck disable=SC2086
"${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check ${WANT}
echo "$WANT" >"$STAMP"
log "installed: $("${VENV}/bin/sam" --version 2>&1), cfn-lint $("${VENV}/bin/cfn-lint" --version 2>&1 | awk '{print $2}')"
echo "${VENV}/bin"
