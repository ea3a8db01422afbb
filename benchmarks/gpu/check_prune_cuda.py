"""On a CUDA machine: the kept indices on the GPU equal those on the CPU, for many inputs.

Covers fp32 and bf16 inputs, random / scene-structured / identical-frame / all-zero videos and
T in 1..64 with M = 196, plus a run under `torch.use_deterministic_algorithms(True)`.
Also ``prune(..., on_error=)`` (stages 1-2 on the planner thread, the GPU waiting for its
plan): the same indices as ``prune`` on the GPU for every case; no synchronising call
(``torch.cuda.set_sync_debug_mode("error")``); and how long the host takes to return while
the GPU is still busy with earlier work (~``--busy-ms`` of matmuls), with and without it.

    python benchmarks/gpu/check_prune_cuda.py --cases 200
"""

from __future__ import annotations

import argparse
import statistics
import time

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
    parser.add_argument("--busy-ms", type=float, default=30.0, help="GPU work queued before each timed call")
    args = parser.parse_args()
    mismatches, planner_mismatches, errors = [], [], []
    for case in tqdm(range(args.cases), desc="cpu vs cuda"):
        tokens, retention = video(case)
        on_gpu = prune(tokens.cuda(), retention)
        if not torch.equal(prune(tokens, retention), on_gpu.cpu()):
            mismatches.append(case)
        if not torch.equal(prune(tokens.cuda(), retention, on_error=errors.append), on_gpu):
            planner_mismatches.append(case)
    print(f"cpu vs cuda: {args.cases - len(mismatches)}/{args.cases} identical; mismatching cases: {mismatches}")
    print(f"planner thread vs cuda: {args.cases - len(planner_mismatches)}/{args.cases} identical; "
          f"mismatching cases: {planner_mismatches}; errors: {errors}")
    check_no_wait(args.busy_ms)
    torch.use_deterministic_algorithms(True)
    tokens, retention = video(1)
    deterministic = torch.equal(prune(tokens.cuda(), retention).cpu(), prune(tokens, retention))
    print(f"under use_deterministic_algorithms: {'identical' if deterministic else 'DIFFERENT'}")


def check_no_wait(busy_ms: float) -> None:
    """A 32-frame bf16 7B-shape video behind ~``busy_ms`` of queued matmuls: the host time of
    ``prune`` with and without ``on_error`` (median of 10), and no sync with it."""
    tokens = torch.randn(32, 196, 3584, device="cuda", dtype=torch.bfloat16)
    square = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):  # compile, capture
        prune(tokens, 0.25, on_error=print)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        square @ square
    torch.cuda.synchronize()
    per_matmul_ms = (time.perf_counter() - start) * 100
    host_ms = {}
    for name, kwargs in (("prune", {}), ("prune(on_error=)", {"on_error": print})):
        samples = []
        for _ in range(10):
            for _ in range(max(1, round(busy_ms / per_matmul_ms))):
                square @ square
            start = time.perf_counter()
            prune(tokens, 0.25, **kwargs)
            samples.append((time.perf_counter() - start) * 1e3)
            torch.cuda.synchronize()
        host_ms[name] = statistics.median(samples)
    torch.cuda.set_sync_debug_mode("error")
    try:
        kept = prune(tokens, 0.25, on_error=print)
        no_sync = "no sync"
    except RuntimeError as exc:
        no_sync = f"SYNC: {exc}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    same = torch.equal(kept, prune(tokens, 0.25)) if no_sync == "no sync" else False
    print(f"host ms to return behind ~{busy_ms:.0f} ms of GPU work (median of 10): "
          + ", ".join(f"{name} {ms:.2f}" for name, ms in host_ms.items())
          + f"; prune(on_error=) under sync debug mode: {no_sync}, {'same' if same else 'DIFFERENT'} indices")


if __name__ == "__main__":
    main()
