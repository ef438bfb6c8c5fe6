#!/usr/bin/env bash
# Build the SAM application without Docker (uses the local python3.11), into a scratch dir by
# default so the work tree stays clean. The deps layer is pip-installed from PyPI.
# Usage: scripts/sam/build.sh [BUILD_DIR]     (default: a new temp dir, printed at the end)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
BUILD_DIR="${1:-$(mktemp -d -t kubilitics-sam-build.XXXXXX)}"

log() { printf '[sam-build] %s\n' "$*" >&2; }

command -v python3.11 >/dev/null || { log "ERROR: python3.11 must be on PATH for a build without Docker"; exit 1; }
BIN="$(bash "$ROOT/scripts/sam/install.sh" | tail -n 1)"

export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true

log "building into ${BUILD_DIR}"
"$BIN/sam" build --template template.yaml --build-dir "${BUILD_DIR}/build" \
  --cache-dir "${BUILD_DIR}/cache" --no-cached --region us-east-1
# GET /api/v1/version reports the commit and date of the build (read from the shared layer unless the
# template parameters BuildCommit / BuildDate say otherwise): a built artifact never says "unknown".
BUILD_COMMIT="${KUBILITICS_BUILD_COMMIT:-$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || true)}"
if [ -n "$BUILD_COMMIT" ] && [ -z "${KUBILITICS_BUILD_COMMIT:-}" ] && [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]; then
  BUILD_COMMIT="${BUILD_COMMIT}-dirty"
fi
[ -n "$BUILD_COMMIT" ] || { log "ERROR: no git commit; set KUBILITICS_BUILD_COMMIT"; exit 1; }
BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
PACKAGE="$(dirname "$(find "${BUILD_DIR}/build/SharedLayer" -path '*/kubilitics/__init__.py' | head -n 1)")"
[ -f "$PACKAGE/__init__.py" ] || { log "ERROR: kubilitics not found in the built SharedLayer"; exit 1; }
printf '{"commit": "%s", "date": "%s"}\n' "$BUILD_COMMIT" "$BUILD_DATE" > "$PACKAGE/_build_info.json"
log "build ${BUILD_COMMIT} ${BUILD_DATE} -> ${PACKAGE}/_build_info.json"
# Bytecode in the artifacts: /opt and /var/task are read-only on Lambda, so without it every cold
# start compiles what it imports (~0.5 s). Unchecked hashes: the pyc is used as it is, whatever the
# source's mtime after unzipping (the source never changes in a deployed artifact).
python3.11 -m compileall -q -j 0 --invalidation-mode unchecked-hash "${BUILD_DIR}/build" >/dev/null ||
  { log "ERROR: compileall failed"; exit 1; }
log "compiled to bytecode (python3.11, unchecked-hash)"
log "ok: ${BUILD_DIR}/build/template.yaml"
echo "${BUILD_DIR}"
