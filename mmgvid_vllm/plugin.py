"""vLLM general plugin ``mmgvid`` (entry point ``mmgvid_vllm.plugin:register``).

vLLM calls ``register()`` in each of its processes (API server, engine core, workers),
when ``VLLM_PLUGINS`` is unset or names ``mmgvid``. It checks the ``MMGVID_*``
environment (a bad value stops the server at startup with the variable named) and
registers MMG-Vid's LLaVA-OneVision under the in-tree architecture name, which
replaces vLLM's class for every checkpoint with that architecture. The class is
registered lazily (by name), so loading the plugin imports no model code.
"""

from __future__ import annotations

ARCHITECTURE = "LlavaOnevisionForConditionalGeneration"
MODEL_CLASS = "mmgvid_vllm.llava_onevision:MMGVidLlavaOnevisionForConditionalGeneration"


def register() -> None:
    """Validate the environment and register the model (idempotent)."""
    from vllm import ModelRegistry

    from . import metrics
    from .config import server_config

    server_config()
    metrics.setup()
    __import__("mmgvid_vllm.video_loader").video_loader.register_video_loader()  # VIDEO_LOADER_REGISTRY: mmgvid_pyav
    ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)
