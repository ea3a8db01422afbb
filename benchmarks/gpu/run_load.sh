#!/usr/bin/env bash
# Runs ON the GPU machine, in the same lease right after run_serving.sh (whose server is still
# up): throughput and TTFT percentiles under load, baseline (retention 1.0) vs 0.25, with the
# load generator in loadtest/. Results land in $OUT/loadtest, the server log's tail in
# $OUT/server_tail.log. A whole sweep (4 levels) can take longer than one device call:
# run one level per call (CONCURRENCY=64, then 16, ...), each into its own $OUT.
# Env: CONCURRENCY ("1 4 16 64"), MAX_REQUESTS (64), DURATION (40 s per point), REQUEST_TIMEOUT (120 s).
set -euo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
source benchmarks/gpu/env.sh
curl -sf localhost:8000/health >/dev/null || { echo "no server: run run_serving.sh first"; exit 1; }
trap 'tail -200 /tmp/server.log > "$OUT/server_tail.log"' EXIT
python3 -m loadtest --url http://127.0.0.1:8000 --retentions 1.0 0.25 --concurrency ${CONCURRENCY:-1 4 16 64} \
  --max-requests "${MAX_REQUESTS:-64}" --duration "${DURATION:-40}" --timeout "${REQUEST_TIMEOUT:-120}" \
  --frames 32 --max-tokens 32 --no-progress --out-dir "$OUT/loadtest"
