#!/usr/bin/env bash
# Runs ON the GPU machine (device tool), after ../shared/gpu/stage.sh's staging calls:
# installs the staged vLLM 0.26 and this package, serves a LLaVA-OneVision-7B-shaped model with
# dummy weights and the mmgvid plugin, then measures TTFT/prefill (baseline vs pruned, one run)
# and the pruning time on the GPU. Results land in $OUT (or ./gpu-out).
#
# Needs, carried: .gpu-stage/install.sh, .gpu-model/llava-ov-7b (benchmarks/gpu/make_7b_config.py).
set -euo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
cp .gpu-stage/install.sh /tmp/stage/ && bash /tmp/stage/install.sh
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/site . 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"

python3 benchmarks/prune_speed.py --device cuda --frames 32 64 --dims 3584 --retentions 0.25 \
  --content shots static random --repeats 20 --warmup 3 --out "$OUT/prune_speed_gpu.json" 2>&1 | tail -9

MODEL=.gpu-model/llava-ov-7b
python3 -m mmgvid_vllm.cli serve "$MODEL" --load-format dummy --served-model-name llava-ov-7b \
  --max-model-len 16384 --max-num-batched-tokens 16384 --no-enable-prefix-caching --mm-processor-cache-gb 0 \
  --limit-mm-per-prompt '{"video": 1, "image": 0}' --port 8000 > "$OUT/server.log" 2>&1 &
SERVER=$!
for i in $(seq 1 300); do
  curl -sf localhost:8000/health >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { tail -50 "$OUT/server.log"; exit 1; }
  sleep 2
done
echo "server up after $((i * 2)) s"
python3 benchmarks/gpu/ttft.py --url http://127.0.0.1:8000 --retentions 1.0 0.25 0.15 0.10 \
  --repeats ${REPEATS:-10} --warmup 4 --out "$OUT/ttft_gpu.json" 2>&1 | grep -v "it/s"
kill $SERVER; wait $SERVER 2>/dev/null || true
grep -i "mmgvid\|error" "$OUT/server.log" | head -20
