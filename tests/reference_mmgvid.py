"""Plain reference implementation of MMG-Vid (paper eq. 3-10): loops, float64, no batching.

Written to be read next to the paper, and used only to check the fast implementation in
``mmgvid_vllm.pruning``. It follows the same documented choices (see the docstrings of
``segmentation``, ``budgeting`` and ``token_selection``) and shares only the integer
bookkeeping of ``counts`` (rounding budgets to whole tokens is not part of the equations).
"""

from __future__ import annotations

import math

import numpy as np

from mmgvid_vllm.pruning.counts import allocate_with_caps, num_kept, split_evenly
from mmgvid_vllm.pruning.token_selection import SAME_TOKEN


def cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def sqdist(a: np.ndarray, b: np.ndarray) -> float:
    """Squared distance; below SAME_TOKEN it is 0 (the same token up to rounding)."""
    d = float(((a - b) ** 2).sum())
    return d if d >= SAME_TOKEN else 0.0


# ---- Stage 1: eq. 3-4 ---------------------------------------------------------------

def segment(frames: np.ndarray, tau: float) -> list[list[int]]:
    """frames: (T, M, D) -> list of segments (lists of frame indices)."""
    f = frames.mean(axis=1)
    segments = [[0]]
    for t in range(len(f) - 1):
        if cos(f[t], f[t + 1]) < tau:  # eq. 3: boundary
            segments.append([t + 1])
        else:
            segments[-1].append(t + 1)
    while len(segments) > 1 and any(len(s) == 1 for s in segments):
        k = next(i for i, s in enumerate(segments) if len(s) == 1)
        best, best_sim = None, -math.inf
        for j in (k - 1, k + 1):  # eq. 4: the more similar neighbour, earlier on ties
            if 0 <= j < len(segments):
                sim = cos(f[segments[k]].mean(axis=0), f[segments[j]].mean(axis=0))
                if sim > best_sim:
                    best, best_sim = j, sim
        lo, hi = sorted((k, best))
        segments[lo : hi + 1] = [segments[lo] + segments[hi]]
    return segments


# ---- Stage 2: eq. 5-6 ---------------------------------------------------------------

def zscores(frames: np.ndarray, segments: list[list[int]], lam: float) -> list[float]:
    g = [frames[s].reshape(-1, frames.shape[-1]).mean(axis=0) for s in segments]
    remaining, selected = list(range(len(segments))), []
    z = [0.0] * len(segments)
    while remaining:
        g_r = np.mean([g[i] for i in remaining], axis=0)
        g_s = np.mean([g[j] for j in selected], axis=0) if selected else None
        mv = []
        for k in remaining:  # eq. 5
            diversity = 1.0 - cos(g[k], g_s) if selected else 1.0
            mv.append(lam * cos(g[k], g_r) + (1 - lam) * diversity)
        best = max(range(len(mv)), key=lambda i: (mv[i], -i))
        mean = sum(mv) / len(mv)
        std = math.sqrt(sum((v - mean) ** 2 for v in mv) / len(mv))
        z[remaining[best]] = (mv[best] - mean) / std if std >= 1e-9 else 0.0  # eq. 6
        selected.append(remaining.pop(best))
    return z


def budgets(segments, z, per_frame, keep, r_min) -> dict[int, int]:
    sizes = [len(s) * per_frame for s in segments]
    floors = [math.ceil(r_min * n - 1e-9) for n in sizes]
    if sum(floors) > keep:
        floors = [math.floor(r_min * n) for n in sizes]
    counts = allocate_with_caps(keep, floors, sizes, [max(zk, 0.0) * n for zk, n in zip(z, sizes)])
    out = {}
    for s, c in zip(segments, counts):
        for frame, b in zip(s, split_evenly(c, len(s))):
            out[frame] = b
    return out


# ---- Stage 3: eq. 7-10 --------------------------------------------------------------

def top(scores: list[float], b: int) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:b]


def separation(x: np.ndarray, rho: list[float], i: int) -> float:
    """Eq. 8 / 10."""
    denser = [sqdist(x[i], x[m]) for m in range(len(x)) if rho[m] > rho[i]]
    return min(denser) if denser else max(sqdist(x[i], x[m]) for m in range(len(x)))


def dpc_knn(x: np.ndarray, b: int, knn: int) -> list[int]:
    """Eq. 7-8 on one frame (M, D)."""
    k = min(knn, len(x) - 1)
    rho = []
    for i in range(len(x)):
        near = sorted(sqdist(x[i], x[j]) for j in range(len(x)) if j != i)[:k]
        rho.append(math.exp(-sum(near) / k) if k else 1.0)
    return top([rho[i] * separation(x, rho, i) for i in range(len(x))], b)


def tg_dpc(x: np.ndarray, guide: list[np.ndarray], b: int, knn: int) -> list[int]:
    """Eq. 9-10 on one frame (M, D) with the guide set."""
    k = min(knn, len(guide))
    rho = []
    for i in range(len(x)):
        near = sorted(sqdist(x[i], g) for g in guide)[:k]
        rho.append(1.0 - math.exp(-sum(near) / k) if k else 0.0)
    return top([rho[i] * separation(x, rho, i) for i in range(len(x))], b)


def reference_prune(tokens: np.ndarray, retention: float, tau=0.95, lam=0.5, r_min=None, knn=5) -> list[int]:
    """tokens: (T, M, D) array -> sorted flat indices of the kept tokens."""
    tokens = np.asarray(tokens, dtype=np.float64)
    T, M, _ = tokens.shape
    keep = num_kept(T, M, retention)
    r_floor = retention / 2 if r_min is None else min(r_min, retention)
    segments = segment(tokens, tau)
    per_frame = budgets(segments, zscores(tokens, segments, lam), M, keep, r_floor)
    norms = np.linalg.norm(tokens, axis=-1, keepdims=True)
    units = np.divide(tokens, norms, out=np.zeros_like(tokens), where=norms > 0)
    kept = []
    for s in segments:
        guide: list[np.ndarray] = []
        for p, t in enumerate(s):
            if per_frame[t] == 0:
                continue
            chosen = dpc_knn(units[t], per_frame[t], knn) if p == 0 else tg_dpc(units[t], guide, per_frame[t], knn)
            guide += [units[t][i] for i in chosen]
            kept += [t * M + i for i in chosen]
    return sorted(kept)
