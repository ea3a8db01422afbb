"""On a CUDA machine: the kept indices on the GPU equal those on the CPU, for many inputs.

Covers fp32 and bf16 inputs, random / scene-structured / identical-frame / all-zero videos and
T in 1..64 with M = 196, plus a run under `torch.use_deterministic_algorithms(True)`.

    python benchmarks/gpu/check_prune_cuda.py --cases 200
    python benchmarks/gpu/check_prune_cuda.py --device cpu --cases 8   # the script itself, anywhere (CI)
"""

from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from mmgvid_vllm.pruning import prune


def video(case: int) -> tuple[torch.Tensor, float]:
    gen = torch.Generator().manual_seed(case)
    T = int(torch.randint(1, 65, (1,), generator=gen))
    D = [64, 1152, 3584][case % 3]
    kind = case % 4
    if kind == 0:
        tokens = torch.randn(T, 196, D, generator=gen)
    elif kind == 1:
        scenes = torch.randn(4, 196, D, generator=gen)
        tokens = scenes[torch.randint(0, 4, (T,), generator=gen)] + 0.05 * torch.randn(T, 196, D, generator=gen)
    elif kind == 2:
        tokens = torch.randn(1, 196, D, generator=gen).expand(T, 196, D).contiguous()
    else:
        tokens = torch.zeros(T, 196, D)
    retention = [0.25, 0.15, 0.10, 0.5, 1.0][case % 5]
    return (tokens.bfloat16() if case % 2 else tokens), retention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (default: cuda)")
    args = parser.parse_args()
    mismatches = []
    for case in tqdm(range(args.cases), desc=f"cpu vs {args.device}"):
        tokens, retention = video(case)
        if not torch.equal(prune(tokens, retention), prune(tokens.to(args.device), retention).cpu()):
            mismatches.append(case)
    torch.use_deterministic_algorithms(True)
    tokens, retention = video(1)
    deterministic = torch.equal(prune(tokens.to(args.device), retention).cpu(), prune(tokens, retention))
    print(f"cpu vs {args.device}: {args.cases - len(mismatches)}/{args.cases} identical; "
          f"mismatching cases: {mismatches}")
    print(f"under use_deterministic_algorithms: {'identical' if deterministic else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
