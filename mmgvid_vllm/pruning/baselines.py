"""Content-blind baselines behind the same interface as MMG-Vid."""

from __future__ import annotations

import torch

from .counts import split_evenly

__all__ = ["uniform_keep_mask", "random_keep_mask"]


def uniform_keep_mask(num_frames: int, per_frame: int, keep: int, device: torch.device) -> torch.Tensor:
    """``(T, M)`` mask: the same count in every frame (remainder to the earliest frames),
    spread over the frame with a stride: token ``floor((i + 1/2) * M / b)`` for ``i < b``.
    Built on the host and copied without waiting for the device (pinned memory on CUDA)."""
    device = torch.device(device)
    mask = torch.zeros(num_frames, per_frame, dtype=torch.bool, pin_memory=device.type == "cuda")
    for frame, count in enumerate(split_evenly(keep, num_frames)):
        if count:
            mask[frame, ((torch.arange(count, dtype=torch.float64) + 0.5) * per_frame / count).long()] = True
    return mask.to(device, non_blocking=True)


def random_keep_mask(num_frames: int, per_frame: int, keep: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """``(T, M)`` mask of ``keep`` tokens drawn uniformly without replacement.

    Drawn on the CPU from ``seed`` so every device gets the same tokens.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(num_frames * per_frame, dtype=torch.bool)
    mask[torch.randperm(num_frames * per_frame, generator=generator)[:keep]] = True
    return mask.view(num_frames, per_frame).to(device)
