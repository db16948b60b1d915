#!/usr/bin/env bash
# Local demo: three infergate-sim pods and the gateway in front of them, as plain processes.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/infergate-ccache}"
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target infergate infergate-sim

BUILD=build/release
SIM="$BUILD/sim/infergate-sim"
GW="$BUILD/proxy/infergate"
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping ${#pids[@]} process(es)"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

for i in 0 1 2; do
  "$SIM" --host 127.0.0.1 --port "800$((i + 1))" --model meta-llama/Llama-3.1-8B-Instruct \
    --lora-modules food-review-1=/adapters/food-review-1 food-review-2=/adapters/food-review-2 \
    --pod-name "sim-$i" --ttft-ms 40 --itl-ms 15 >/dev/null &
  pids+=($!)
done
"$GW" --config examples/local/infergate.yaml &
pids+=($!)

for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break
  sleep 0.1
done

cat <<'MSG'

infergate is serving on http://127.0.0.1:8080 (admin on http://127.0.0.1:9090).
Try:

  curl -s http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"food-review","messages":[{"role":"user","content":"Is this pizza good?"}]}'

  curl -sN http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"food-review","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'

  curl -s http://127.0.0.1:8080/v1/models
  curl -s http://127.0.0.1:9090/debug/endpoints
  curl -s http://127.0.0.1:9090/metrics | grep inference_objective

Press Ctrl-C to stop.
MSG
wait
