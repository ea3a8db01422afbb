#!/usr/bin/env bash
# Runs ON the GPU machine, in the same lease right after run_serving.sh (whose server is still
# up): throughput and TTFT percentiles under load, baseline (retention 1.0) vs 0.25, with the
# load generator in loadtest/. Results land in $OUT/loadtest.
set -euo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
source benchmarks/gpu/env.sh
curl -sf localhost:8000/health >/dev/null || { echo "no server: run run_serving.sh first"; exit 1; }
python3 -m loadtest --url http://127.0.0.1:8000 --retentions 1.0 0.25 --concurrency ${CONCURRENCY:-1 4 16 64} \
  --max-requests "${MAX_REQUESTS:-64}" --duration "${DURATION:-40}" --frames 32 --max-tokens 32 \
  --out-dir "$OUT/loadtest" 2>&1 | grep -v "it/s\]" | tail -30
