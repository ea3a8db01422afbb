"""Run under ``TRITON_INTERPRET=1`` (Triton's CPU interpreter): the device's stages 1-2
(``plan_triton``) against the host's, the Triton stage 3 against the torch stage 3 (same
segments and budgets), and the whole ``prune`` (which then takes the device path) against the
host path and the plain-loop reference, on seeded random and structured videos;
``prune(..., on_report=)``, also with non-finite tokens (uniform selection, reported).
Prints one JSON line.

    cd tests && TRITON_INTERPRET=1 python -m helpers.triton_cases --cases 30
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from reference_mmgvid import reference_prune

from mmgvid_vllm.pruning import prune
from mmgvid_vllm.pruning.counts import num_kept, split_evenly
from mmgvid_vllm.pruning.mmgvid import MMGVidOptions, segments_and_budgets
from mmgvid_vllm.pruning.plan_triton import block_frames, plan_on_device
from mmgvid_vllm.pruning.segmentation import frame_mean_gram
from mmgvid_vllm.pruning.token_selection import _inverse_norms, select_tokens
from mmgvid_vllm.pruning.token_selection_triton import supports, workspace_for


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


def triton_stage3(tokens: torch.Tensor, segments: list[range], budgets: list[int]) -> torch.Tensor:
    """The Triton stage 3 alone, under a plan written from the host's segments and budgets."""
    workspace = workspace_for(tokens, 5)
    workspace.tokens.copy_(tokens)
    _inverse_norms(workspace.tokens, out=workspace.inv_norms)
    for segment in segments:
        frame_budgets = budgets[segment.start:segment.stop]
        workspace.plan[:, segment.start:segment.stop] = torch.tensor(
            [[segment.start] * len(segment), frame_budgets, np.cumsum([0, *frame_budgets[:-1]]).tolist(),
             [segment.stop] * len(segment)])
    workspace.run(-(-max(len(segment) for segment in segments) // 4))
    return workspace.keep.view(torch.bool)


def device_plan(gram: np.ndarray, per_frame: int, keep: int, options: tuple[float, float, float]):
    """``plan_triton``'s stages 1-2 for a host Gram matrix: ``((4, T) plan, [segments, failed])``."""
    frames = gram.shape[0]
    gram = torch.from_numpy(gram)
    integral = torch.zeros(frames + 1, frames + 1, dtype=torch.float64)
    integral[1:, 1:] = gram.cumsum(0).cumsum(1)
    plan, outcome = torch.zeros(4, frames, dtype=torch.int32), torch.zeros(2, dtype=torch.int32)
    plan_on_device(gram, integral, torch.tensor([*options, keep], dtype=torch.float64), per_frame, plan, outcome,
                   torch.zeros(3 * (block_frames(frames) + 1), dtype=torch.int32))
    return plan.tolist(), outcome.tolist()


def host_plan(gram: np.ndarray, per_frame: int, keep: int, retention: float, options: MMGVidOptions):
    """The host's stages 1-2 as the device writes them."""
    segments, budgets = segments_and_budgets(gram, per_frame, keep, retention, options)
    offsets = [int(sum(budgets[segment.start:frame])) for segment in segments for frame in segment]
    plan = [[segment.start for segment in segments for _ in segment], budgets, offsets,
            [segment.stop for segment in segments for _ in segment]]
    return plan, [len(segments), 0]


def plan_mismatches(cases: int) -> list[int]:
    """Stages 1-2, device vs host, on Gram matrices of frames drawn around a few scenes (shots
    in order, or scenes revisited at random), noise from tiny to large, several tau and ratios."""
    mismatches = []
    for case in range(cases):
        rng = np.random.default_rng(case)
        frames, per_frame = int(rng.integers(1, 40)), int(rng.integers(1, 50))
        scenes = rng.normal(size=(int(rng.integers(1, 6)), 16))
        which = rng.integers(0, len(scenes), frames)
        features = scenes[which if case % 3 == 0 else np.sort(which)]
        features = features + rng.normal(size=features.shape) * rng.choice([0.01, 0.2, 0.5])
        retention = float(rng.choice([0.1, 0.15, 0.25, 0.5, 1.0]))
        options = MMGVidOptions(tau=float(rng.choice([0.9, 0.95, 0.99])))
        keep = num_kept(frames, per_frame, retention)
        gram = features @ features.T
        on_device = device_plan(gram, per_frame, keep, (options.tau, options.lam, options.floor_ratio(retention)))
        if on_device != host_plan(gram, per_frame, keep, retention, options):
            mismatches.append(case)
    return mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=30)
    args = parser.parse_args()
    stage3, paths = [], []
    for case in range(args.cases):
        tokens, segments, budgets = case_video(case)
        if not torch.equal(triton_stage3(tokens, segments, budgets), select_tokens(tokens, segments, budgets, 5)):
            stage3.append(case)
        if case % 3 != 1:  # the whole prune, device path vs host path: on a third of the videos
            continue
        retention = [0.25, 0.15, 0.5][case // 3 % 3]
        keep = num_kept(*tokens.shape[:2], retention)
        segments, budgets = segments_and_budgets(frame_mean_gram(tokens).numpy(), tokens.shape[1], keep, retention,
                                                 MMGVidOptions())
        host = torch.nonzero(select_tokens(tokens, segments, budgets, 5).reshape(-1)).squeeze(1)
        if not torch.equal(prune(tokens, retention), host):
            paths.append(case)
    whole = []
    for case in range(args.cases // 3):
        gen = torch.Generator().manual_seed(1000 + case)
        tokens = torch.randn(3, 12, 16, generator=gen)[torch.tensor([0, 0, 1, 1, 1, 2, 0, 2])]
        tokens = tokens + 0.05 * torch.randn(tokens.shape, generator=gen)
        retention = [0.25, 0.15, 0.5][case % 3]
        if prune(tokens, retention).tolist() != reference_prune(tokens.double().numpy(), retention):
            whole.append(case)
    print(json.dumps({"interpreted": supports(torch.zeros(1, 1, 1), 5), "plan_mismatches": plan_mismatches(args.cases),
                      "stage3_mismatches": stage3, "device_vs_host_prune_mismatches": paths,
                      "prune_vs_reference_mismatches": whole, "reports": report_cases()}))


def report_cases() -> dict[str, object]:
    """``prune(..., on_report=)``: the same indices as ``prune`` for 4 videos in a row, the
    segment counts and failures reported, then non-finite tokens."""
    reports, mismatches = [], []
    for case in range(4):
        tokens = torch.randn(3, 20, 24, generator=torch.Generator().manual_seed(2000 + case))[
            torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])]
        tokens = tokens + 0.05 * torch.randn(tokens.shape, generator=torch.Generator().manual_seed(case))
        kept = prune(tokens, 0.25, on_report=reports.append)
        if not torch.equal(kept, prune(tokens, 0.25)):
            mismatches.append(case)
    tokens[4, 3, 0] = float("nan")
    uniform_kept = torch.equal(prune(tokens, 0.25, on_report=reports.append),
                               prune(torch.zeros_like(tokens), 0.25, "uniform"))
    return {"mismatches": mismatches, "segments": [int(r.segments) for r in reports],
            "failed": [bool(r.failed) for r in reports], "nonfinite_kept_uniform": uniform_kept}


if __name__ == "__main__":
    main()
