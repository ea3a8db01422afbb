"""Video-token pruning: MMG-Vid and the methods it is compared with. Pure torch, no vLLM.

Public API::

    prune(tokens, retention, method="mmgvid", **options) -> LongTensor (K,)
    num_kept(num_frames, tokens_per_frame, retention) -> int

``tokens`` is ``(T, M, D)``: T frames of M tokens of dimension D. The result holds
``K = num_kept(T, M, retention)`` flat indices into ``T * M``, sorted ascending, so
gathering ``tokens.reshape(T * M, D)[indices]`` keeps the temporal order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .baselines import random_keep_mask, uniform_keep_mask
from .counts import check_retention, num_kept
from .mmgvid import MMGVidOptions, NonFiniteTokens, mmgvid_keep_mask
from .vllm_methods import evs_keep_mask, vidcom2_keep_mask

__all__ = ["METHODS", "MMGVidOptions", "PruneReport", "check_tokens", "num_kept", "prune"]

METHODS = ("mmgvid", "uniform", "random", "evs", "vidcom2")
_OPTIONS = {"mmgvid": {"tau", "lam", "r_min", "knn"}, "random": {"seed"}}


def check_tokens(tokens: object) -> torch.Tensor:
    """Raise ``ValueError`` unless ``tokens`` is a non-empty floating ``(T, M, D)`` tensor.

    (Finiteness is checked inside ``prune`` without an extra device sync.)
    """
    if not isinstance(tokens, torch.Tensor):
        raise ValueError(f"tokens must be a torch.Tensor of shape (T, M, D), got {type(tokens).__name__}")
    if tokens.dim() != 3:
        raise ValueError(f"tokens must have shape (T, M, D), got rank {tokens.dim()} shape {tuple(tokens.shape)}")
    if tokens.numel() == 0:
        raise ValueError(f"tokens must not be empty, got shape {tuple(tokens.shape)}")
    if not tokens.is_floating_point():
        raise ValueError(f"tokens must be floating point, got {tokens.dtype}")
    return tokens


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` learned besides the indices, as 0-dim tensors on the tokens' device (or
    the host). Final once the device has run the prune: read them after an event or through
    ``.to("cpu", non_blocking=True)``, so the host does not wait (as ``metrics`` does).

    segments: int, the number of segments MMG-Vid's stage 1 found (1 for other methods and
        for a failed video).
    failed: bool, some token was inf or NaN: the video kept the uniform selection.
    """

    segments: torch.Tensor
    failed: torch.Tensor


def prune(
    tokens: torch.Tensor,
    retention: float,
    method: str = "mmgvid",
    *,
    on_report: Callable[[PruneReport], None] | None = None,
    **options,
) -> torch.Tensor:
    """Indices of the tokens to keep.

    Args:
        tokens: ``(T, M, D)`` float tensor (fp32, bf16, fp16 or fp64; CPU or CUDA).
            Distances are computed in fp32, or in fp64 for fp64 input (MMG-Vid on CUDA
            multiplies bf16/fp16 tokens as they are, with fp32 accumulation).
        retention: share of tokens to keep, in (0, 1].
        method: one of ``METHODS``.
        on_report: called with a ``PruneReport`` (segment count, failure). With it, tokens
            that are inf or NaN do not raise: the video keeps the uniform selection and the
            report says so; MMG-Vid on CUDA then never waits for the device (the report's
            values are read later). Without it such tokens raise ``ValueError`` (on CUDA
            after a wait for the device).
        **options: ``mmgvid``: ``tau``, ``lam``, ``r_min``, ``knn`` (see ``MMGVidOptions``);
            ``random``: ``seed``. Other methods take none.

    Returns:
        ``(K,)`` int64 on ``tokens.device``, ``K = num_kept(T, M, retention)``, sorted ascending.

    Raises:
        ValueError: bad retention, method, option, shape, dtype, or non-finite tokens
            (unless ``on_report`` is given).
    """
    check_tokens(tokens)
    retention = check_retention(retention)
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    unknown = set(options) - _OPTIONS.get(method, set())
    if unknown:
        raise ValueError(f"method {method!r} takes no option(s) {', '.join(sorted(unknown))}")
    num_frames, per_frame, _ = tokens.shape
    keep = num_kept(num_frames, per_frame, retention)
    if method == "mmgvid":
        mask, segments, failed = mmgvid_keep_mask(tokens, keep, retention, MMGVidOptions(**options))
    else:  # these methods check the tokens on the host first (a wait on CUDA)
        finite = bool(torch.isfinite(tokens).all())
        segments, failed = torch.tensor(1), torch.tensor(not finite)
        if not finite or method == "uniform":
            mask = uniform_keep_mask(num_frames, per_frame, keep, tokens.device)
        elif method == "random":
            mask = random_keep_mask(num_frames, per_frame, keep, tokens.device, **options)
        else:  # vLLM's functions, in fp32 (fp64 for fp64 tokens)
            work = tokens.double() if tokens.dtype == torch.float64 else tokens.float()
            mask = (evs_keep_mask if method == "evs" else vidcom2_keep_mask)(work, keep)
    if on_report is not None:
        on_report(PruneReport(segments, failed))
    elif bool(failed):
        raise NonFiniteTokens
    # The kept positions in ascending order; the count is known, so no sync.
    return torch.nonzero_static(mask.reshape(-1), size=keep).squeeze(1)
