"""MMG-Vid (AAAI 2026): the three stages put together for one video."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .baselines import uniform_keep_mask
from .budgeting import frame_budgets, selection_zscores
from .segmentation import Segment, frame_mean_gram, segment_frames
from .token_selection import select_tokens

try:
    from . import token_selection_triton
except ImportError:  # no Triton installed: the torch implementation everywhere
    token_selection_triton = None

__all__ = ["MMGVidOptions", "NonFiniteTokens", "mmgvid_keep_mask", "segments_and_budgets"]


@dataclass(frozen=True)
class MMGVidOptions:
    """Hyper-parameters of MMG-Vid, with the paper's values as defaults.

    tau: frame-similarity threshold of eq. 3 (paper: 0.95).
    lam: representativeness/diversity balance of eq. 5 (paper: 0.5), in [0, 1].
    r_min: per-segment minimum ratio of eq. 6. The paper gives no value; ``None`` means
        half the retention ratio, so half the budget is a floor and half follows marginal
        gain. A value above the retention ratio is lowered to it.
    knn: neighbours k of eq. 7 and 9 (the paper gives none; 5 is DPC-KNN's usual choice).
    """

    tau: float = 0.95
    lam: float = 0.5
    r_min: float | None = None
    knn: int = 5

    def __post_init__(self) -> None:
        if not (isinstance(self.tau, (int, float)) and -1.0 <= self.tau <= 1.0):
            raise ValueError(f"tau must be a cosine threshold in [-1, 1], got {self.tau!r}")
        if not (isinstance(self.lam, (int, float)) and 0.0 <= self.lam <= 1.0):
            raise ValueError(f"lam (lambda) must be in [0, 1], got {self.lam!r}")
        if self.r_min is not None and not (isinstance(self.r_min, (int, float)) and 0.0 <= self.r_min <= 1.0):
            raise ValueError(f"r_min must be in [0, 1], got {self.r_min!r}")
        if isinstance(self.knn, bool) or not isinstance(self.knn, int) or self.knn < 1:
            raise ValueError(f"knn must be a positive int, got {self.knn!r}")

    def floor_ratio(self, retention: float) -> float:
        """The R_min actually used at ``retention``."""
        return retention / 2 if self.r_min is None else min(self.r_min, retention)


class NonFiniteTokens(ValueError):
    """Some token is inf or NaN (``prune`` raises it unless given ``on_report``)."""

    def __init__(self) -> None:
        super().__init__("tokens must be finite (found inf or NaN)")


def segments_and_budgets(
    gram: np.ndarray, per_frame: int, keep: int, retention: float, options: MMGVidOptions
) -> tuple[list[Segment], list[int]]:
    """Stages 1 and 2 on the host from the ``(T, T)`` Gram matrix of the frame means: the
    segments and every frame's token budget (``keep`` in all, at most ``per_frame`` each)."""
    segments = segment_frames(gram, options.tau)
    zscores = selection_zscores(gram, segments, options.lam)
    return segments, frame_budgets(segments, zscores, per_frame, keep, options.floor_ratio(retention))


def mmgvid_keep_mask(
    tokens: torch.Tensor, keep: int, retention: float, options: MMGVidOptions
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(T, M, D)`` tokens -> ``(T, M)`` bool mask with exactly ``keep`` True, the number of
    segments stage 1 found (0-dim int) and whether some token is inf or NaN (0-dim bool; then
    the mask is the uniform selection and the count 1).

    On CUDA (Triton; ``token_selection_triton.supports``) all three stages run on the device
    (``plan_triton`` for stages 1-2) as one CUDA graph: the host queues work and never waits.
    Elsewhere the ``(T, T)`` Gram matrix of the frame means comes to the host, stages 1 and 2
    run there (``segments_and_budgets``) and stage 3 in torch; the results are host tensors.
    """
    if token_selection_triton is not None and token_selection_triton.supports(tokens, options.knn):
        workspace = token_selection_triton.workspace_for(tokens, options.knn)
        return workspace.prune(tokens, keep, (options.tau, options.lam, options.floor_ratio(retention)))
    gram = frame_mean_gram(tokens).cpu().numpy()
    if not all(math.isfinite(v) for v in gram.diagonal()):
        return uniform_keep_mask(*tokens.shape[:2], keep, tokens.device), torch.tensor(1), torch.tensor(True)
    segments, budgets = segments_and_budgets(gram, tokens.shape[1], keep, retention, options)
    work = tokens.double() if tokens.dtype == torch.float64 else tokens.float()
    return select_tokens(work, segments, budgets, options.knn), torch.tensor(len(segments)), torch.tensor(False)
