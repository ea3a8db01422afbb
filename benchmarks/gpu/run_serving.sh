#!/usr/bin/env bash
# Runs ON the GPU machine (device tool) after ../shared/gpu/stage.sh's staging calls:
# installs the staged vLLM 0.26 and this package, times the pruning on the GPU, serves a
# LLaVA-OneVision-7B-shaped model with dummy weights and the mmgvid plugin, and measures
# TTFT / prefill, baseline vs pruned, in one run. The server is started in its own session
# and left running for later calls in the same lease (benchmarks/gpu/run_capacity.sh).
# Env: API_SERVERS (1), TP (1: --tensor-parallel-size), REPEATS (10), TTFT_RETENTIONS ("1.0 0.25 0.15 0.10"),
# PREFILL_GRAPHS_UP_TO (0) and PROFILER_DIR (below), KEPT_LOG_DIR (unset: MMGVID_KEPT_LOG_DIR, each
# rank logs its kept indices; benchmarks/gpu/check_tp_ranks.py compares them), SKIP_PRUNE_SPEED / SKIP_TTFT
# (unset: time the pruning first / run ttft.py after the start). Run again in the same lease to restart the server (other API_SERVERS).
# Results land in $OUT.
#
# Carry: .gpu-stage/install.sh and .gpu-model/llava-ov-7b (benchmarks/gpu/make_7b_config.py).
set -euo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
source benchmarks/gpu/env.sh
cp .gpu-stage/install.sh /tmp/stage/ && bash /tmp/stage/install.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"

[ -n "${SKIP_PRUNE_SPEED:-}" ] || python3 benchmarks/gpu/check_prune_cuda.py --cases 100 2>&1 | grep -v "it/s\]" | tail -2
[ -n "${SKIP_PRUNE_SPEED:-}" ] || python3 benchmarks/prune_speed.py --device cuda --dtype bfloat16 --frames 32 64 --dims 3584 --retentions 0.25 0.15 0.10 \
  --methods mmgvid evs uniform --content shots static random --repeats 20 --warmup 3 \
  --out "$OUT/prune_speed_gpu.json" 2>&1 | grep -v "shape\]"

# API_SERVERS (default 1): API-server processes (vLLM --api-server-count). Each decodes and
# preprocesses videos on the CPU (~190 ms per 32-frame video, ~5 req/s per process).
# `python -m vllm.entrypoints.openai.api_server` (what `mmgvid serve` runs) ignores
# --api-server-count and always serves from one process; vLLM's own CLI `serve` starts the extra
# processes, so with API_SERVERS > 1 the server is started through it with the plugin selected the
# way `mmgvid serve` does (VLLM_PLUGINS=mmgvid plus the same request-kwargs flag, none on 0.26).
API_SERVERS=${API_SERVERS:-1}
# A server this script started earlier in the lease (e.g. to restart with another API_SERVERS) is
# stopped first: its whole session (engine and API-server processes), then the port must be free.
if [ -f /tmp/server.pid ] && kill -0 "$(cat /tmp/server.pid)" 2>/dev/null; then
  old=$(cat /tmp/server.pid); echo "stopping the earlier server (session $old)"
  kill -TERM -- "-$old" 2>/dev/null || true
  for i in $(seq 1 60); do kill -0 -- "-$old" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$old" 2>/dev/null || true; sleep 2
fi
# PREFILL_GRAPHS_UP_TO (default 0 = vLLM's default, CUDA graphs for steps of up to 512 tokens):
# capture sizes up to N tokens (every 64 above 512), so pruned 32-frame prompts (645-1586 tokens)
# would be prefilled from graphs too. Measured on the H100 (RESULTS.md): no gain (LLM prefill
# 39.5 / 24.9 / 20.4 ms with 2048 vs 36.0 / 23.7 / 19.6 without at 0.25 / 0.15 / 0.10), so off.
# One server serves every configuration, so baseline and pruned run with the same setting.
PREFILL_GRAPHS_UP_TO=${PREFILL_GRAPHS_UP_TO:-0}
graphs=()
if [ "$PREFILL_GRAPHS_UP_TO" -gt 512 ]; then
  graphs=(--compilation-config "$(python3 -c "import json, sys; n = int(sys.argv[1]); print(json.dumps({'cudagraph_capture_sizes': [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, 513, 16)) + list(range(576, n + 1, 64))}))" "$PREFILL_GRAPHS_UP_TO")")
fi
# PROFILER_DIR (unset): serve with vLLM's torch profiler writing there (/start_profile,
# /stop_profile; benchmarks/gpu/profile_prefill.py drives it).
profiler=()
if [ -n "${PROFILER_DIR:-}" ]; then
  profiler=(--profiler-config "{\"profiler\": \"torch\", \"torch_profiler_dir\": \"$PROFILER_DIR\", \"torch_profiler_with_stack\": false, \"ignore_frontend\": true}")
fi
if curl -sf localhost:8000/health >/dev/null; then echo "port 8000 is served by a server this script did not start"; exit 1; fi
if [ "$API_SERVERS" -gt 1 ]; then
  launch=(env VLLM_PLUGINS=mmgvid python3 -m vllm.entrypoints.cli.main serve)
  extra=(--api-server-count "$API_SERVERS" $(python3 -c "from mmgvid_vllm.vllm_compat import request_mm_kwargs_server_args as f; print(*f())"))
else
  launch=(python3 -m mmgvid_vllm.cli serve)
  extra=()
fi
# VLLM_SERVER_DEV_MODE=1 adds vLLM's /pause and /resume, with which max_concurrency.py
# (run_capacity.sh) queues all its requests before the engine schedules any; serving is unchanged.
# An absolute path: transformers reads a relative one that starts with "." as a hub id.
if [ -n "${KEPT_LOG_DIR:-}" ]; then rm -rf "$KEPT_LOG_DIR"; export MMGVID_KEPT_LOG_DIR=$KEPT_LOG_DIR; fi
VLLM_SERVER_DEV_MODE=${VLLM_SERVER_DEV_MODE:-1} setsid "${launch[@]}" "$PWD/.gpu-model/llava-ov-7b" --load-format dummy --served-model-name llava-ov-7b \
  --max-model-len 16384 --max-num-batched-tokens 16384 --no-enable-prefix-caching --mm-processor-cache-gb 0 \
  --limit-mm-per-prompt '{"video": 1, "image": 0}' --port 8000 --tensor-parallel-size "${TP:-1}" ${graphs[@]+"${graphs[@]}"} ${profiler[@]+"${profiler[@]}"} ${extra[@]+"${extra[@]}"} > /tmp/server.log 2>&1 < /dev/null &
SERVER=$!
echo $SERVER > /tmp/server.pid
for i in $(seq 1 240); do
  curl -sf localhost:8000/health >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { tail -60 /tmp/server.log; exit 1; }
  sleep 2
done
echo "server up after $((i * 2)) s ($API_SERVERS API server process(es), tensor parallel ${TP:-1})"
grep -E "KV cache size|Maximum concurrency|mmgvid" /tmp/server.log | tail -5 | tee "$OUT/kv_capacity.txt"
[ -n "${SKIP_TTFT:-}" ] || python3 benchmarks/gpu/ttft.py --url http://127.0.0.1:8000 --retentions ${TTFT_RETENTIONS:-1.0 0.25 0.15 0.10} \
  --repeats "${REPEATS:-10}" --warmup 4 --out "$OUT/ttft_gpu.json" 2>&1 | grep -v "it/s\]"
cp /tmp/server.log "$OUT/server.log"
