"""vLLM's multimodal processing consistency test, adapted to the tiny model with the plugin.

vLLM's ``tests/models/multimodal/processing/test_common.py::_test_processing_correctness``
checks that a processor with the processor cache returns the same inputs as one without it,
for random batches of images and videos, part of them repeated so that the cache answers.
Its invariant: a processed item is a function of its cache key (the item and the request's
``mm_processor_kwargs``) alone. Here: the plugin's processor, at retention 1.0 and 0.25, with
up to 3 images and 3 videos per prompt, 32 batches per case as vLLM runs it (hit rate 0.5
of its 0.3, 0.5, 1.0: a mix of repeated and new items, the case that broke).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from vllm.multimodal.cache.base import MultiModalProcessorOnlyCache
from vllm.multimodal.processing import ProcessorInputs
from vllm.multimodal.processing.context import TimingContext

from mmgvid_vllm.tiny_model import ensure_tiny_model

LIMITS = {"image": 3, "video": 3}


@pytest.fixture(scope="module")
def processor_and_cache():
    from vllm.engine.arg_utils import EngineArgs
    from vllm.multimodal import MULTIMODAL_REGISTRY

    from mmgvid_vllm.llava_onevision import MMGVidLlavaOnevisionForConditionalGeneration

    engine_args = EngineArgs(
        model=str(ensure_tiny_model()), max_model_len=32768, limit_mm_per_prompt=LIMITS, enforce_eager=True,
        mm_processor_cache_gb=4,
    )
    model_config = engine_args.create_model_config()
    ctx = MULTIMODAL_REGISTRY._create_processing_ctx(model_config)
    processor = MMGVidLlavaOnevisionForConditionalGeneration._processor_factory.build_processor(ctx)
    return processor, lambda: MultiModalProcessorOnlyCache(model_config)


def _random_image(rng) -> Image.Image:
    w, h = rng.integers(128, 257, size=2)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _random_video(rng) -> np.ndarray:
    frames = rng.integers(2, 9)
    w, h = rng.integers(128, 257, size=2)
    return rng.integers(0, 256, (frames, h, w, 3), dtype=np.uint8)


REPEATED = {"image": Image.new("RGB", (128, 128)), "video": np.zeros((4, 128, 128, 3), dtype=np.uint8)}
FACTORY = {"image": _random_image, "video": _random_video}


def _apply(processor, mm_data: dict, mm_kwargs: dict, cache):
    counts = {k: len(v) for k, v in mm_data.items()}
    prompt = processor.info.get_tokenizer().encode(processor.dummy_inputs.get_dummy_text(counts))
    items = processor.info.parse_mm_data(mm_data)
    inputs = ProcessorInputs(prompt, items, hf_processor_mm_kwargs=mm_kwargs, cache=cache)
    return processor.apply(inputs, TimingContext())


def _assert_same(a, b, msg: str) -> None:
    assert a["prompt_token_ids"] == b["prompt_token_ids"], msg
    assert a["mm_placeholders"] == b["mm_placeholders"], msg
    for modality in ("image", "video"):
        items_a, items_b = a["mm_kwargs"].get(modality, []), b["mm_kwargs"].get(modality, [])
        assert len(items_a) == len(items_b), msg
        for item_a, item_b in zip(items_a, items_b):
            assert item_a.keys() == item_b.keys(), msg
            for key in item_a:
                x, y = item_a[key].data, item_b[key].data
                assert x.dtype == y.dtype and torch.equal(x, y), f"{msg}: {modality} {key} differs"


@pytest.mark.parametrize("retention", [1.0, 0.25])
@pytest.mark.parametrize("hit_rate", [0.5])
def test_cached_processing_equals_uncached(processor_and_cache, retention, hit_rate):
    processor, new_cache = processor_and_cache
    cache = new_cache()
    rng = np.random.default_rng(0)
    mm_kwargs = {"mmgvid_retention": retention}
    for batch in range(32):
        mm_data = {
            modality: [REPEATED[modality] if rng.random() < hit_rate else FACTORY[modality](rng)
                       for _ in range(rng.integers(limit + 1))]
            for modality, limit in LIMITS.items()
        }
        mm_data = {k: v for k, v in mm_data.items() if v}
        if not mm_data:
            continue
        baseline = _apply(processor, mm_data, mm_kwargs, None)
        cached = _apply(processor, mm_data, mm_kwargs, cache)
        _assert_same(baseline, cached, f"batch {batch}: { {k: len(v) for k, v in mm_data.items()} }")
