#!/usr/bin/env bash
# Runs ON the GPU machine, in the same lease after run_serving.sh (whose server is still up, with
# VLLM_SERVER_DEV_MODE=1 so the engine can be paused while requests queue): measured KV-cache
# capacity, how many 32-frame video requests run at once, baseline (retention 1.0) vs 0.25.
# Results land in $OUT/max_concurrency.json.
# Env: RETENTIONS ("1.0 0.25"), REQUESTS (auto = 1.15 x computed capacity + 8), MAX_TOKENS (1024),
#      TIME_LIMIT (120 s per configuration after release), HOLD (auto | on | off).
set -euo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
source benchmarks/gpu/env.sh
curl -sf localhost:8000/health >/dev/null || { echo "no server: run run_serving.sh first"; exit 1; }
# max_concurrency.py pauses the engine while its requests queue and resumes it on exit; should it
# be killed (device time limit), resume here too so the server stays usable.
trap 'curl -s -X POST localhost:8000/resume >/dev/null 2>&1 || true' EXIT
python3 benchmarks/gpu/max_concurrency.py --url http://127.0.0.1:8000 --retentions ${RETENTIONS:-1.0 0.25} \
  --requests "${REQUESTS:-auto}" --max-tokens "${MAX_TOKENS:-1024}" --frames 32 --size 384 \
  --time-limit "${TIME_LIMIT:-120}" --hold "${HOLD:-auto}" --no-progress --out "$OUT/max_concurrency.json"
grep -E "KV cache size|Maximum concurrency" /tmp/server.log | tail -2 || true
