"""GPU time of each launch of the Triton stage 3 (CUDA events, eager launches), for one video.

Shows whether a step's time goes to the merges (falls as fewer later frames remain) or to
the selection (a constant per step), and what the in-frame launch costs.

    python benchmarks/gpu/step_times.py --content static --frames 32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from prune_speed import make_tokens  # noqa: E402
from tune_triton import plan  # noqa: E402

from mmgvid_vllm.pruning import token_selection_triton as kernels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", default="static", choices=["shots", "static", "random"])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--retention", type=float, default=0.25)
    args = parser.parse_args()
    tokens = make_tokens(args.content, args.frames, 3584, "cuda", torch.bfloat16)
    segments, budgets = plan(tokens, args.retention)
    workspace = kernels._Workspace(*tokens.shape, tokens.dtype, 5, tokens.device)
    workspace.tokens.copy_(tokens)
    workspace.plan.copy_(kernels._plan(segments, budgets))
    longest = max(len(s) for s in segments)
    workspace.run(longest)  # compile
    starts, ends = [], []
    merge_kernel, rank_kernel = kernels._merge_kernel, kernels._rank_kernel

    class Timed:  # records a CUDA event before or after each launch of the wrapped kernel
        def __init__(self, kernel, events, before):
            self.kernel, self.events, self.before = kernel, events, before

        def __getitem__(self, grid):
            def launch(*a, **k):
                event = torch.cuda.Event(enable_timing=True)
                if self.before:
                    event.record()
                self.kernel[grid](*a, **k)
                if not self.before:
                    event.record()
                self.events.append(event)
            return launch

    kernels._merge_kernel = Timed(merge_kernel, starts, before=True)
    kernels._rank_kernel = Timed(rank_kernel, ends, before=False)
    try:
        first = torch.cuda.Event(enable_timing=True)
        first.record()
        workspace.run(longest)
        torch.cuda.synchronize()
    finally:
        kernels._merge_kernel, kernels._rank_kernel = merge_kernel, rank_kernel
    events = list(zip(starts, ends))
    in_frame = first.elapsed_time(events[0][0]) * 1e3
    steps = [start.elapsed_time(end) * 1e3 for start, end in events]
    print(f"{args.content} T={args.frames}: in-frame launch + gap {in_frame:.1f} us; per position (us):")
    print(" ".join(f"{p}:{t:.0f}" for p, t in zip(range(-1, longest - 1), steps)))
    print(f"sum {sum(steps):.0f} us")


if __name__ == "__main__":
    main()
