"""What a frame's selection and a push cost on the GPU, part by part (stage 3, Triton).

Times the selection (or push) launches of one CUDA-graph replay (torch profiler, as
``kernel_times.py``) with parts replaced by trivial stand-ins. Selection: the sort that ranks
the scores, the grid barriers between a frame's programs, the separation (eq. 8 / 10) loop,
the guided density (eq. 9, the window's inserts). Push: the tile products (the feature
loop), the merge of a tile into the nearest lists. The kept tokens are wrong in those
variants; only their time matters. The difference to the full launch is what the part costs.

    python benchmarks/gpu/select_parts.py --frames 32
    python benchmarks/gpu/select_parts.py --launch push --frames 32 64
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


@triton.jit
def _no_products(tokens, flat_rows, row_ok, flat_cols, col_ok, D, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
                 BLOCK_D: tl.constexpr, IEEE: tl.constexpr):
    return (flat_rows[:, None] + flat_cols[None, :]).to(tl.float32)


@triton.jit
def _no_merge(dots, rows, row_ok, kept, col_ok, count, tiles, region, inv_norms, nearest, partial, counter,
              col_tile, T, M, SAME: tl.constexpr, KNN: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr):
    tl.store(partial + rows * KNN, tl.sum(dots, axis=1), mask=row_ok)  # keeps the products live


STAND_INS = {"sort": ("_ranked", _unsorted), "barriers": ("_wait_for_all", _no_wait),
             "separation": ("_separation", _no_separation), "density": ("_guided_density", _no_density),
             "products": ("_tile_products", _no_products), "merge": ("_merge_tile", _no_merge)}
LAUNCHES = {  # the kernel timed, its jitted callers (re-jitted so they see the stand-ins), the variants
    "select": ("_select_kernel", ("_select_frame",),
               [(), ("sort",), ("barriers",), ("separation",), ("density",),
                ("sort", "barriers", "separation", "density")]),
    "push": ("_push_kernel", (), [(), ("products",), ("merge",), ("products", "merge")]),
}


def launch_us(tokens: torch.Tensor, retention: float, launch: str, without: tuple[str, ...]) -> list[float]:
    """GPU time of each ``launch`` kernel (one per window) with the parts ``without`` stood in
    for (run the variant without stand-ins first: kernels compiled meanwhile keep the real parts)."""
    kernel, helpers, _ = LAUNCHES[launch]
    callers = (*helpers, kernel)
    saved = {name: getattr(kernels, name) for name, _ in STAND_INS.values()}
    saved |= {name: getattr(kernels, name) for name in callers}
    try:
        for part in without:
            name, stand_in = STAND_INS[part]
            setattr(kernels, name, stand_in)
        # New JIT functions for the callers: their cache keys (which include their callees'
        # sources, computed once per function) change, so the kernel is compiled with the stand-ins.
        for name in helpers:
            setattr(kernels, name, triton.jit(getattr(kernels, name).fn))
        setattr(kernels, kernel, triton.jit(getattr(kernels, kernel).fn, do_not_specialize=["window"]))
        kernels._WORKSPACES.clear()
        return profile_replay(tokens, retention)[f"{launch}_us_by_window"]
    finally:
        for name, value in saved.items():
            setattr(kernels, name, value)
        kernels._WORKSPACES.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[32])
    parser.add_argument("--content", default="static", choices=["shots", "static", "random"])
    parser.add_argument("--retention", type=float, default=0.25)
    parser.add_argument("--launch", default="select", choices=sorted(LAUNCHES), help="the launches timed")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    for frames in args.frames:
        tokens = make_tokens(args.content, frames, 3584, "cuda", torch.bfloat16)
        print(f"\n{args.content}, {frames} frames, r={args.retention}\n"
              f"| without | {args.launch} us | per frame us | by window us |\n|---|---|---|---|")
        for without in LAUNCHES[args.launch][2]:
            by_window = launch_us(tokens, args.retention, args.launch, without)
            total = sum(by_window)
            results[f"{frames}:{'+'.join(without) or 'nothing'}"] = {"total_us": total, "by_window_us": by_window}
            print(f"| {' + '.join(without) or '(full launch)'} | {total:.0f} | {total / frames:.1f} | "
                  f"{' '.join(f'{t:.0f}' for t in by_window)} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
