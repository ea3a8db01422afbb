"""Pruned requests send their videos unnormalised, as uint8, under their own key
(``mmgvid_vllm.pixels``): the model must see bit-identical pixels to vanilla vLLM's HF path, for
any size, and vLLM must never batch them with vanilla's float pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vllm.multimodal.processing import ProcessorInputs
from vllm.multimodal.processing.context import TimingContext

from benchmarks.api_latency import build_processors, video_prompt_ids
from mmgvid_vllm.llava_onevision import PIXEL_NORMALIZATION_KEY, RAW_PIXELS_KEY
from mmgvid_vllm.pixels import fused_normalization, normalize_video
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
    assert "pixel_values_videos" not in pruned
    raw = pruned[RAW_PIXELS_KEY]
    assert raw.dtype == torch.uint8 and raw.shape == expected.shape
    normalization = pruned[PIXEL_NORMALIZATION_KEY]
    got = normalize_video(raw, normalization, expected.dtype)
    assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_retention_one_keeps_vanilla_pixels(processors):
    vanilla, plugin = processors
    video = np.random.default_rng(1).integers(0, 256, (4, 384, 384, 3), dtype=np.uint8)
    unpruned = _process(plugin, video, {"mmgvid_retention": 1.0})
    assert torch.equal(unpruned["pixel_values_videos"], _process(vanilla, video, {})["pixel_values_videos"])
    assert RAW_PIXELS_KEY not in unpruned and PIXEL_NORMALIZATION_KEY not in unpruned


def test_normalization_overrides_keep_the_vanilla_path(processors):
    _, plugin = processors
    video = np.random.default_rng(2).integers(0, 256, (4, 384, 384, 3), dtype=np.uint8)
    out = _process(plugin, video, {"mmgvid_retention": 0.25, "image_mean": [0.0, 0.0, 0.0]})
    assert out["pixel_values_videos"].is_floating_point() and RAW_PIXELS_KEY not in out
    assert fused_normalization(plugin.info.get_hf_processor().video_processor, {"do_normalize": False}) is None


def test_a_processor_without_uint8_frames_is_a_clear_value_error(processors, monkeypatch):
    """Raw frames must be uint8 (what they travel as); anything else is refused in the API server
    (HTTP 400) with a message, never sent on to the engine."""
    _, plugin = processors
    video_processor = type(plugin.info.get_hf_processor().video_processor)
    call = video_processor.__call__

    def float_frames(self, *args, **kwargs):
        out = call(self, *args, **kwargs)
        out["pixel_values_videos"] = [v.float() for v in out["pixel_values_videos"]]
        return out

    monkeypatch.setattr(video_processor, "__call__", float_frames)
    video = np.random.default_rng(3).integers(0, 256, (4, 384, 384, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="torch.float32 frames without rescaling, not uint8"):
        _process(plugin, video, {"mmgvid_retention": 0.25})


def test_raw_and_vanilla_videos_are_never_batched_together(processors):
    """vLLM groups the items of a step into one batch only when their keys agree: a raw (uint8)
    and a vanilla (float) video of the same shape go to the model in two batches, and same-kind
    videos in one."""
    from vllm.multimodal.utils import group_and_batch_mm_kwargs

    _, plugin = processors

    def item(seed: int, retention: float):
        video = np.random.default_rng(seed).integers(0, 256, (4, 384, 384, 3), dtype=np.uint8)
        items = plugin.info.parse_mm_data({"video": [video]})
        kwargs = {"mmgvid_retention": retention}
        inputs = ProcessorInputs(video_prompt_ids(plugin), items, hf_processor_mm_kwargs=kwargs)
        return ("video", plugin.apply(inputs, TimingContext())["mm_kwargs"]["video"][0])

    items = [item(0, 0.25), item(1, 0.5), item(2, 1.0), item(3, 0.25)]
    batches = [(n, batch) for _, n, batch in group_and_batch_mm_kwargs(items)]
    assert [n for n, _ in batches] == [2, 1, 1]
    assert batches[0][1][RAW_PIXELS_KEY].dtype == torch.uint8 and batches[0][1][RAW_PIXELS_KEY].shape[0] == 2
    assert "pixel_values_videos" in batches[1][1] and RAW_PIXELS_KEY not in batches[1][1]


def test_stacked_batch_normalizes_like_each_video():
    """The model normalises a stacked ``(V, T, C, H, W)`` uint8 batch in one pass with ``(V, 1, 2, C)``."""
    batch = torch.randint(0, 256, (3, 2, 3, 4, 4), dtype=torch.uint8)
    norms = torch.stack([torch.tensor([[127.5] * 3, [127.5] * 3]), torch.tensor([[0.0] * 3, [1.0] * 3]),
                         torch.tensor([[10.0, 20.0, 30.0], [2.0, 4.0, 8.0]])])
    together = normalize_video(batch, norms[:, None], torch.bfloat16)
    assert torch.equal(together, torch.stack([normalize_video(v, n, torch.bfloat16) for v, n in zip(batch, norms)]))
