#!/usr/bin/env bash
# The one test command (README, .ci/run): install what is missing, build once, run every test.
# Ends with ctest's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

PRESET="${INFERGATE_PRESET:-debug}"
JOBS="$(nproc)"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/infergate-ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"

cmake --preset "$PRESET" >/dev/null
cmake --build --preset "$PRESET" -j "$JOBS"
# Integration tests start several processes each; oversubscribe the 2 cores a little.
ctest --preset "$PRESET" -j "$((JOBS * 2))" --timeout 300
