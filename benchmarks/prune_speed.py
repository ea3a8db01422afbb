"""Time ``prune`` for LLaVA-OneVision shapes, MMG-Vid beside vLLM's EVS and VidCom2 in one run.

Every configuration is timed ``--repeats`` times after ``--warmup`` untimed calls, and the
median is reported (on CUDA each call is synchronised before the clock stops). Prints a
Markdown table and writes JSON.

Inputs (``--content``):
  shots   4 shots of static content with small noise: a few segments (typical video)
  static  one static shot: a single segment, the slowest case for MMG-Vid (the guide set
          grows over every frame)
  random  i.i.d. Gaussian tokens: every frame differs, segments of two frames

Examples:
  python benchmarks/prune_speed.py                          # CPU, all shapes
  python benchmarks/prune_speed.py --frames 32 --dims 3584 --retentions 0.25
  python benchmarks/prune_speed.py --device cuda --repeats 50 --out benchmarks/results/prune_speed_gpu.json
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from mmgvid_vllm.pruning import prune

TOKENS_PER_FRAME = 196  # LLaVA-OneVision video frame after 2x2 pooling


def make_tokens(content: str, frames: int, dim: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """``(T, 196, D)`` synthetic tokens of the given kind (seeded)."""
    gen = torch.Generator().manual_seed(0)
    if content == "random":
        tokens = torch.randn(frames, TOKENS_PER_FRAME, dim, generator=gen)
    else:
        shots = 1 if content == "static" else 4
        bases = torch.randn(shots, TOKENS_PER_FRAME, dim, generator=gen)
        which = torch.arange(frames) * shots // frames
        tokens = bases[which] + 0.05 * torch.randn(frames, TOKENS_PER_FRAME, dim, generator=gen)
    return tokens.to(device=device, dtype=dtype)


def time_ms(fn, device: str, warmup: int, repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--dims", type=int, nargs="+", default=[3584, 1152],
                        help="3584: after the 7B projector; 1152: SigLIP")
    parser.add_argument("--retentions", type=float, nargs="+", default=[0.25, 0.15, 0.10])
    parser.add_argument("--methods", nargs="+", default=["mmgvid", "evs", "vidcom2"])
    parser.add_argument("--content", nargs="+", default=["shots", "static"], choices=["shots", "static", "random"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prune_speed_cpu.json"))
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    configs = list(itertools.product(args.content, args.dims, args.frames, args.retentions))
    rows = []
    for content, dim, frames, retention in tqdm(configs, desc="prune speed", unit="shape"):
        tokens = make_tokens(content, frames, dim, args.device, dtype)
        row = {"content": content, "dim": dim, "frames": frames, "retention": retention}
        for method in args.methods:
            call = functools.partial(prune, tokens, retention, method=method)
            row[f"{method}_ms"] = time_ms(call, args.device, args.warmup, args.repeats)
        rows.append(row)

    header = ["content", "D", "T", "retention"] + [f"{m} ms" for m in args.methods]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [row["content"], row["dim"], row["frames"], row["retention"]]
        cells += [f"{row[f'{m}_ms']:.2f}" for m in args.methods]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    if args.device.startswith("cuda"):
        device_name = torch.cuda.get_device_name()
    else:
        device_name = f"CPU x{torch.get_num_threads()} threads"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device_name, "torch": torch.__version__, "dtype": args.dtype,
                                    "repeats": args.repeats, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
