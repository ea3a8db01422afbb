"""Accuracy with lmms-eval: the ``mmgvid`` model, registered through lmms-eval's entry points.

    pip install "mmgvid-vllm[eval]"
    python -m lmms_eval --model mmgvid --tasks videomme \\
        --model_args base_url=http://127.0.0.1:8000/v1,retention=0.25

lmms-eval loads ``manifest`` (entry-point group ``lmms_eval.models``, see pyproject.toml)
when it builds its model registry, and imports the model class (``lmms_model``) only when
``--model mmgvid`` is asked for.
"""

from __future__ import annotations

__all__ = ["manifest"]


def manifest():
    """lmms-eval's registration record for ``--model mmgvid`` (a chat model)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="mmgvid", chat_class_path="mmgvid_vllm.eval.lmms_model.MMGVidOpenAI")
