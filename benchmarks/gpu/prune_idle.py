"""GPU idle that pruning adds to a prefill step, without vLLM: the step's shape on one GPU.

Each step queues what vLLM's prefill of one video queues, in the same order and on one stream:
for a pruned video the normalisation of its raw uint8 pixels (``pixels.normalize_video``, with
the ``(2, C)`` normalisation on the host, as the plugin receives it), a vision-tower stand-in
(SigLIP-so400m-sized bf16 matmuls over the frames' 729 patches, then a projection to the
video's ``(T, 196, 3584)`` tokens), then ``prune`` (with ``on_report``, as the
plugin calls it) and the gather of the kept tokens, then an LLM stand-in (Qwen2-7B-sized MLP
matmuls over the kept tokens). Steps are 150 ms apart, under torch's profiler; per step the GPU
span, busy time (union of kernels and copies) and idle = span - busy
(``profile_prefill.summarize``). Idle attributable to pruning = the median idle of pruned steps
minus that of unpruned ones (retention 1.0: no prune, every token to the LLM stand-in), written
as ``pruning_gpu_idle_ms`` per retention (issue 20's target: <= 2 ms). Before that, one pruned
step of each frame count runs under ``torch.cuda.set_sync_debug_mode("error")``: any call that
makes the host wait for the device raises, recorded as ``host_waits`` (``null``: none).

For the same measure inside the real server, see ``profile_prefill.py``.

    python3 benchmarks/gpu/prune_idle.py --frames 32 64 --retentions 1.0 0.25 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.gpu.profile_prefill import GPU_CATEGORIES, bursts, load_events, summarize
from mmgvid_vllm.pixels import normalize_video
from mmgvid_vllm.pruning import prune

SIZE, PATCHES, TOKENS, VISION_DIM, VISION_MLP, LLM_DIM, LLM_MLP = 384, 729, 196, 1152, 4304, 3584, 18944


def weights(layers: int, llm_layers: int) -> dict[str, torch.Tensor]:
    def w(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device="cuda", dtype=torch.bfloat16) / shape[0] ** 0.5

    return {"up": w(VISION_DIM, VISION_MLP), "down": w(VISION_MLP, VISION_DIM), "proj": w(VISION_DIM, LLM_DIM),
            "llm_up": w(LLM_DIM, LLM_MLP), "llm_down": w(LLM_MLP, LLM_DIM), "layers": layers, "llm_layers": llm_layers,
            "normalization": torch.tensor([[122.8, 116.3, 104.0], [68.5, 66.7, 70.6]])}  # (2, C) on the host


def step(model: dict, frames: int, retention: float) -> None:
    """Queue one prefill step of one video (nothing here waits for the GPU)."""
    if retention < 1.0:  # raw 0..255 pixels, normalised on the device (the plugin's path)
        pixels = torch.randint(0, 256, (frames, 3, SIZE, SIZE), device="cuda", dtype=torch.uint8)
        normalize_video(pixels, model["normalization"], torch.bfloat16)
    x = torch.randn(frames * PATCHES, VISION_DIM, device="cuda", dtype=torch.bfloat16)
    for _ in range(model["layers"]):
        x = x + torch.nn.functional.gelu(x @ model["up"]) @ model["down"]
    tokens = (x[: frames * TOKENS] @ model["proj"]).view(frames, TOKENS, LLM_DIM)
    if retention < 1.0:
        kept = prune(tokens, retention, on_report=lambda report: None)
        hidden = tokens.reshape(-1, LLM_DIM)[kept]
    else:
        hidden = tokens.reshape(-1, LLM_DIM)
    for _ in range(model["llm_layers"]):
        hidden = hidden + torch.nn.functional.silu(hidden @ model["llm_up"]) @ model["llm_down"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--retentions", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--repeats", type=int, default=10, help="profiled steps per configuration")
    parser.add_argument("--vision-layers", type=int, default=27)
    parser.add_argument("--llm-layers", type=int, default=28)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prune_idle.json"))
    args = parser.parse_args()
    if 1.0 not in args.retentions:
        parser.error("--retentions must include 1.0 (the unpruned steps are the baseline)")
    model = weights(args.vision_layers, args.llm_layers)
    configs = [(f, r) for f in args.frames for r in args.retentions]
    for f, r in configs:  # compile, capture the pruning's CUDA graphs
        for _ in range(3):
            step(model, f, r)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for f in args.frames:
            step(model, f, min(args.retentions))
        host_waits = None
    except RuntimeError as error:
        host_waits = str(error)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    print(f"host waits for the device in a pruned step: {host_waits or 'none'}")

    order = [c for _ in range(args.repeats) for c in configs]  # interleaved
    with tempfile.TemporaryDirectory() as tmp:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as profiler:
            for f, r in order:
                step(model, f, r)
                torch.cuda.synchronize()
                time.sleep(0.15)  # a gap that splits the trace into steps
        trace = Path(tmp) / "trace.json"
        profiler.export_chrome_trace(str(trace))
        events = load_events(trace)
    gpu = [e for e in events if e.get("cat") in GPU_CATEGORIES]
    cpu = [e for e in events if e.get("cat") == "cuda_runtime"]
    steps = bursts(gpu)
    if len(steps) != len(order):
        raise SystemExit(f"{len(steps)} GPU bursts for {len(order)} steps: cannot attribute them")
    per_config: dict[tuple[int, float], list[dict]] = {}
    for config, burst in zip(order, steps):
        per_config.setdefault(config, []).append(summarize(burst, cpu, 3))
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "repeats": args.repeats,
              "host_waits": host_waits, "steps": {}, "pruning_gpu_idle_ms": {}}
    print(f"{'frames':>6} {'retention':>9} {'span ms':>8} {'busy ms':>8} {'idle ms':>8} {'+idle ms':>8}")
    for f in args.frames:
        medians = {r: {key: statistics.median(s[key] for s in per_config[(f, r)])
                       for key in ("span_ms", "busy_ms", "idle_ms")} for r in args.retentions}
        result["steps"][str(f)] = {str(r): m for r, m in medians.items()}
        result["pruning_gpu_idle_ms"][str(f)] = {}
        for r, m in medians.items():
            added = m["idle_ms"] - medians[1.0]["idle_ms"]
            if r < 1.0:
                result["pruning_gpu_idle_ms"][str(f)][str(r)] = round(added, 3)
            print(f"{f:>6} {r:>9} {m['span_ms']:>8.2f} {m['busy_ms']:>8.2f} {m['idle_ms']:>8.2f} {added:>8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
