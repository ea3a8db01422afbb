"""Pruned requests send their videos unnormalised (``mmgvid_vllm.pixels``): the model must see
bit-identical pixels to vanilla vLLM's HF path, for any size, and in mixed batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vllm.multimodal.processing import ProcessorInputs
from vllm.multimodal.processing.context import TimingContext

from benchmarks.api_latency import build_processors, video_prompt_ids
from mmgvid_vllm.llava_onevision import PIXEL_NORMALIZATION_KEY
from mmgvid_vllm.pixels import fused_normalization, identity_normalization, is_identity, normalize_video
from mmgvid_vllm.tiny_model import ensure_tiny_model


@pytest.fixture(scope="module")
def processors():
    return build_processors(str(ensure_tiny_model()), None)


def _process(processor, video: np.ndarray, mm_kwargs: dict):
    items = processor.info.parse_mm_data({"video": [video]})
    inputs = ProcessorInputs(video_prompt_ids(processor), items, hf_processor_mm_kwargs=mm_kwargs)
    out = processor.apply(inputs, TimingContext())
    (item,) = out["mm_kwargs"]["video"]
    return {key: elem.data for key, elem in item.items()}


@pytest.mark.parametrize("shape", [(32, 384, 384), (8, 240, 320), (3, 64, 96), (1, 500, 200)])
def test_raw_video_is_bit_identical_to_vanilla_after_normalization(processors, shape):
    vanilla, plugin = processors
    video = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = _process(vanilla, video, {})["pixel_values_videos"]  # (T, 3, 384, 384), model dtype
    pruned = _process(plugin, video, {"mmgvid_retention": 0.25})
    raw = pruned["pixel_values_videos"]
    assert raw.dtype == expected.dtype and torch.equal(raw, raw.round()) and raw.min() >= 0 and raw.max() <= 255
    normalization = pruned[PIXEL_NORMALIZATION_KEY]
    assert not is_identity(normalization)
    got = normalize_video(raw, normalization, expected.dtype)
    assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_retention_one_keeps_vanilla_pixels(processors):
    vanilla, plugin = processors
    video = np.random.default_rng(1).integers(0, 256, (4, 384, 384, 3), dtype=np.uint8)
    unpruned = _process(plugin, video, {"mmgvid_retention": 1.0})
    assert torch.equal(unpruned["pixel_values_videos"], _process(vanilla, video, {})["pixel_values_videos"])
    assert is_identity(unpruned[PIXEL_NORMALIZATION_KEY])


def test_normalization_overrides_keep_the_vanilla_path(processors):
    _, plugin = processors
    video = np.random.default_rng(2).integers(0, 256, (4, 384, 384, 3), dtype=np.uint8)
    out = _process(plugin, video, {"mmgvid_retention": 0.25, "image_mean": [0.0, 0.0, 0.0]})
    assert out["pixel_values_videos"].is_floating_point() and is_identity(out[PIXEL_NORMALIZATION_KEY])
    assert fused_normalization(plugin.info.get_hf_processor().video_processor, {"do_normalize": False}) is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_mixed_batch_normalizes_each_video_exactly(dtype):
    """A batch stacks raw and normalised videos in the model dtype, each with its normalisation."""
    raw = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    norm = torch.tensor([[127.5] * 3, [127.5] * 3])
    normalized = normalize_video(raw, norm, dtype)  # what vanilla sends
    stacked = torch.stack([raw.to(dtype), normalized])  # 0..255 exact in the model dtype
    assert torch.equal(normalize_video(stacked[0], norm, dtype), normalized)
    assert torch.equal(normalize_video(stacked[1], identity_normalization(3), dtype), normalized)


def test_stacked_batch_normalizes_like_each_video():
    """The model normalises a stacked ``(V, T, C, H, W)`` batch in one pass with ``(V, 1, 2, C)``."""
    batch = torch.randint(0, 256, (3, 2, 3, 4, 4)).to(torch.bfloat16)
    norms = torch.stack([torch.tensor([[127.5] * 3, [127.5] * 3]), identity_normalization(3),
                         torch.tensor([[10.0, 20.0, 30.0], [2.0, 4.0, 8.0]])])
    together = normalize_video(batch, norms[:, None], torch.bfloat16)
    assert torch.equal(together, torch.stack([normalize_video(v, n, torch.bfloat16) for v, n in zip(batch, norms)]))
