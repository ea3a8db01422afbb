"""Token features of a synthetic video: ``(T, 196, D)`` float32 tensors, one per extractor.

- ``pixels``: each 14x14 patch's pixels (normalised like SigLIP, mean = std = 0.5) are
  pooled to the 14x14 token grid exactly as LLaVA-OneVision pools patch features, then
  projected to D = 256 by a fixed seeded Gaussian matrix (a random linear "encoder" that
  keeps pixel geometry: inner products are preserved in expectation).
- ``tiny_model``: the real LLaVA-OneVision video path (video processor -> SigLIP vision
  tower -> projector -> bilinear 2x2 pooling) of the tiny random-weight checkpoint from
  ``mmgvid_vllm.tiny_model``, D = 128, the trailing ``image_newline`` dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import torch

from .grid import CELLS, PATCH, PATCHES, TOKENS, pool_matrix

__all__ = ["EXTRACTORS", "pixel_features", "tiny_model_features"]

PIXEL_DIM = 256
PIXEL_SEED = 0


def pixel_features(frames: np.ndarray) -> torch.Tensor:
    """``(T, 384, 384, 3)`` uint8 -> ``(T, 196, 256)`` float32 pooled-and-projected patch pixels."""
    num_frames = frames.shape[0]
    x = frames[:, : PATCHES * PATCH, : PATCHES * PATCH].astype(np.float32) / 127.5 - 1.0
    patches = x.reshape(num_frames, PATCHES, PATCH, PATCHES, PATCH, 3).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(num_frames, PATCHES, PATCHES, PATCH * PATCH * 3)  # (T, 27, 27, 588)
    weights = pool_matrix().astype(np.float32)
    pooled = np.einsum("ip,tpqc,jq->tijc", weights, patches, weights, optimize=True)  # (T, 14, 14, 588)
    projection = np.random.default_rng(PIXEL_SEED).standard_normal((pooled.shape[-1], PIXEL_DIM)).astype(np.float32)
    tokens = pooled.reshape(num_frames, CELLS * CELLS, -1) @ (projection / np.sqrt(PIXEL_DIM))
    return torch.from_numpy(np.ascontiguousarray(tokens))


@cache
def _tiny_model():
    from transformers import AutoVideoProcessor, LlavaOnevisionForConditionalGeneration

    from mmgvid_vllm.tiny_model import ensure_tiny_model

    path = ensure_tiny_model()
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    return AutoVideoProcessor.from_pretrained(path), model


@torch.inference_mode()
def tiny_model_features(frames: np.ndarray) -> torch.Tensor:
    """``(T, 384, 384, 3)`` uint8 -> ``(T, 196, 128)`` float32 tiny LLaVA-OneVision video tokens."""
    processor, model = _tiny_model()
    pixels = processor(videos=[frames], return_tensors="pt")["pixel_values_videos"]
    out = model.get_video_features(
        pixel_values_videos=pixels,
        vision_feature_layer=model.config.vision_feature_layer,
        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
    )
    tokens = out.pooler_output[0, :-1]  # drop image_newline
    return tokens.reshape(frames.shape[0], TOKENS, -1).float().contiguous()


EXTRACTORS: dict[str, Callable[[np.ndarray], torch.Tensor]] = {
    "pixels": pixel_features,
    "tiny_model": tiny_model_features,
}
