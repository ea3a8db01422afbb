"""MMG-Vid (AAAI 2026): the three stages put together for one video."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .budgeting import frame_budgets, selection_zscores
from .segmentation import Segment, segment_frames
from .token_selection import select_tokens

try:
    from . import token_selection_triton
except ImportError:  # no Triton installed: the torch implementation everywhere
    token_selection_triton = None

__all__ = ["MMGVidOptions", "NonFiniteTokens", "frame_mean_gram", "mmgvid_keep_mask", "segments_and_budgets"]


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
    """Some token is inf or NaN (``prune`` raises it, or passes it to its ``on_error``)."""

    def __init__(self) -> None:
        super().__init__("tokens must be finite (found inf or NaN)")


def _accumulation_dtype(tokens: torch.Tensor) -> torch.dtype:
    """fp64 for fp64 tokens, fp32 otherwise."""
    return torch.float64 if tokens.dtype == torch.float64 else torch.float32


def frame_mean_gram(tokens: torch.Tensor, meanwhile: Callable[[], None] | None = None) -> np.ndarray:
    """``(T, M, D)`` tokens -> ``(T, T)`` float64 host Gram matrix of the frame means (means
    accumulated in fp32, fp64 for fp64 tokens): what stages 1 and 2 read. Syncs with the device.

    ``meanwhile`` is called once the Gram matrix and its copy to the host are queued and before
    waiting for them: device work it queues runs while the host waits and then works on stages
    1 and 2 (on CUDA the wait is for the copy only, not for that work).
    """
    frame_means = tokens.mean(dim=1, dtype=_accumulation_dtype(tokens)).double()  # (T, D)
    gram = frame_means @ frame_means.T
    copied = None
    if gram.is_cuda:  # copied into pinned memory behind the device work, waited for below
        host = torch.empty(gram.shape, dtype=gram.dtype, device="cpu", pin_memory=True)
        host.copy_(gram, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()
        gram = host
    if meanwhile is not None:
        meanwhile()
    if copied is not None:
        copied.synchronize()
    return gram.numpy()


def segments_and_budgets(
    gram: np.ndarray, per_frame: int, keep: int, retention: float, options: MMGVidOptions
) -> tuple[list[Segment], list[int]]:
    """Stages 1 and 2 from the ``(T, T)`` Gram matrix of the frame means: the segments and
    every frame's token budget (``keep`` in all, at most ``per_frame`` each)."""
    segments = segment_frames(gram, options.tau)
    zscores = selection_zscores(gram, segments, options.lam)
    return segments, frame_budgets(segments, zscores, per_frame, keep, options.floor_ratio(retention))


def mmgvid_keep_mask(
    tokens: torch.Tensor,
    keep: int,
    retention: float,
    options: MMGVidOptions,
    on_segments: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``(T, M, D)`` tokens -> ``(T, M)`` bool mask with exactly ``keep`` True.

    The only device-to-host transfer is the ``(T, T)`` Gram matrix of the frame means
    (stages 1 and 2 run on the host from it); it also tells whether any token is non-finite
    (``NonFiniteTokens``).
    Stage 3 runs in Triton on CUDA (``token_selection_triton``, its tokens staged on the device
    while the host waits for the Gram matrix and runs stages 1 and 2), in torch elsewhere.
    """
    triton_path = token_selection_triton is not None and token_selection_triton.supports(tokens, options.knn)
    workspace = token_selection_triton.workspace_for(tokens, options.knn) if triton_path else None
    # the one sync; the tokens are staged for the Triton stage 3 meanwhile
    gram = frame_mean_gram(tokens, meanwhile=None if workspace is None else lambda: workspace.stage(tokens))
    if not all(math.isfinite(v) for v in gram.diagonal()):
        raise NonFiniteTokens
    segments, budgets = segments_and_budgets(gram, tokens.shape[1], keep, retention, options)
    if on_segments is not None:
        on_segments(len(segments))
    if workspace is not None:
        return workspace.select(segments, budgets)
    return select_tokens(tokens.to(_accumulation_dtype(tokens)), segments, budgets, options.knn)
