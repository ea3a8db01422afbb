"""GPU time of every kernel of one CUDA-graph replay of stage 3 (torch profiler / CUPTI).

For each kernel name: launches, total and mean GPU time; then the replay's span (first kernel
start to last kernel end), the sum of kernel times, and the idle gaps between kernels; and the
time of each window's selection and push launches. Tells whether a video's time goes to the
sequential selection, the pushes' tile products, or the gaps between dependent launches.

    python benchmarks/gpu/kernel_times.py --content static --frames 32 64
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from prune_speed import make_tokens  # noqa: E402

from mmgvid_vllm.pruning import MMGVidOptions, num_kept  # noqa: E402
from mmgvid_vllm.pruning import token_selection_triton as kernels  # noqa: E402
from mmgvid_vllm.pruning.mmgvid import frame_mean_gram, segments_and_budgets  # noqa: E402


def plan(tokens: torch.Tensor, retention: float) -> tuple[list, list]:
    """Stages 1 and 2 for ``tokens`` (as ``prune`` runs them): segments and frame budgets."""
    keep = num_kept(tokens.shape[0], tokens.shape[1], retention)
    return segments_and_budgets(frame_mean_gram(tokens), tokens.shape[1], keep, retention, MMGVidOptions())


def profile_replay(tokens: torch.Tensor, retention: float) -> dict:
    """GPU times of one CUDA-graph replay of stage 3 (after compiling, capturing, replaying
    once); the tokens are staged (copy, inverse norms) before, as ``prune`` does while the host
    runs stages 1 and 2."""
    segments, budgets = plan(tokens, retention)
    workspace = kernels.workspace_for(tokens, 5)
    workspace.stage(tokens)
    for _ in range(3):  # compile, capture, replay once
        workspace.select(segments, budgets)
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        workspace.select(segments, budgets)
        torch.cuda.synchronize()
    events = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
                     and "memcpy" not in e.name.lower() and "memset" not in e.name.lower()),
                    key=lambda e: e.time_range.start)
    by_name: dict[str, list[float]] = defaultdict(list)
    for e in events:
        by_name[e.name].append(e.time_range.elapsed_us())
    span = events[-1].time_range.end - events[0].time_range.start
    busy = sum(e.time_range.elapsed_us() for e in events)
    return {
        "segments": len(segments), "longest": max(len(s) for s in segments), "span_us": span, "busy_us": busy,
        "select_us_by_window": [round(t, 1) for t in by_name.get("_select_kernel", [])],
        "push_us_by_window": [round(t, 1) for t in by_name.get("_push_kernel", [])],
        "kernels": {name: {"launches": len(t), "total_us": sum(t), "mean_us": sum(t) / len(t)}
                    for name, t in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", nargs="+", default=["static"], choices=["shots", "static", "random"])
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--retention", type=float, default=0.25)
    parser.add_argument("--window", type=int, default=kernels._WINDOW, help="positions per window")
    parser.add_argument("--block-d", type=int, default=kernels._BLOCK_D, help="feature chunk of a tile product")
    parser.add_argument("--stages", type=int, default=kernels._STAGES, help="pipelining depth of the tile products")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    kernels._WINDOW, kernels._BLOCK_D, kernels._STAGES = args.window, args.block_d, args.stages
    results = {}
    for content in args.content:
        for frames in args.frames:
            tokens = make_tokens(content, frames, 3584, "cuda", torch.bfloat16)
            result = profile_replay(tokens, args.retention)
            results[f"{content}-{frames}"] = result | {"window": args.window, "block_d": args.block_d, "stages": args.stages}
            print(f"\n{content}, {frames} frames, r={args.retention}: {result['segments']} segment(s), longest "
                  f"{result['longest']}; span {result['span_us']:.0f} us, kernels busy {result['busy_us']:.0f} us, "
                  f"gaps {result['span_us'] - result['busy_us']:.0f} us")
            print("| kernel | launches | total us | mean us |\n|---|---|---|---|")
            for name, k in result["kernels"].items():
                print(f"| {name[:60]} | {k['launches']} | {k['total_us']:.0f} | {k['mean_us']:.1f} |")
            for step in ("select", "push"):
                print(f"{step} us by window:", " ".join(f"{t:.0f}" for t in result[f"{step}_us_by_window"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
