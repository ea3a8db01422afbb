"""LLaVA-OneVision with MMG-Vid video-token pruning before scheduling.

vLLM's in-tree model, processing info and processor, each extended by the smallest
override, in the layout of vLLM's own model files:

* ``MMGVidProcessingInfo`` resolves how a request's videos are pruned (``config``).
* ``MMGVidMultiModalProcessor`` (API-server process) shortens each video's placeholder
  run from ``T * 196 + 1`` to ``num_kept(T, 196, r) + 1`` tokens (pooled frame tokens,
  then the trailing ``image_newline``), so the scheduler allocates KV blocks for the
  pruned prompt only. It stores the video's retention and method as two per-video
  fields of the processed item, which the model receives with the pixels.
* ``MMGVidLlavaOnevisionForConditionalGeneration`` (engine process) runs vision tower,
  projector and 2x2 pooling as vLLM does, then keeps the ``prune(...)`` rows of the
  ``(T, 196, D)`` pooled features in temporal order, and the newline row.

Choices:

* Retention travels as data, not as process state: the placeholder count is computed
  from the processed item's own ``mmgvid_retention`` field, and the model prunes with
  that same field, so prompt and embeddings always agree, for concurrent requests with
  different ratios, and for items served from vLLM's processor cache (whose key, the
  multimodal hash, includes the request's ``mm_processor_kwargs``, so the same video at
  another ratio is another cache entry). The fields (float64 retention, int64 method,
  float32 pixel normalisation) stay on the CPU (``keep_on_cpu``): no rounding to the
  model dtype, no device sync to read them.
* Retention 1.0 (the default when nothing is configured) skips pruning: prompt and
  embeddings are vanilla vLLM's.
* Request values are validated in ``apply``, before hashing and processing, so a bad
  value is a ``ValueError`` in the API server (HTTP 400), never an engine error.
* Pruned videos travel unnormalised (``pixels``): for a pruned request with videos and no
  images, the processor asks the HF video processor for its resized uint8 frames only and
  sends them as they are (``mmgvid_raw_pixel_values_videos``, half the bytes of vanilla's
  bf16 pixels) with each video's normalisation
  (``mmgvid_pixel_normalization``); the model normalises on its device, bit-identically to
  vanilla's pixels. Offline on the CPU (``benchmarks/api_latency.py``) the API server's
  processing of a 32-frame 384 px video drops from ~80 to ~9 ms (no float32
  rescale/normalise, no stacked copy, no cast, no throwaway 6273-token text). Retention
  1.0 keeps vanilla's float path, so pruning off stays exactly vanilla vLLM (the baseline
  of every benchmark); so do requests that override the HF normalisation or mix in images.
  The raw frames have their own key, not ``pixel_values_videos``: vLLM batches the videos of
  a step only when their items have the same keys, so uint8 and vanilla float videos never
  meet in one ``torch.stack``.
  The ``mmgvid_*`` request keys are stripped before vLLM looks up or calls its cached HF
  processor, so no per-request processor is built.
* Images and video embeddings passed in by the user are not pruned.
* A ``prune`` failure in the engine (non-finite features) falls back to uniform
  selection of the same count instead of failing the batch (``prune(..., on_report=)``;
  counted and logged by ``metrics`` once the device has run the prune: no wait).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.distributed import get_tensor_model_parallel_rank
from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionDummyInputsBuilder,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionMultiModalProcessor,
    LlavaOnevisionProcessingInfo,
    LlavaOnevisionVideoPixelInputs,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import MultiModalDataItems, VideoProcessorItems
from vllm.multimodal.processing import PromptReplacement, PromptUpdate

from . import metrics
from .config import METHOD_KEY, RETENTION_KEY, PruningConfig, refuse_vllm_video_pruning, resolve_request, server_config
from .kept_log import kept_log_from_env
from .pixels import fused_normalization, normalize_video
from .pruning import METHODS, num_kept, prune
from .request_kwargs import check_request_kwargs
from .vllm_compat import HFProcessorHook

__all__ = [
    "MMGVidLlavaOnevisionForConditionalGeneration",
    "MMGVidMultiModalProcessor",
    "MMGVidProcessingInfo",
]

RAW_PIXELS_KEY = "mmgvid_raw_pixel_values_videos"
PIXEL_NORMALIZATION_KEY = "mmgvid_pixel_normalization"

FRAME_TOKENS = 196  # pooled tokens per 384x384 frame (27x27 patches, 2x2 pooling)
MAX_FRAMES_PER_VISION_PASS = 32
WARM_UP_FRAMES = (32, 31)  # frame counts pruned once at startup on CUDA (_warm_up_pruning)


class MMGVidProcessingInfo(LlavaOnevisionProcessingInfo):
    def get_video_pruning(self, hf_processor_mm_kwargs: Mapping[str, object]) -> PruningConfig:
        """Pruning for the videos of a request: its ``mm_processor_kwargs`` over the server's
        ``--mm-processor-kwargs`` (merged by vLLM) over the environment. ``ValueError`` if invalid."""
        merged = self.ctx.get_merged_mm_kwargs(hf_processor_mm_kwargs)
        return resolve_request(merged, server_config())


class MMGVidMultiModalProcessor(HFProcessorHook, LlavaOnevisionMultiModalProcessor):
    info: MMGVidProcessingInfo

    def apply(self, inputs, timing_ctx):
        # Checked and canonicalised before the request is hashed, cached or processed.
        inputs = dataclasses.replace(inputs, hf_processor_mm_kwargs=check_request_kwargs(inputs.hf_processor_mm_kwargs))
        self.info.get_video_pruning(inputs.hf_processor_mm_kwargs)
        outputs = super().apply(inputs, timing_ctx)
        metrics.record_processed_videos(self.info.ctx.model_config.served_model_name,
                                        len(outputs["mm_placeholders"].get("video", ())))
        return outputs

    def _sends_raw_videos(self, mm_counts: Mapping[str, int], mm_kwargs: Mapping[str, object]) -> bool:
        """Whether this request's videos go to the model unnormalised (``pixels``): pruned
        videos, unless the HF normalisation is overridden. A function of the request's kwargs
        only, not of the other items of the call: vLLM's processor cache calls the HF processor
        for the items it misses, so one video meets different company in different calls, and
        a cached item must equal a fresh one."""
        if not mm_counts.get("video"):
            return False
        if self.info.get_video_pruning(mm_kwargs).retention >= 1.0:
            return False
        video_processor = self.info.get_hf_processor().video_processor
        return fused_normalization(video_processor, self.info.ctx.get_merged_mm_kwargs(mm_kwargs)) is not None

    def _process_videos_raw(self, videos: Sequence[object], hf_kwargs: Mapping[str, object]) -> dict[str, object]:
        """``mmgvid_raw_pixel_values_videos``: one ``(T, C, H, W)`` uint8 tensor per video, the HF
        video processor's frames (sampled and resized as vanilla) before its rescale and
        normalise (no text, no float copies); ``mmgvid_pixel_normalization`` (V, 2, C): that
        normalisation. ``ValueError`` if the processor does not give uint8 frames (the HF fast
        video processors resize uint8 frames in uint8)."""
        video_processor = self.info.get_hf_processor(**hf_kwargs).video_processor
        # The request's and server's kwargs that the video processor takes, as the HF processor routes them.
        merged = self.info.ctx.get_merged_mm_kwargs(hf_kwargs)
        kwargs = {k: v for k, v in merged.items() if k in video_processor.valid_kwargs.__annotations__}
        kwargs.update(do_rescale=False, do_normalize=False, return_tensors="pt")
        pixels = []
        for video in videos:
            try:
                raw = video_processor(videos=video, **kwargs)["pixel_values_videos"][0]
            except Exception as exc:  # as vLLM's call_hf_processor: HTTP 400
                raise ValueError(f"Failed to apply {type(video_processor).__name__} with kwargs={kwargs}") from exc
            if raw.dtype != torch.uint8:
                raise ValueError(f"{type(video_processor).__name__} gave {raw.dtype} frames without rescaling, not "
                                 "uint8: serve this model with retention 1.0 or report the processor")
            pixels.append(raw)
        normalization = fused_normalization(video_processor, {})
        return {RAW_PIXELS_KEY: pixels, PIXEL_NORMALIZATION_KEY: normalization.repeat(len(pixels), 1, 1)}

    def _add_pruning_fields(self, outputs: BatchFeature, mm_kwargs: Mapping[str, object]) -> BatchFeature:
        """Add ``mmgvid_retention`` (V,) float64 and ``mmgvid_method`` (V,) int64 (index into
        ``METHODS``) for the V videos in ``pixel_values_videos`` or ``mmgvid_raw_pixel_values_videos``."""
        videos = _video_pixels(outputs)
        if videos is not None:
            pruning = self.info.get_video_pruning(mm_kwargs)
            outputs[RETENTION_KEY] = torch.full((len(videos),), pruning.retention, dtype=torch.float64)
            outputs[METHOD_KEY] = torch.full((len(videos),), METHODS.index(pruning.method), dtype=torch.int64)
        return outputs

    def _get_mm_fields_config(
        self,
        hf_inputs: BatchFeature,
        hf_processor_mm_kwargs: Mapping[str, object],
    ) -> Mapping[str, MultiModalFieldConfig]:
        return dict(
            super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs),
            **{RAW_PIXELS_KEY: MultiModalFieldConfig.batched("video")},
            **{
                key: MultiModalFieldConfig.batched("video", keep_on_cpu=True)
                for key in (RETENTION_KEY, METHOD_KEY, PIXEL_NORMALIZATION_KEY)
            },
        )

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        """vLLM's updates, with each video's ``T * M + 1`` placeholders cut to ``num_kept(T, M, r) + 1``."""
        updates = super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        vanilla = next(u for u in updates if u.modality == "video")

        def get_pruned_video_replacement(item_idx: int) -> list[int]:
            tokens = vanilla.replacement(item_idx)  # [video_token_id] * (T * M + 1)
            item = out_mm_kwargs["video"][item_idx]
            elem = item.get(RETENTION_KEY)  # None for user-supplied embeddings
            if elem is None:
                return tokens
            num_frames = mm_items.get_items("video", VideoProcessorItems).get_num_frames(item_idx)
            self._check_video_pixels(item_idx, _video_pixels(item).data, num_frames, len(tokens))
            retention = float(elem.data)
            if retention >= 1.0:
                return tokens
            return tokens[: num_kept(num_frames, (len(tokens) - 1) // num_frames, retention) + 1]

        return [
            *(u for u in updates if u is not vanilla),
            PromptReplacement(modality="video", target=vanilla.target, replacement=get_pruned_video_replacement),
        ]

    def _check_video_pixels(self, item_idx: int, pixels: torch.Tensor, num_frames: int, num_placeholders: int) -> None:
        """``ValueError`` (HTTP 400, in the API server) unless the video's processed ``(T, C, H, W)``
        pixels are ``num_frames`` frames the vision tower accepts (3 x image_size x image_size)
        and ``num_placeholders`` is what the model makes of them (``T * M + 1``): a mismatch
        would otherwise fail in the engine, which takes the server down with it."""
        size = self.info.get_vision_encoder_info().get_image_size()
        expected = (num_frames, 3, size, size)
        if tuple(pixels.shape) != expected:
            raise ValueError(
                f"video {item_idx}: processing gave frames of shape {tuple(pixels.shape)} "
                f"(frames, channels, height, width), but the model takes {expected}; "
                "check the request's and server's mm_processor_kwargs"
            )
        frame_tokens = self.info.get_num_video_tokens(image_width=size, image_height=size, num_frames=1) - 1
        if num_placeholders != num_frames * frame_tokens + 1:
            raise ValueError(
                f"video {item_idx}: {num_placeholders} placeholder tokens for {num_frames} frames, "
                f"but the model produces {num_frames * frame_tokens + 1}"
            )


def _video_pixels(fields: Mapping[str, object]):
    """The videos' pixels among processed ``fields`` (a BatchFeature or one item): raw or vanilla."""
    return fields.get(RAW_PIXELS_KEY, fields.get("pixel_values_videos"))


class _PrunableVideos(NamedTuple):
    """Video inputs of a batch of V videos, with their pruning."""

    pixels: LlavaOnevisionVideoPixelInputs
    retention: list[float]  # (V,)
    method: list[str]  # (V,)


@MULTIMODAL_REGISTRY.register_processor(
    MMGVidMultiModalProcessor,
    info=MMGVidProcessingInfo,
    dummy_inputs=LlavaOnevisionDummyInputsBuilder,
)
class MMGVidLlavaOnevisionForConditionalGeneration(LlavaOnevisionForConditionalGeneration):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        refuse_vllm_video_pruning(vllm_config.model_config.multimodal_config)  # stops the server at startup
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.mmgvid_config = server_config()  # for the server-wide MMG-Vid hyper-parameters
        self.mmgvid_model_name = vllm_config.model_config.served_model_name  # metrics label
        self.mmgvid_pixel_dtype = vllm_config.model_config.dtype  # what vLLM casts normalised pixels to
        # Frames per vision-tower pass: one unpruned 32-frame video, or what the token budget admits.
        budget_frames = vllm_config.scheduler_config.max_num_batched_tokens // FRAME_TOKENS
        self.mmgvid_frame_chunk = max(1, min(MAX_FRAMES_PER_VISION_PASS, budget_frames))
        self.mmgvid_kept_log = kept_log_from_env()  # MMGVID_KEPT_LOG_DIR: per-rank kept indices
        metrics.report_from_this_process(get_tensor_model_parallel_rank() == 0)  # every rank prunes; one reports
        self._warm_up_pruning(vllm_config)

    def _warm_up_pruning(self, vllm_config: VllmConfig) -> None:
        """On CUDA, prune random ``(T, 196, D)`` videos in the model dtype once, for T in
        ``WARM_UP_FRAMES``, so MMG-Vid's Triton kernels are compiled while the server
        starts, not in the first requests (on a fresh H100 machine the first
        32-frame request spent ~60 s in the pruning). Triton specialises a kernel on whether
        its int arguments divide by 16, so 32 frames covers 16, 48, 64 too and 31 the counts
        that do not divide by 16. vLLM 0.26 runs no dummy video through the model at startup,
        so this runs at construction, on the model's device. Not on the CPU: nothing to compile."""
        device = vllm_config.device_config.device
        if device is None or torch.device(device).type != "cuda":
            return
        dim = vllm_config.model_config.hf_config.text_config.hidden_size
        # As in a forward pass: vLLM builds the model with its device and dtype as the defaults.
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)
        try:
            with torch.device("cpu"):
                for frames in WARM_UP_FRAMES:
                    tokens = torch.randn(frames, FRAME_TOKENS, dim, device=device, dtype=vllm_config.model_config.dtype)
                    prune(tokens, 0.25, "mmgvid", **self.mmgvid_config.prune_options("mmgvid"))
        finally:
            torch.set_default_dtype(default_dtype)

    def embed_multimodal(self, **kwargs: object):
        """vLLM's, after a batch of raw videos (its own key: never batched with other items) is
        normalised into the ``pixel_values_videos`` vLLM's model reads."""
        raw = kwargs.pop(RAW_PIXELS_KEY, None)
        normalization = kwargs.pop(PIXEL_NORMALIZATION_KEY, None)  # (V, 2, C) or V x (2, C), on the CPU
        if raw is not None:
            kwargs["pixel_values_videos"] = self._normalize_videos(raw, torch.stack(list(normalization)))
        return super().embed_multimodal(**kwargs)

    def _parse_and_validate_video_input(self, **kwargs: object) -> _PrunableVideos | None:
        pixels = super()._parse_and_validate_video_input(**kwargs)
        if pixels is None:
            return None
        num_videos = len(pixels["pixel_values_videos"])
        retention = kwargs.get(RETENTION_KEY)
        method = kwargs.get(METHOD_KEY)
        return _PrunableVideos(
            pixels,
            [1.0] * num_videos if retention is None else [float(r) for r in retention],
            ["mmgvid"] * num_videos if method is None else [METHODS[int(m)] for m in method],
        )

    def _normalize_videos(self, videos, normalization: torch.Tensor):
        """``(V, T, C, H, W)`` uint8 tensor or V ``(T_v, C, H, W)`` ones, with their ``(V, 2, C)``
        normalisation -> the same layout, normalised, in the model dtype."""
        dtype = self.mmgvid_pixel_dtype
        if isinstance(videos, torch.Tensor):  # one pass over the stacked batch
            return normalize_video(videos, normalization[:, None], dtype)
        return [normalize_video(video, norm, dtype) for video, norm in zip(videos, normalization)]

    def _video_pixels_to_features(self, vision_tower, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(F, C, H, W)`` frames -> ``(F, M, D)`` pooled features, a few frames at a time.

        vLLM budgets encoder work in placeholder tokens. Pruning shortens the placeholders, so
        the scheduler can put many more videos into one encoder step than the startup memory
        profile ran (seen on an H100: 64 concurrent requests at 0.25 batched ~10 videos and ran
        out of memory in the vision tower). Frames are encoded independently, so running them
        in chunks of ``mmgvid_frame_chunk`` gives the same features with a bounded peak.
        """
        encode = super()._video_pixels_to_features
        return torch.cat([encode(vision_tower, chunk) for chunk in pixel_values.split(self.mmgvid_frame_chunk)])

    def _process_video_pixels(self, inputs: _PrunableVideos) -> list[torch.Tensor]:
        """One ``(num_kept(T, M, r) + 1, D)`` tensor per video (``(T * M + 1, D)`` when r == 1)."""
        embeddings = super()._process_video_pixels(inputs.pixels)  # (V, T*M+1, D) or V x (1, T_v*M+1, D)
        frames = [len(video) for video in inputs.pixels["pixel_values_videos"]]
        pruned = []
        for emb, t, r, m in zip(embeddings, frames, inputs.retention, inputs.method):
            label = m if r < 1.0 else metrics.NOT_PRUNED
            with metrics.time_pruning(self.mmgvid_model_name, label, emb.device) as seen:
                pruned.append(self._prune_video(emb.reshape(-1, emb.shape[-1]), t, r, m, seen))
            original = emb.shape[-2] - 1  # T * M; the newline is never pruned
            metrics.record_video(self.mmgvid_model_name, label, original, len(pruned[-1]) - 1,
                                 self.mmgvid_config.retention)
        return pruned

    def _prune_video(
        self, embeddings: torch.Tensor, num_frames: int, retention: float, method: str,
        seen: metrics.PruneObservation,
    ) -> torch.Tensor:
        """``(T * M + 1, D)`` pooled frame tokens + newline -> ``(num_kept(T, M, r) + 1, D)``."""
        if retention >= 1.0:
            return embeddings
        frame_tokens, newline = embeddings[:-1], embeddings[-1:]
        tokens = frame_tokens.reshape(num_frames, -1, frame_tokens.shape[-1])  # (T, M, D)
        keep = prune(tokens, retention, method, on_report=seen.set_report, **self.mmgvid_config.prune_options(method))
        if self.mmgvid_kept_log is not None:
            self.mmgvid_kept_log.write(tokens, keep, retention, method)
        return torch.cat((frame_tokens[keep], newline))
