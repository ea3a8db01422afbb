"""Quality metrics of one kept-token set against a video's ground truth and token features.

All take ``kept``: ``(T, M)`` bool mask of kept tokens (see ``kept_mask``). Higher is better
except ``redundancy``. Object metrics use ``Track.on_tokens`` (>= 25% of a token's pooled
pixels belong to the object).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .video import Video

__all__ = ["METRICS", "kept_mask", "evaluate"]

METRICS = (
    "needle_recall",  # share of needles with >= 1 kept token on them (in any frame they appear)
    "object_frame_recall",  # share of (moving object, frame) pairs with >= 1 kept token on the object
    "scene_coverage",  # share of scene ids (recurring scenes count once) with >= 1 kept token
    "min_scene_share",  # min over scene ids of the share of that scene's tokens kept
    "min_shot_share",  # min over shots (each occurrence of a scene) of the share of its tokens kept
    "coverage",  # mean over all tokens of the max cosine similarity to a kept token
    "redundancy",  # mean pairwise cosine similarity among kept tokens (lower is better)
    "frame_coverage",  # share of frames with >= 1 kept token
    "temporal_entropy",  # entropy of kept tokens over frames, / log T (1 = even spread)
)


def kept_mask(indices: torch.Tensor, num_frames: int, per_frame: int) -> np.ndarray:
    """``(K,)`` flat indices -> ``(T, M)`` bool mask."""
    mask = np.zeros(num_frames * per_frame, dtype=bool)
    mask[indices.cpu().numpy()] = True
    return mask.reshape(num_frames, per_frame)


def _object_metrics(kept: np.ndarray, video: Video) -> dict[str, float]:
    hits = {t.name: (t.on_tokens() & kept).any(axis=1) for t in video.tracks}  # name -> (T,) bool
    needles = [hits[t.name][t.frames()].any() for t in video.tracks if t.needle]
    objects = np.concatenate([hits[t.name][t.frames()] for t in video.tracks if not t.needle] or [np.zeros(0)])
    return {
        "needle_recall": float(np.mean(needles)) if needles else math.nan,
        "object_frame_recall": float(objects.mean()) if objects.size else math.nan,
    }


def _group_shares(kept: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Share of tokens kept in each group of frames (``groups`` ``(T,)`` ids)."""
    per_frame = kept.sum(axis=1)
    return np.array([per_frame[groups == g].sum() / (kept.shape[1] * (groups == g).sum()) for g in np.unique(groups)])


def _feature_metrics(kept: np.ndarray, tokens: torch.Tensor) -> dict[str, float]:
    units = torch.nn.functional.normalize(tokens.reshape(-1, tokens.shape[-1]).float(), dim=-1)
    chosen = units[torch.from_numpy(kept.reshape(-1))]
    coverage = (units @ chosen.T).amax(dim=1).mean().item()
    count = chosen.shape[0]
    total = chosen.sum(dim=0)
    pair_sum = float(total @ total) - float((chosen * chosen).sum())  # sum over i != j of cos
    return {"coverage": coverage, "redundancy": pair_sum / (count * (count - 1)) if count > 1 else math.nan}


def _temporal_metrics(kept: np.ndarray) -> dict[str, float]:
    counts = kept.sum(axis=1)
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * np.log(p)).sum() / math.log(len(counts))) if len(counts) > 1 else 1.0
    return {"frame_coverage": float((counts > 0).mean()), "temporal_entropy": entropy}


def evaluate(kept: np.ndarray, tokens: torch.Tensor, video: Video) -> dict[str, float]:
    """All ``METRICS`` for the ``(T, M)`` mask ``kept`` of ``(T, M, D)`` ``tokens`` of ``video``."""
    scene_shares = _group_shares(kept, video.scene_ids)
    return {
        **_object_metrics(kept, video),
        "scene_coverage": float((scene_shares > 0).mean()),
        "min_scene_share": float(scene_shares.min()),
        "min_shot_share": float(_group_shares(kept, video.shot_ids).min()),
        **_feature_metrics(kept, tokens),
        **_temporal_metrics(kept),
    }
