"""Adapters to vLLM's own video pruning (EVS, VidCom2), for side-by-side comparison.

vLLM is imported only when one of these methods is called. Both vLLM functions take a
pruning rate ``q`` and return a flat retention mask. Their own counts differ from
``num_kept`` (EVS keeps the whole first frame, VidCom2 at least one token per frame and
truncates instead of rounding), so the adapter asks for ``q = 1 - (keep + 1/2) / N``,
whose truncated count is exactly ``keep``, and fits what comes back to ``keep`` when their
floors still add tokens: the surplus is thinned with an even stride (see ``_fit_count``).
"""

from __future__ import annotations

import torch

__all__ = ["evs_keep_mask", "vidcom2_keep_mask"]

def _fit_count(mask: torch.Tensor, keep: int) -> torch.Tensor:
    """``(N,)`` mask -> ``(N,)`` mask with exactly ``keep`` True: the surplus of kept tokens
    (or missing ones) is chosen with an even stride over them, in index order."""
    have = mask.nonzero().squeeze(-1) if int(mask.sum()) > keep else (~mask).nonzero().squeeze(-1)
    excess = abs(int(mask.sum()) - keep)
    if excess == 0:
        return mask
    picks = have[((torch.arange(excess, dtype=torch.float64) + 0.5) * have.numel() / excess).long().to(have.device)]
    fitted = mask.clone()
    fitted[picks] = ~fitted[picks]
    return fitted


def _vllm_keep_mask(method: str, tokens: torch.Tensor, keep: int) -> torch.Tensor:
    num_frames, per_frame, dim = tokens.shape
    from ..vllm_compat import video_pruning_mask_function  # vLLM only when these methods run

    compute = video_pruning_mask_function(method)
    q = 1.0 - (keep + 0.5) / (num_frames * per_frame)
    mask = compute(tokens.reshape(-1, dim), (num_frames, 1, per_frame), 1, q)
    return _fit_count(mask.reshape(-1), keep).view(num_frames, per_frame)


def evs_keep_mask(tokens: torch.Tensor, keep: int) -> torch.Tensor:
    """vLLM's EVS (keeps tokens that changed most since the previous frame): ``(T, M, D) -> (T, M)``."""
    return _vllm_keep_mask("evs", tokens, keep)


def vidcom2_keep_mask(tokens: torch.Tensor, keep: int) -> torch.Tensor:
    """vLLM's VidCom2 (frame-adaptive budgets, least video/frame-typical tokens): ``(T, M, D) -> (T, M)``."""
    return _vllm_keep_mask("vidcom2", tokens, keep)
