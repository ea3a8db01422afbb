#!/usr/bin/env bash
# Runs ON the GPU machine (device tool) after ../shared/gpu/stage.sh's staging calls:
# installs the staged vLLM 0.26 and this package, times the pruning on the GPU, serves a
# LLaVA-OneVision-7B-shaped model with dummy weights and the mmgvid plugin, and measures
# TTFT / prefill, baseline vs pruned, in one run. The server is started in its own session
# and left running for later calls in the same lease (benchmarks/gpu/run_load.sh).
# Results land in $OUT.
#
# Carry: .gpu-stage/install.sh and .gpu-model/llava-ov-7b (benchmarks/gpu/make_7b_config.py).
set -euo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
source benchmarks/gpu/env.sh
cp .gpu-stage/install.sh /tmp/stage/ && bash /tmp/stage/install.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"

[ -n "${SKIP_PRUNE_SPEED:-}" ] || python3 benchmarks/gpu/check_prune_cuda.py --cases 100 2>&1 | grep -v "it/s\]" | tail -2
[ -n "${SKIP_PRUNE_SPEED:-}" ] || python3 benchmarks/prune_speed.py --device cuda --frames 32 64 --dims 3584 --retentions 0.25 0.15 0.10 \
  --methods mmgvid evs uniform --content shots static random --repeats 20 --warmup 3 \
  --out "$OUT/prune_speed_gpu.json" 2>&1 | grep -v "shape\]"

# An absolute path: transformers reads a relative one that starts with "." as a hub id.
setsid python3 -m mmgvid_vllm.cli serve "$PWD/.gpu-model/llava-ov-7b" --load-format dummy --served-model-name llava-ov-7b \
  --max-model-len 16384 --max-num-batched-tokens 16384 --no-enable-prefix-caching --mm-processor-cache-gb 0 \
  --limit-mm-per-prompt '{"video": 1, "image": 0}' --port 8000 > /tmp/server.log 2>&1 < /dev/null &
SERVER=$!
for i in $(seq 1 240); do
  curl -sf localhost:8000/health >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { tail -60 /tmp/server.log; exit 1; }
  sleep 2
done
echo "server up after $((i * 2)) s"
grep -E "KV cache size|Maximum concurrency|mmgvid" /tmp/server.log | tail -5 | tee "$OUT/kv_capacity.txt"
python3 benchmarks/gpu/ttft.py --url http://127.0.0.1:8000 --retentions 1.0 0.25 0.15 0.10 \
  --repeats "${REPEATS:-10}" --warmup 4 --out "$OUT/ttft_gpu.json" 2>&1 | grep -v "it/s\]"
cp /tmp/server.log "$OUT/server.log"
