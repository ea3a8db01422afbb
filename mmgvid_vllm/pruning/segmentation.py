"""Stage 1 of MMG-Vid: similarity-based frame segmentation (paper eq. 3-4).

Everything here works on the ``(T, T)`` float64 Gram matrix of the frame features
``f_t = mean of frame t's tokens`` (``frame_mean_gram``): every cosine between frames or
segments (means of frames, all frames having the same token count) is a ratio of sums of its
entries. This module runs stage 1 on the host (numpy, float64) from that one small matrix;
``plan_triton`` runs the same on the device.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["Segment", "cosine_from_sums", "frame_mean_gram", "segment_frames"]

Segment = range  # the frames [start, stop) of one segment


def frame_mean_gram(tokens: torch.Tensor) -> torch.Tensor:
    """``(T, M, D)`` tokens -> ``(T, T)`` float64 Gram matrix of the frame means, on the
    tokens' device (means accumulated in fp32, fp64 for fp64 tokens)."""
    accumulate = torch.float64 if tokens.dtype == torch.float64 else torch.float32
    frame_means = tokens.mean(dim=1, dtype=accumulate).double()  # (T, D)
    return frame_means @ frame_means.T


def cosine_from_sums(dot: float, sq_norm_a: float, sq_norm_b: float) -> float:
    """``a.b / (|a| |b|)`` from ``a.b``, ``|a|^2``, ``|b|^2``; 0 when either vector is zero.

    Choice: a zero vector (an all-zero frame) is similar to nothing, like
    ``torch.nn.functional.cosine_similarity`` with its eps.
    """
    denom = math.sqrt(max(sq_norm_a, 0.0) * max(sq_norm_b, 0.0))
    return dot / denom if denom > 0.0 else 0.0


def _segment_similarity(gram: np.ndarray, a: Segment, b: Segment) -> float:
    """Cosine between the mean features of two segments (eq. 4's sim(S_k, S_j))."""
    return cosine_from_sums(
        gram[a.start : a.stop, b.start : b.stop].sum(),
        gram[a.start : a.stop, a.start : a.stop].sum(),
        gram[b.start : b.stop, b.start : b.stop].sum(),
    )


def segment_frames(gram: np.ndarray, tau: float) -> list[Segment]:
    """Split frames into segments; ``gram`` is ``(T, T)``: ``gram[s, t] = f_s . f_t``.

    Eq. 3: a boundary follows frame t when ``cos(f_t, f_{t+1}) < tau``.
    Eq. 4: a one-frame segment is merged into the adjacent segment whose mean feature is
    more similar. Choices where the paper is silent: singletons are merged one at a time,
    the earliest first, each against its neighbours as they are at that moment (so two
    adjacent singletons can merge into a pair); a tie goes to the earlier neighbour; a
    video of one frame is one segment of length 1.

    Returns consecutive ranges covering ``0..T-1``.
    """
    num_frames = gram.shape[0]
    diagonal, next_dot = np.diagonal(gram).tolist(), np.diagonal(gram, 1).tolist()
    starts = [0]
    for t in range(num_frames - 1):
        if cosine_from_sums(next_dot[t], diagonal[t], diagonal[t + 1]) < tau:
            starts.append(t + 1)
    segments = [range(s, e) for s, e in zip(starts, starts[1:] + [num_frames])]

    while len(segments) > 1:
        single = next((k for k, seg in enumerate(segments) if len(seg) == 1), None)
        if single is None:
            break
        neighbours = [k for k in (single - 1, single + 1) if 0 <= k < len(segments)]
        target = max(neighbours, key=lambda k: (_segment_similarity(gram, segments[single], segments[k]), -k))
        first, second = sorted((single, target))
        segments[first : second + 1] = [range(segments[first].start, segments[second].stop)]
    return segments
