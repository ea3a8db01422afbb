"""Stage 2 of MMG-Vid: marginal-gain segment budgeting (paper eq. 5-6).

Works on the host in float64 from the frame Gram matrix (see ``segmentation``), and turns
the ratio budgets of eq. 6 into exact integer token counts per frame.
"""

from __future__ import annotations

import math

import numpy as np

from .counts import allocate_with_caps, split_evenly
from .segmentation import Segment, cosine_from_sums

__all__ = ["selection_zscores", "frame_budgets"]

_STD_EPS = 1e-9  # marginal values closer than this are one value (floating noise, not content)


def _segment_gram(gram: np.ndarray, segments: list[Segment]) -> list[list[float]]:
    """``(K, K)`` Gram matrix of the segment representations ``g_k`` (mean of the segment's tokens)."""
    starts = [seg.start for seg in segments]
    block = np.add.reduceat(np.add.reduceat(gram, starts, axis=0), starts, axis=1)
    lengths = np.array([len(seg) for seg in segments], dtype=np.float64)
    return (block / np.outer(lengths, lengths)).tolist()


def selection_zscores(gram: np.ndarray, segments: list[Segment], lam: float) -> list[float]:
    """Eq. 5-6: the z-score of each segment's marginal value at the moment it is selected.

    Each step computes, for every remaining segment k,
    ``MV_k = lam * cos(g_k, mean g over remaining) + (1 - lam) * (1 - cos(g_k, mean g over selected))``,
    selects the largest (ties: earliest segment) and scores it
    ``z = (MV_best - mean(MV)) / std(MV)`` over the remaining segments' values at that step.

    Choices where the paper is silent:
    - "remaining" includes segment k itself (it is not selected yet), as eq. 5 is written;
    - with nothing selected yet the diversity term is 1 (the first segment is all new);
    - ``mean``/``std`` are over the values of that step (population std), so ``z >= 0``;
      when ``std < 1e-9`` (one segment left, or all equal) ``z = 0``: no segment stands out.

    Plain floats (K is small): the sums over the remaining and selected sets are updated as
    each segment moves from one to the other, so the whole selection is O(K^2).
    """
    seg_gram = _segment_gram(gram, segments)
    count = len(segments)
    diagonal = [seg_gram[k][k] for k in range(count)]
    to_remaining = [sum(row) for row in seg_gram]  # sum of g_k . g_i over the remaining i
    to_selected = [0.0] * count
    within_remaining, within_selected = sum(to_remaining), 0.0
    remaining = list(range(count))
    zscores = [0.0] * count
    while remaining:
        values = [
            lam * cosine_from_sums(to_remaining[k], diagonal[k], within_remaining)
            + (1.0 - lam) * (1.0 - cosine_from_sums(to_selected[k], diagonal[k], within_selected)
                             if len(remaining) < count else 1.0)
            for k in remaining
        ]
        best = max(range(len(values)), key=lambda i: (values[i], -i))  # ties: the earliest segment
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        chosen = remaining.pop(best)
        zscores[chosen] = (values[best] - mean) / std if std >= _STD_EPS else 0.0
        within_remaining -= 2.0 * to_remaining[chosen] - diagonal[chosen]
        within_selected += 2.0 * to_selected[chosen] + diagonal[chosen]
        for k in range(count):
            to_remaining[k] -= seg_gram[k][chosen]
            to_selected[k] += seg_gram[k][chosen]
    return zscores


def frame_budgets(
    segments: list[Segment],
    zscores: list[float],
    tokens_per_frame: int,
    total: int,
    r_min: float,
) -> list[int]:
    """Tokens to keep in each frame, summing exactly to ``total``.

    Eq. 6 gives segment k the ratio ``R_k = R_min + R_extra * z_k``. Its token count is
    ``N_k * R_k`` (``N_k`` = the segment's tokens), so the extra tokens above the floor are
    shared between segments in proportion to ``z_k * N_k``; scaling that share so the video
    keeps exactly ``total`` is the reconcile step eq. 6 needs (the z-scores do not sum to a
    fixed value). If every z is 0 the extra is shared in proportion to each segment's room
    above its floor, i.e. about ``N_k``: the uniform budget.

    The floor is ``ceil(R_min * N_k)`` so every segment keeps at least ``R_min`` of its
    tokens; only when those ceilings together exceed ``total`` (tiny videos) it becomes the
    floor of the same product. A segment's count is split evenly over its frames, the
    remainder to its earliest frames (the first frame is the anchor of eq. 7-8).
    """
    sizes = [len(seg) * tokens_per_frame for seg in segments]
    floors = [math.ceil(r_min * n - 1e-9) for n in sizes]
    if sum(floors) > total:
        floors = [math.floor(r_min * n) for n in sizes]
    counts = allocate_with_caps(total, floors, sizes, [max(z, 0.0) * n for z, n in zip(zscores, sizes)])
    return [b for seg, count in zip(segments, counts) for b in split_evenly(count, len(seg))]
