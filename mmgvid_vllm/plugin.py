"""vLLM general plugin ``mmgvid`` (entry point ``mmgvid_vllm.plugin:register``).

vLLM calls ``register()`` in each of its processes (API server, engine core, workers),
when ``VLLM_PLUGINS`` is unset or names ``mmgvid``. It checks that the installed vLLM is
one the plugin supports, with every internal it overrides as expected (``vllm_support``:
otherwise it stops the server with one message if pruning was asked for, or warns and
leaves vLLM untouched), checks the ``MMGVID_*`` environment (a bad value stops the server
at startup with the variable named) and registers the video loader ``mmgvid_pyav``
(``video_loader``), the media connector ``mmgvid`` (``media_connector``: URL mistakes answered 400)
and MMG-Vid's LLaVA-OneVision under the in-tree architecture name, which
replaces vLLM's class for every checkpoint with that architecture. The class is
registered lazily (by name), so loading the plugin imports no model code.
"""

from __future__ import annotations

import sys

ARCHITECTURE = "LlavaOnevisionForConditionalGeneration"
MODEL_CLASS = "mmgvid_vllm.llava_onevision:MMGVidLlavaOnevisionForConditionalGeneration"


def register() -> None:
    """Check the installed vLLM, validate the environment and register (idempotent)."""
    from .config import server_config
    from .vllm_support import require_supported_vllm  # imports nothing of vLLM: works on any version

    config = server_config()
    if not require_supported_vllm(pruning_requested=config.enabled or _pruning_in_server_args()):
        return  # a vLLM the plugin does not know, pruning not asked for: vanilla vLLM, untouched

    from vllm import ModelRegistry

    from . import media_connector, metrics, video_loader

    metrics.setup()
    video_loader.register_video_loader()  # VIDEO_LOADER_REGISTRY: mmgvid_pyav
    media_connector.register()
    ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)


def _pruning_in_server_args() -> bool:
    """Whether this process's command line asks for pruning (``mmgvid_*`` in its
    ``--mm-processor-kwargs``). vLLM parses its arguments after loading plugins, so the
    plugin reads them raw; the API server, which runs this first, is where it matters."""
    return any("mmgvid_" in arg for arg in sys.argv)
