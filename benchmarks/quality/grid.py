"""LLaVA-OneVision's video token grid, and where a pixel mask lands on it.

A 384x384 frame is cut into 27x27 patches of 14x14 pixels (SigLIP; the last 6 pixel
rows/columns fall outside every patch). The projected patch features are then pooled
to 14x14 = 196 tokens by ``F.interpolate(..., size=(14, 14), mode="bilinear")``
(``align_corners=False``, no antialias), so token cell ``j`` is a weighted mix of
patches ``floor(x_j)`` and ``floor(x_j) + 1`` with ``x_j = (j + 1/2) * 27/14 - 1/2``.
Both steps are linear: ``pool(P) = W @ P @ W.T`` with the ``(14, 27)`` matrix ``W`` below.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FRAME", "PATCH", "PATCHES", "CELLS", "TOKENS", "pool_matrix", "patch_coverage", "token_coverage"]

FRAME = 384
PATCH = 14
PATCHES = FRAME // PATCH  # 27 patches per side
CELLS = math.ceil(PATCHES / 2)  # 14 token cells per side
TOKENS = CELLS * CELLS  # 196 tokens per frame


def pool_matrix() -> np.ndarray:
    """``(14, 27)`` weights of torch's bilinear resize 27 -> 14 (align_corners=False); rows sum to 1."""
    weights = np.zeros((CELLS, PATCHES))
    for j in range(CELLS):
        x = max((j + 0.5) * PATCHES / CELLS - 0.5, 0.0)
        lo = int(math.floor(x))
        hi = min(lo + 1, PATCHES - 1)
        weights[j, lo] += 1.0 - (x - lo)
        weights[j, hi] += x - lo
    return weights


def patch_coverage(masks: np.ndarray) -> np.ndarray:
    """``(..., 384, 384)`` bool pixel masks -> ``(..., 27, 27)`` share of each patch's pixels set."""
    crop = masks[..., : PATCHES * PATCH, : PATCHES * PATCH].astype(np.float64)
    return crop.reshape(*masks.shape[:-2], PATCHES, PATCH, PATCHES, PATCH).mean(axis=(-3, -1))


def token_coverage(masks: np.ndarray) -> np.ndarray:
    """``(..., 384, 384)`` bool pixel masks -> ``(..., 196)`` share of each pooled token made of mask pixels.

    This is the bilinear pooling applied to the patch coverage: the weight the masked
    pixels carry in each token's (linear) mix of patches. Token order is row-major.
    """
    weights = pool_matrix()
    pooled = weights @ patch_coverage(masks) @ weights.T
    return pooled.reshape(*masks.shape[:-2], TOKENS)
