"""Sweep the Triton stage-3 launch parameters on the GPU and time stage 3 for each.

Reports the GPU time of one CUDA-graph replay of ``select_tokens_triton`` (first kernel
start to last kernel end, torch profiler, as ``kernel_times.py``: wall times on the lent
GPU machines swing 2-3x with host noise) for every combination of window length,
piece-distance tile, push tile (rows, columns, warps), feature chunk and tokens per selection
program, on one-shot (slowest) and multi-shot videos.
The module constants are set per variant and the graph cache is cleared, so each variant is
compiled and captured afresh.

    python benchmarks/gpu/tune_triton.py --frames 32 64
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel_times import profile_replay  # noqa: E402
from prune_speed import make_tokens  # noqa: E402

from mmgvid_vllm.pruning import token_selection_triton as kernels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--content", nargs="+", default=["static", "shots"])
    parser.add_argument("--window", type=int, nargs="+", default=[kernels._WINDOW], help="positions per window")
    parser.add_argument("--tile", type=int, nargs="+", default=[kernels._TILE], help="piece-distance tile")
    parser.add_argument("--push-rows", type=int, nargs="+", default=[kernels._PUSH_ROWS], help="rows of a push tile")
    parser.add_argument("--push-cols", type=int, nargs="+", default=[kernels._PUSH_COLS],
                        help="kept tokens (columns) of a push tile")
    parser.add_argument("--push-warps", type=int, nargs="+", default=[kernels._PUSH_WARPS],
                        help="warps of a push program")
    parser.add_argument("--block-d", type=int, nargs="+", default=[kernels._BLOCK_D], help="feature chunk of a tile product")
    parser.add_argument("--select-rows", type=int, nargs="+", default=[kernels._SELECT_ROWS],
                        help="tokens of a frame per selection program")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    videos = {(c, t): make_tokens(c, t, 3584, "cuda", torch.bfloat16) for c in args.content for t in args.frames}
    rows = []
    names = ("window", "tile", "push_rows", "push_cols", "push_warps", "block_d", "select_rows")
    for variant in itertools.product(*(getattr(args, name) for name in names)):
        for name, value in zip(names, variant):
            setattr(kernels, f"_{name.upper()}", value)
        kernels._WORKSPACES.clear()
        row = dict(zip(names, variant))
        for (content, frames), tokens in videos.items():
            try:
                row[f"{content}{frames}_us"] = round(profile_replay(tokens, 0.25)["span_us"])
            except Exception as error:  # e.g. out of shared memory for a large tile
                row[f"{content}{frames}_us"] = f"error: {type(error).__name__}"
        rows.append(row)
        print(row, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
