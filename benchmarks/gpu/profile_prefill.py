"""Where the GPU time of one prefill step goes, unpruned vs pruned: a torch-profiler trace of the server.

Against a server started with vLLM's torch profiler (run_serving.sh with
``SERVER_ARGS='--profiler-config {"profiler": "torch", "torch_profiler_dir": "/tmp/prof",
"torch_profiler_with_stack": false, "ignore_frontend": true}'``): warms up, then between
``/start_profile`` and ``/stop_profile`` sends one video request per retention, one at a time
(max_tokens 1, so each request is one prefill step), and reads the worker's trace.

Per request (a burst of GPU activity; bursts are > 100 ms apart): the step's GPU span, the time
the GPU was busy (union of kernels and copies) and idle inside the span, the largest idle gaps
with the kernels on either side, host-blocking CUDA calls (syncs, copies) during the span, and
the kernels that take the most time. An idle gap after the vision tower that only the pruned
step has is host time the pruning's sync exposes; busy time that only it has is GPU work.

    python3 benchmarks/gpu/profile_prefill.py --trace-dir /tmp/prof --retentions 1.0 0.25
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import requests

from benchmarks.gpu.ttft import video_request
from mmgvid_vllm.media import data_url, make_video_bytes

GPU_CATEGORIES = {"kernel", "gpu_memcpy", "gpu_memset"}
BLOCKING_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")
BURST_GAP_US = 100_000


def wait_for_trace(trace_dir: Path, since: float, timeout: float = 300) -> Path:
    """The newest worker trace written after ``since`` (the frontend's is skipped)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        traces = [p for p in trace_dir.rglob("*.json*") if p.stat().st_mtime > since and "async_llm" not in p.name]
        if traces:
            newest = max(traces, key=lambda p: p.stat().st_mtime)
            size = newest.stat().st_size
            time.sleep(3)
            if newest.stat().st_size == size:  # finished writing
                return newest
        time.sleep(2)
    raise TimeoutError(f"no trace in {trace_dir} after {timeout} s")


def load_events(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        trace = json.load(f)
    return [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]


def bursts(gpu: list[dict]) -> list[list[dict]]:
    """GPU events split where the GPU was idle for more than BURST_GAP_US."""
    groups: list[list[dict]] = []
    end = -float("inf")
    for e in sorted(gpu, key=lambda e: e["ts"]):
        if e["ts"] - end > BURST_GAP_US:
            groups.append([])
        groups[-1].append(e)
        end = max(end, e["ts"] + e["dur"])
    return groups


def busy_ms(events: list[dict]) -> float:
    """Time covered by at least one of ``events`` (sorted by start), in ms."""
    total, reach = 0.0, -float("inf")
    for e in events:
        total += max(0.0, e["ts"] + e["dur"] - max(reach, e["ts"]))
        reach = max(reach, e["ts"] + e["dur"])
    return total / 1e3


def summarize(burst: list[dict], cpu: list[dict], top: int) -> dict:
    """Span, busy and idle ms of one burst; its largest gaps, blocking calls and kernels."""
    start = burst[0]["ts"]
    gaps, reach, previous = [], start, None
    for e in burst:
        if e["ts"] > reach:
            gaps.append({"at_ms": (reach - start) / 1e3, "ms": (e["ts"] - reach) / 1e3,
                         "after": previous["name"][:60], "before": e["name"][:60]})
        if e["ts"] + e["dur"] >= reach:
            reach, previous = e["ts"] + e["dur"], e
    kernels: dict[str, float] = {}
    for e in burst:
        kernels[e["name"][:80]] = kernels.get(e["name"][:80], 0.0) + e["dur"] / 1e3
    blocking = [{"at_ms": (c["ts"] - start) / 1e3, "ms": c["dur"] / 1e3, "call": c["name"]}
                for c in cpu if c["name"].startswith(BLOCKING_CALLS) and start <= c["ts"] <= reach]
    span, busy = (reach - start) / 1e3, busy_ms(burst)
    return {
        "span_ms": span,
        "busy_ms": busy,
        "idle_ms": span - busy,
        "largest_gaps": sorted(gaps, key=lambda g: -g["ms"])[:top],
        "blocking_calls": sorted(blocking, key=lambda b: -b["ms"])[:top],
        "top_kernels_ms": dict(sorted(kernels.items(), key=lambda kv: -kv[1])[:top]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--trace-dir", type=Path, required=True, help="the server's torch_profiler_dir")
    parser.add_argument("--retentions", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--warmup", type=int, default=3, help="unprofiled requests per retention first")
    parser.add_argument("--requests", type=int, default=1, help="profiled requests per retention (interleaved)")
    parser.add_argument("--top", type=int, default=8, help="rows per list in the summary")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/profile_prefill.json"))
    args = parser.parse_args()

    model = requests.get(f"{args.url}/v1/models", timeout=30).json()["data"][0]["id"]
    videos = iter(data_url(make_video_bytes(args.frames, args.size, args.size, seed=7000 + i)) for i in range(10_000))
    for _ in range(args.warmup):
        for r in args.retentions:
            video_request(args.url, model, next(videos), r, 1)
    since = time.time()
    requests.post(f"{args.url}/start_profile", timeout=60).raise_for_status()
    order = [r for _ in range(args.requests) for r in args.retentions]
    for r in order:
        time.sleep(0.5)
        video_request(args.url, model, next(videos), r, 1)
    time.sleep(0.5)
    requests.post(f"{args.url}/stop_profile", timeout=600).raise_for_status()
    trace = wait_for_trace(args.trace_dir, since)
    events = load_events(trace)
    gpu = [e for e in events if e.get("cat") in GPU_CATEGORIES]
    cpu = [e for e in events if e.get("cat") == "cuda_runtime"]
    steps = [b for b in bursts(gpu) if sum(e["dur"] for e in b) > 5_000]  # prefill steps, not stray kernels
    if len(steps) != len(order):
        print(f"warning: {len(steps)} GPU bursts for {len(order)} requests", file=sys.stderr)
    result = {"trace": str(trace), "steps": {}}
    for i, (r, burst) in enumerate(zip(order, steps)):  # "0.25", then "0.25#2", ...
        key = str(r) if i < len(args.retentions) else f"{r}#{i // len(args.retentions) + 1}"
        result["steps"][key] = summarize(burst, cpu, args.top)
    for r, s in result["steps"].items():
        print(f"\n## retention {r}: span {s['span_ms']:.1f} ms, GPU busy {s['busy_ms']:.1f}, idle {s['idle_ms']:.1f}")
        print("largest idle gaps (at ms: ms, after -> before):")
        for g in s["largest_gaps"]:
            print(f"  {g['at_ms']:7.1f}: {g['ms']:6.2f}  {g['after']} -> {g['before']}")
        print("blocking CUDA calls (at ms: ms):")
        for b in s["blocking_calls"]:
            print(f"  {b['at_ms']:7.1f}: {b['ms']:6.2f}  {b['call']}")
        print("top kernels (ms):")
        for name, ms in s["top_kernels_ms"].items():
            print(f"  {ms:7.2f}  {name}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
