"""Where the time of one ``prune`` call goes on the GPU: phase timings and a torch profile.

Phases (each synchronised, median of ``--repeats``): the frame-mean Gram matrix and its copy
to the host (the one sync), stages 1-2 on the host, stage 3 (Triton on CUDA: the staging that
``prune`` overlaps with the two before, then the selection's graph replay), the whole
``prune`` call, and the same call with ``method="uniform"`` (the fixed cost of ``prune``
itself). Then a ``torch.profiler`` table of one MMG-Vid call, sorted by CPU time, which
shows kernel-launch and host overheads next to the GPU time of every kernel.

    python benchmarks/gpu/profile_prune.py --content static --frames 32 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prune_speed import make_tokens  # noqa: E402

from mmgvid_vllm.pruning import MMGVidOptions, num_kept, prune  # noqa: E402
from mmgvid_vllm.pruning import token_selection_triton as kernels  # noqa: E402
from mmgvid_vllm.pruning.mmgvid import frame_mean_gram, mmgvid_keep_mask, segments_and_budgets  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", default="static", choices=["shots", "static", "random"])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--dim", type=int, default=3584)
    parser.add_argument("--retention", type=float, default=0.25)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rows", type=int, default=25, help="rows of the profiler table")
    parser.add_argument("--out", type=Path, default=None, help="write the phase timings as JSON")
    args = parser.parse_args()

    tokens = make_tokens(args.content, args.frames, args.dim, "cuda", getattr(torch, args.dtype))
    options = MMGVidOptions()
    keep = num_kept(args.frames, tokens.shape[1], args.retention)
    for _ in range(3):  # compile the Triton kernels, warm the allocator
        prune(tokens, args.retention)

    host_gram = frame_mean_gram(tokens)

    def host_stages():
        return segments_and_budgets(host_gram, tokens.shape[1], keep, args.retention, options)

    segments, budgets = host_stages()
    workspace = kernels.workspace_for(tokens, options.knn)
    phases = {
        "frame gram + sync": median_ms(lambda: frame_mean_gram(tokens), args.repeats),
        "stages 1-2 (host)": median_ms(host_stages, args.repeats),
        "stage 3 staging (copy, norms)": median_ms(lambda: workspace.stage(tokens), args.repeats),
        "stage 3 selection (plan, graph replay)": median_ms(lambda: workspace.select(segments, budgets), args.repeats),
        "mmgvid_keep_mask": median_ms(lambda: mmgvid_keep_mask(tokens, keep, args.retention, options), args.repeats),
        "prune (mmgvid)": median_ms(lambda: prune(tokens, args.retention), args.repeats),
        "prune (uniform)": median_ms(lambda: prune(tokens, args.retention, method="uniform"), args.repeats),
    }
    print(f"{args.content}, T={args.frames}, D={args.dim}, {args.dtype}, retention {args.retention}: "
          f"{len(segments)} segment(s), longest {max(len(s) for s in segments)} frames")
    print("| phase | ms (median) |\n|---|---|")
    for name, ms in phases.items():
        print(f"| {name} | {ms:.3f} |")

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        prune(tokens, args.retention)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "segments": len(segments),
                                        "phases_ms": phases}, indent=1))


if __name__ == "__main__":
    main()
