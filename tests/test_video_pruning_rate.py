"""vLLM's own ``--video-pruning-rate`` is refused, not ignored, where the plugin serves the model."""

from __future__ import annotations

import pytest
from vllm.engine.arg_utils import EngineArgs

from mmgvid_vllm.config import refuse_vllm_video_pruning
from mmgvid_vllm.tiny_model import ensure_tiny_model


def multimodal_config(**engine_args):
    """The ``ModelConfig.multimodal_config`` vLLM builds for the tiny model (what the model's ``__init__`` reads)."""
    return EngineArgs(model=str(ensure_tiny_model()), **engine_args).create_model_config().multimodal_config


def test_unset_or_zero_is_accepted():
    refuse_vllm_video_pruning(multimodal_config())
    refuse_vllm_video_pruning(multimodal_config(video_pruning_rate=0.0))


def test_rate_is_refused_with_our_settings_named():
    message = ("--video-pruning-rate 0.75 (vLLM's EVS) does not apply to LLaVA-OneVision, whose video tokens the "
               "mmgvid plugin prunes: ask for the share kept instead, `mmgvid serve --retention 0.25`, "
               "MMGVID_RETENTION=0.25 or --mm-processor-kwargs '{\"mmgvid_retention\": 0.25}' "
               "(MMGVID_METHOD=evs for EVS)")
    with pytest.raises(ValueError) as info:
        refuse_vllm_video_pruning(multimodal_config(video_pruning_rate=0.75))
    assert str(info.value) == message
