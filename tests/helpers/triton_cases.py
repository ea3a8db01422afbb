"""Run under ``TRITON_INTERPRET=1`` (Triton's CPU interpreter): the Triton stage 3 against the
torch stage 3, and the whole ``prune`` (which then takes the Triton path) against the
plain-loop reference, on seeded random and structured videos; ``prune(..., on_segments=,
on_error=)`` against ``prune``, and with non-finite tokens (uniform selection, the error passed
on). Prints one JSON line.

    cd tests && TRITON_INTERPRET=1 python -m helpers.triton_cases --cases 30
"""

from __future__ import annotations

import argparse
import json

import torch
from reference_mmgvid import reference_prune

from mmgvid_vllm.pruning import prune
from mmgvid_vllm.pruning.counts import split_evenly
from mmgvid_vllm.pruning.token_selection import select_tokens
from mmgvid_vllm.pruning.token_selection_triton import select_tokens_triton, supports


def case_video(case: int) -> tuple[torch.Tensor, list[range], list[int]]:
    """``(T, M, D)`` tokens of 3 recurring scenes (a run of identical frames in every 4th case),
    random segments and random front-loaded budgets."""
    gen = torch.Generator().manual_seed(case)
    frames = int(torch.randint(1, 10, (), generator=gen))
    per_frame = int(torch.randint(1, 40, (), generator=gen))
    if case % 5 == 1:  # several windows, and more kept tokens per window than one push tile holds
        frames, per_frame = frames + 8, per_frame + 30
    # Every third case is wide enough (D 130-260) for tile products over several feature chunks.
    if case % 3 == 2:
        dim = int(torch.randint(130, 260, (), generator=gen))
    else:
        dim = int(torch.randint(4, 80, (), generator=gen))
    scenes = torch.randn(3, per_frame, dim, generator=gen)
    tokens = torch.stack([scenes[t * 3 // frames] + 0.3 * torch.randn(per_frame, dim, generator=gen)
                          for t in range(frames)])
    if case % 4 == 0:
        tokens[: frames // 2] = tokens[0]
    cuts = sorted({int(c) for c in torch.randint(1, frames, (2,), generator=gen)}) if frames > 1 else []
    bounds = [0, *cuts, frames]
    segments = [range(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
    budgets = []
    for segment in segments:
        total = int(torch.randint(0, len(segment) * per_frame + 1, (), generator=gen))
        budgets += split_evenly(total, len(segment))
    return tokens, segments, budgets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=30)
    args = parser.parse_args()
    stage3 = []
    for case in range(args.cases):
        tokens, segments, budgets = case_video(case)
        expected = select_tokens(tokens, segments, budgets, 5)
        if not torch.equal(select_tokens_triton(tokens, segments, budgets, 5), expected):
            stage3.append(case)
    whole = []
    for case in range(args.cases // 3):
        gen = torch.Generator().manual_seed(1000 + case)
        tokens = torch.randn(3, 12, 16, generator=gen)[torch.tensor([0, 0, 1, 1, 1, 2, 0, 2])]
        tokens = tokens + 0.05 * torch.randn(tokens.shape, generator=gen)
        retention = [0.25, 0.15, 0.5][case % 3]
        if prune(tokens, retention).tolist() != reference_prune(tokens.double().numpy(), retention):
            whole.append(case)
    print(json.dumps({"interpreted": supports(torch.zeros(1, 1, 1), 5), "stage3_mismatches": stage3,
                      "prune_vs_reference_mismatches": whole, "callbacks": callback_cases()}))


def callback_cases() -> dict[str, object]:
    """``prune(..., on_segments=, on_error=)``: the same indices as ``prune`` for 4 videos in a
    row (one workspace), the segment counts reported, then non-finite tokens."""
    errors, segments, mismatches = [], [], []
    for case in range(4):
        tokens = torch.randn(3, 20, 24, generator=torch.Generator().manual_seed(2000 + case))[
            torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])]
        tokens = tokens + 0.05 * torch.randn(tokens.shape, generator=torch.Generator().manual_seed(case))
        kept = prune(tokens, 0.25, on_segments=segments.append, on_error=lambda exc: errors.append(str(exc)))
        if not torch.equal(kept, prune(tokens, 0.25)):
            mismatches.append(case)
    tokens[4, 3, 0] = float("nan")
    uniform_kept = torch.equal(prune(tokens, 0.25, on_error=lambda exc: errors.append(str(exc))),
                               prune(torch.zeros_like(tokens), 0.25, "uniform"))
    return {"mismatches": mismatches, "segments": segments, "errors": errors, "nonfinite_kept_uniform": uniform_kept}


if __name__ == "__main__":
    main()
