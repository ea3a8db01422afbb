"""Video pixels sent to the engine unnormalised, normalised there.

vLLM's LLaVA-OneVision path runs the whole HF processor in the API server for every video:
uint8 frames -> float32 rescale and normalise -> a stacked copy -> cast to the model dtype,
and tokenises a throwaway text of ``T * 196`` video tokens. For a 32-frame 384x384 video
that is most of the API server's time per request. For pruned requests the plugin instead
asks the HF video processor for its resized uint8 frames only (``do_rescale=False,
do_normalize=False``) and sends them as they are; the model applies the processor's
normalisation on its device. (vLLM 0.32 has the same idea as
``--mm-device-do-normalize`` for some models; LLaVA-OneVision is not one, and 0.26 lacks it.)

uint8 frames are half the bytes of vanilla's pixels in a 16-bit model dtype on every way
from the API server to the GPU (the API server's message, the engine's copy into pinned
memory, the upload), and the API server does not cast them. vLLM stacks the same-shape
videos of a step with ``torch.stack(batch, out=<first video's dtype>)``, so the raw frames
travel under their own key (``llava_onevision.RAW_PIXELS_KEY``): vLLM batches items only when
their keys agree, and a uint8 video never meets a vanilla float one in one stack.

Exactness: HF's fast video processor fuses rescale and normalise into
``(x.float() - mean / rescale) / (std / rescale)`` in float32 (``_fuse_mean_std_and_rescale_
factor``); :func:`normalize_video` computes the same IEEE float32 subtraction and division,
then rounds to the model dtype as vLLM's ``_postprocess_output`` does, so the model sees
bit-identical pixels (tested against the HF processor).

Each raw video carries its own ``(2, C)`` normalisation ``[mean, std]`` in pixel units.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = [
    "NORMALIZATION_KWARGS",
    "fused_normalization",
    "normalize_video",
]

# HF video-processor settings the normalisation depends on; a request or server that sets any
# of them gets vanilla processing (the plugin does not re-derive HF's rules for overrides).
NORMALIZATION_KWARGS = ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")


def fused_normalization(video_processor, mm_kwargs: Mapping[str, object]) -> torch.Tensor | None:
    """``(2, C)`` float32 ``[mean, std]`` in 0..255 pixel units of ``video_processor``'s rescale +
    normalise, or ``None`` when ``mm_kwargs`` override them or the processor does not do both."""
    if any(key in mm_kwargs for key in NORMALIZATION_KWARGS):
        return None
    if not (video_processor.do_rescale and video_processor.do_normalize):
        return None
    to_pixel_units = 1.0 / video_processor.rescale_factor
    mean = torch.tensor(video_processor.image_mean, dtype=torch.float32) * to_pixel_units
    std = torch.tensor(video_processor.image_std, dtype=torch.float32) * to_pixel_units
    return torch.stack((mean, std))


def normalize_video(pixels: torch.Tensor, normalization: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(..., C, H, W)`` pixels (0..255, uint8 or any dtype) -> the same shape in ``dtype``:
    ``(x - mean) / std`` in float32 with ``normalization`` ``(..., 2, C)`` = ``[mean, std]``,
    broadcast over the leading dimensions: ``(2, C)``
    for one ``(T, C, H, W)`` video, ``(V, 1, 2, C)`` for a ``(V, T, C, H, W)`` batch.

    On CUDA the normalisation is copied from pinned memory: a copy from pageable memory makes
    the host wait for the stream first (here: for the pixels' upload, before the vision tower
    is launched), ``non_blocking`` or not."""
    if pixels.is_cuda and not normalization.is_cuda:
        normalization = normalization.to(torch.float32).pin_memory()
    normalization = normalization.to(pixels.device, torch.float32, non_blocking=True)
    mean, std = normalization[..., 0, :, None, None], normalization[..., 1, :, None, None]
    return ((pixels.float() - mean) / std).to(dtype)
