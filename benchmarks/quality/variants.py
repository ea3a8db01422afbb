"""The pruning variants compared: the five methods and the paper's MMG-Vid ablations.

Every variant maps ``(tokens (T, M, D), retention) -> LongTensor (K,)`` sorted flat indices
with the same ``K = num_kept(T, M, retention)``.

Ablations (paper Table 4 and Figure 3), all with tau = 0.95 and the default R_min:
- ``mmgvid lam=x``: lambda of eq. 5;
- ``mmgvid dpc-knn``: stage 3 is plain DPC-KNN in every frame (each frame its own
  segment for ``select_tokens``), with MMG-Vid's segments and frame budgets;
- ``mmgvid uniform-budget``: MMG-Vid's segments and TG-DPC, but the same budget in every
  frame (``split_evenly(keep, T)``) instead of marginal-gain budgeting.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from mmgvid_vllm.pruning import METHODS, MMGVidOptions, num_kept, prune
from mmgvid_vllm.pruning.budgeting import frame_budgets, selection_zscores
from mmgvid_vllm.pruning.counts import split_evenly
from mmgvid_vllm.pruning.segmentation import segment_frames
from mmgvid_vllm.pruning.token_selection import select_tokens

__all__ = [
    "Variant", "METHOD_VARIANTS", "LAMBDAS", "LAMBDA_VARIANTS", "MODULE_VARIANTS", "mmgvid_ablation", "segments_of"
]

Variant = Callable[[torch.Tensor, float], torch.Tensor]
LAMBDAS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)


def _frame_gram(tokens: torch.Tensor) -> np.ndarray:
    """``(T, M, D)`` tokens -> ``(T, T)`` float64 Gram matrix of the frame means (stages 1-2 input)."""
    means = tokens.float().mean(dim=1).double()  # as mmgvid_keep_mask computes it
    return (means @ means.T).numpy()


def segments_of(tokens: torch.Tensor) -> list[range]:
    """MMG-Vid's stage-1 segments of ``(T, M, D)`` tokens (tau = 0.95)."""
    return segment_frames(_frame_gram(tokens), MMGVidOptions().tau)


def _mask_to_indices(mask: torch.Tensor) -> torch.Tensor:
    """``(T, M)`` bool -> sorted ``(K,)`` flat indices."""
    return mask.reshape(-1).nonzero().squeeze(-1)


def mmgvid_ablation(
    tokens: torch.Tensor, retention: float, *, per_frame_dpc: bool, uniform_budget: bool
) -> torch.Tensor:
    """MMG-Vid with stage 3 and/or stage 2 replaced, as described in the module docstring
    (both ``False``: plain MMG-Vid). ``(T, M, D)`` -> sorted ``(K,)`` flat indices."""
    options = MMGVidOptions()
    work = tokens.float()
    num_frames, per_frame, _ = work.shape
    keep = num_kept(num_frames, per_frame, retention)
    gram = _frame_gram(work)
    segments = segment_frames(gram, options.tau)
    if uniform_budget:
        budgets = split_evenly(keep, num_frames)
    else:
        zscores = selection_zscores(gram, segments, options.lam)
        budgets = frame_budgets(segments, zscores, per_frame, keep, options.floor_ratio(retention))
    guide_segments = [range(t, t + 1) for t in range(num_frames)] if per_frame_dpc else segments
    return _mask_to_indices(select_tokens(work, guide_segments, budgets, options.knn))


METHOD_VARIANTS: dict[str, Variant] = {m: partial(prune, method=m) for m in METHODS}
LAMBDA_VARIANTS: dict[str, Variant] = {f"mmgvid lam={lam}": partial(prune, method="mmgvid", lam=lam) for lam in LAMBDAS}
MODULE_VARIANTS: dict[str, Variant] = {
    "mmgvid": partial(prune, method="mmgvid"),
    "mmgvid dpc-knn": partial(mmgvid_ablation, per_frame_dpc=True, uniform_budget=False),
    "mmgvid uniform-budget": partial(mmgvid_ablation, per_frame_dpc=False, uniform_budget=True),
}
