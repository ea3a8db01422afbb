"""MMG-Vid (AAAI 2026): the three stages put together for one video."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .baselines import uniform_keep_mask
from .budgeting import frame_budgets, selection_zscores
from .segmentation import Segment, segment_frames
from .token_selection import select_tokens

try:
    from . import token_selection_triton
except ImportError:  # no Triton installed: the torch implementation everywhere
    token_selection_triton = None

__all__ = ["MMGVidOptions", "frame_mean_gram", "mmgvid_keep_mask", "queue_frame_mean_gram", "segments_and_budgets"]


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


def _accumulation_dtype(tokens: torch.Tensor) -> torch.dtype:
    """fp64 for fp64 tokens, fp32 otherwise."""
    return torch.float64 if tokens.dtype == torch.float64 else torch.float32


def queue_frame_mean_gram(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    """``(T, M, D)`` tokens -> ``(T, T)`` float64 host Gram matrix of the frame means (means
    accumulated in fp32, fp64 for fp64 tokens): what stages 1 and 2 read, and whether it is
    ready. On CUDA it is queued into pinned memory behind the device work, and ready once the
    returned event has completed; elsewhere it is ready now (the event is ``None``)."""
    frame_means = tokens.mean(dim=1, dtype=_accumulation_dtype(tokens)).double()  # (T, D)
    gram = frame_means @ frame_means.T
    if not gram.is_cuda:
        return gram, None
    host = torch.empty(gram.shape, dtype=gram.dtype, device="cpu", pin_memory=True)
    host.copy_(gram, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()
    return host, copied


def frame_mean_gram(tokens: torch.Tensor) -> np.ndarray:
    """``queue_frame_mean_gram``'s matrix once ready (a device sync), as a numpy array."""
    gram, copied = queue_frame_mean_gram(tokens)
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
    on_error: Callable[[Exception], None] | None = None,
) -> torch.Tensor:
    """``(T, M, D)`` tokens -> ``(T, M)`` bool mask with exactly ``keep`` True.

    The only device-to-host transfer is the ``(T, T)`` Gram matrix of the frame means
    (stages 1 and 2 run on the host from it); it also tells whether any token is non-finite,
    a ``ValueError``, or with ``on_error`` passed to it and the uniform selection instead.
    Stage 3 runs in Triton on CUDA (``token_selection_triton``, its tokens staged on the device
    while the host waits for the Gram matrix), in torch elsewhere.
    """
    num_frames, per_frame, _ = tokens.shape
    triton_path = token_selection_triton is not None and token_selection_triton.supports(tokens, options.knn)
    workspace = token_selection_triton.workspace_for(tokens, options.knn) if triton_path else None
    gram, gram_ready = queue_frame_mean_gram(tokens)
    if workspace is not None:
        workspace.stage(tokens)
    if gram_ready is not None:
        gram_ready.synchronize()
    values = gram.numpy()
    if not all(math.isfinite(v) for v in values.diagonal()):
        exc = ValueError("tokens must be finite (found inf or NaN)")
        if on_error is None:
            raise exc
        on_error(exc)
        return uniform_keep_mask(num_frames, per_frame, keep, tokens.device)
    segments, budgets = segments_and_budgets(values, per_frame, keep, retention, options)
    if on_segments is not None:
        on_segments(len(segments))
    if workspace is not None:
        return workspace.select((segments, budgets))
    return select_tokens(tokens.to(_accumulation_dtype(tokens)), segments, budgets, options.knn)
