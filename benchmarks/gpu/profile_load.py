"""Where a loaded server's GPU time goes, per video: a torch-profiler window under concurrent requests.

Against a server started with vLLM's torch profiler (``PROFILER_DIR=/tmp/prof`` for
``run_long_video.sh`` or ``run_serving.sh``): ``--requests`` streamed requests of the short clip
(``long_video.load``), ``--concurrency`` in flight; ``--start-after`` seconds in (the load at its
steady state) ``/start_profile``, ``--window`` seconds later ``/stop_profile``. Meanwhile
``/metrics`` is polled for the engine's running and waiting requests. ``--trace`` analyses a trace
already taken instead (no server).

Per engine step in the window (vLLM's ``execute_context_<n>(<tokens>)_generation_<n>(<n>)``
GPU range): its GPU span and busy time (union of kernels and copies), split at the step's first
LLM kernel (an RMSNorm or the KV-cache write, ``LLM_MARKERS``) into the encoder phase (vision
tower, projector, pooling, pixel normalisation, pruning) and the LLM phase (prefill chunks and
decode tokens). Per video (videos = the steps' 2x2 poolings, one per encoded video): the GPU ms
of the encoder phase, of the pruning's own kernels (``PRUNE_KERNELS``) within it, and of the LLM
phase.

    python3 benchmarks/gpu/profile_load.py --trace-dir /tmp/prof --concurrency 64 --retention 0.25
    python3 benchmarks/gpu/profile_load.py --trace load_trace.json.gz
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from benchmarks.gpu.profile_prefill import GPU_CATEGORIES, busy_ms, load_events, wait_for_trace

LLM_MARKERS = ("rms_norm", "reshape_and_cache")  # the language model's first kernels in a step
POOLING_KERNEL = "upsample_bilinear2d"  # LLaVA-OneVision's 2x2 pooling of one video's frames
PRUNE_KERNELS = ("_plan_kernel", "_piece_distances_kernel", "_select_kernel", "_push_kernel")  # MMG-Vid's Triton
STEP = re.compile(r"execute_context_(\d+)\((\d+)\)_generation_(\d+)")


def step_phases(step: dict, gpu: list[dict]) -> dict:
    """One step's GPU figures: its kernels (``gpu`` sorted by start) split at the first LLM kernel."""
    start, end = step["ts"], step["ts"] + step["dur"]
    kernels = [e for e in gpu if start <= e["ts"] < end]
    split = next((e["ts"] for e in kernels if any(m in e["name"] for m in LLM_MARKERS)), end)
    encoder = [e for e in kernels if e["ts"] < split]
    context, tokens, generation = (int(g) for g in STEP.match(step["name"]).groups())
    return {
        "context_requests": context, "context_tokens": tokens, "decode_requests": generation,
        "span_ms": step["dur"] / 1e3, "busy_ms": busy_ms(kernels),
        "encoder_busy_ms": busy_ms(encoder), "llm_busy_ms": busy_ms([e for e in kernels if e["ts"] >= split]),
        "prune_ms": sum(e["dur"] for e in encoder if e["name"].startswith(PRUNE_KERNELS)) / 1e3,
        "videos": sum(POOLING_KERNEL in e["name"] for e in encoder),
    }


def analyze(events: list[dict]) -> dict:
    """Per-step phases and per-video means of the steps the trace holds."""
    gpu = sorted((e for e in events if e.get("cat") in GPU_CATEGORIES), key=lambda e: e["ts"])
    if not gpu:
        raise SystemExit("no GPU kernels in the trace (a CPU server's, or a window with no step)")
    window = (gpu[0]["ts"], max(e["ts"] + e["dur"] for e in gpu))
    ranges = sorted((e for e in events if e.get("cat") == "gpu_user_annotation" and STEP.match(e["name"])),
                    key=lambda e: e["ts"])
    steps = [step_phases(s, gpu) for s in ranges]
    videos = sum(s["videos"] for s in steps)
    per_video = {key: round(sum(s[key] for s in steps) / videos, 2) if videos else None
                 for key in ("busy_ms", "encoder_busy_ms", "prune_ms", "llm_busy_ms")}
    return {"window_ms": round((window[1] - window[0]) / 1e3, 1),
            "gpu_busy_pct": round(100 * busy_ms(gpu) / ((window[1] - window[0]) / 1e3), 1),
            "videos": videos, "per_video_ms": per_video, "steps": steps}


def engine_queue(metrics_text: str) -> dict[str, float]:
    """The engine's running and waiting requests in a ``/metrics`` page (summed over engines)."""
    return {name: sum(float(v) for v in re.findall(rf"^vllm:num_requests_{name}{{[^}}]*}} (\S+)$", metrics_text, re.M))
            for name in ("running", "waiting")}


def profile_under_load(args) -> tuple[list[dict], dict]:
    """Load the server, profile a window; the trace's events and the engine's queue during the load."""
    from benchmarks.gpu.long_video import load, video_url

    model = requests.get(f"{args.url}/v1/models", timeout=30).json()["data"][0]["id"]
    queue: dict[str, list[float]] = {"running": [], "waiting": []}
    started, since = time.time(), None
    with ThreadPoolExecutor(1) as pool:
        loaded = pool.submit(load, args.url, model, video_url("clip"), args.retention, args.concurrency,
                             args.requests, args.max_tokens)
        while not loaded.done():
            for name, value in engine_queue(requests.get(f"{args.url}/metrics", timeout=30).text).items():
                queue[name].append(value)
            if since is None and time.time() - started >= args.start_after:
                since = time.time()
                requests.post(f"{args.url}/start_profile", timeout=60).raise_for_status()
                time.sleep(args.window)
                requests.post(f"{args.url}/stop_profile", timeout=600).raise_for_status()
            time.sleep(0.5)
        result = loaded.result()  # the load's own error, if it failed
    if since is None:
        raise SystemExit("the load ended before --start-after: send more --requests")
    load_figures = {**result, "mean_running": round(statistics.mean(queue["running"]), 1),
                    "mean_waiting": round(statistics.mean(queue["waiting"]), 1)}
    return load_events(wait_for_trace(args.trace_dir, since)), load_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--trace-dir", type=Path, help="the server's torch_profiler_dir")
    parser.add_argument("--trace", type=Path, help="analyse this trace (.json or .json.gz) instead of profiling")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=192)
    parser.add_argument("--retention", type=float, default=0.25, help="the requests' mmgvid_retention")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--start-after", type=float, default=12.0, help="seconds of load before the window")
    parser.add_argument("--window", type=float, default=2.0, help="seconds profiled")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/profile_load.json"))
    args = parser.parse_args()
    if args.trace is None and args.trace_dir is None:
        parser.error("give --trace-dir (profile a server) or --trace (analyse a trace)")
    if args.trace is not None:
        events, load_figures = load_events(args.trace), None
    else:
        events, load_figures = profile_under_load(args)
    result = {"load": load_figures, **analyze(events)}
    print("| step (context reqs / tokens / decode reqs) | videos | GPU busy ms | encoder ms | prune ms | LLM ms |")
    print("|---|---|---|---|---|---|")
    for s in result["steps"]:
        print(f"| {s['context_requests']} / {s['context_tokens']} / {s['decode_requests']} | {s['videos']} | "
              f"{s['busy_ms']:.1f} | {s['encoder_busy_ms']:.1f} | {s['prune_ms']:.2f} | {s['llm_busy_ms']:.1f} |")
    print(f"window {result['window_ms']} ms, GPU busy {result['gpu_busy_pct']}%, {result['videos']} videos; "
          f"per video: {result['per_video_ms']}; load: {load_figures}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
