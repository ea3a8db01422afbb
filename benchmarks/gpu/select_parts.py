"""What a frame's selection costs on the GPU, part by part (stage 3, Triton, window design).

Times the selection launches of one CUDA-graph replay (torch profiler, as ``kernel_times.py``)
with parts of the selection replaced by trivial stand-ins: the sort that ranks the scores,
the grid barriers between a frame's programs, the separation (eq. 8 / 10) loop, the
guided density (eq. 9, the window's inserts). The kept
tokens are wrong in those variants; only their time matters. The difference to the full
selection is what the part costs.

    python benchmarks/gpu/select_parts.py --frames 32
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel_times import profile_replay  # noqa: E402
from prune_speed import make_tokens  # noqa: E402

from mmgvid_vllm.pruning import token_selection_triton as kernels  # noqa: E402


@triton.jit
def _unsorted(score, rows, row_ok, BLOCK_M: tl.constexpr):
    return rows


@triton.jit
def _no_wait(counter, programs):
    tl.debug_barrier()


@triton.jit
def _no_separation(block, densities, own_density, local, rows, row_ok, M, WM, BLOCK_M: tl.constexpr,
                   CHUNK: tl.constexpr):
    return own_density


@triton.jit
def _no_density(block, nearest, guide, plan, frame, segment, window_first, local, rows, row_ok, T, M, WM,
                KNN: tl.constexpr, G: tl.constexpr, UNROLL: tl.constexpr):
    return rows.to(tl.float32)


STAND_INS = {"sort": ("_ranked", _unsorted), "barriers": ("_wait_for_all", _no_wait),
             "separation": ("_separation", _no_separation), "density": ("_guided_density", _no_density)}


def select_us(tokens: torch.Tensor, retention: float, without: tuple[str, ...]) -> float:
    """Total GPU time of the selection launches with the parts ``without`` stood in for."""
    callers = ("_select_frame", "_select_kernel")
    saved = {name: getattr(kernels, name) for name, _ in STAND_INS.values()}
    saved |= {name: getattr(kernels, name) for name in callers}
    try:
        for part in without:
            name, stand_in = STAND_INS[part]
            setattr(kernels, name, stand_in)
        # New JIT functions for the callers: their cache keys (which include their callees'
        # sources, computed once per function) change, so the kernel is compiled with the stand-ins.
        kernels._select_frame = triton.jit(kernels._select_frame.fn)
        kernels._select_kernel = triton.jit(kernels._select_kernel.fn, do_not_specialize=["window"])
        kernels._WORKSPACES.clear()
        return profile_replay(tokens, retention)["kernels"]["_select_kernel"]["total_us"]
    finally:
        for name, value in saved.items():
            setattr(kernels, name, value)
        kernels._WORKSPACES.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[32])
    parser.add_argument("--content", default="static", choices=["shots", "static", "random"])
    parser.add_argument("--retention", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    variants = [(), ("sort",), ("barriers",), ("separation",), ("density",), ("sort", "barriers", "separation", "density")]
    results = {}
    for frames in args.frames:
        tokens = make_tokens(args.content, frames, 3584, "cuda", torch.bfloat16)
        print(f"\n{args.content}, {frames} frames, r={args.retention}\n| without | selection us | per frame us |\n|---|---|---|")
        for without in variants:
            total = select_us(tokens, args.retention, without)
            results[f"{frames}:{'+'.join(without) or 'nothing'}"] = total
            print(f"| {' + '.join(without) or '(full selection)'} | {total:.0f} | {total / frames:.1f} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
