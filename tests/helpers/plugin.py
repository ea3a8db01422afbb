"""Helpers for the MMG-Vid plugin's server tests (``tests/test_plugin_*.py``)."""

from __future__ import annotations

import base64
import io
import json

import requests
from PIL import Image

from mmgvid_vllm.client import chat_body
from mmgvid_vllm.launcher import CPU_DEFAULT_ARGS, VllmServer
from mmgvid_vllm.media import make_video_frames
from mmgvid_vllm.pruning import num_kept
from mmgvid_vllm.tiny_model import FRAME_TOKENS
from mmgvid_vllm.vllm_compat import request_mm_kwargs_server_args

__all__ = [
    "expected_prompt_tokens",
    "jpeg_frames_url",
    "plugin_server_args",
    "post_chat",
    "video_body",
]


def plugin_server_args(*extra: str) -> list[str]:
    """``CPU_DEFAULT_ARGS`` with the request-kwargs flag of the installed vLLM, then ``extra``."""
    base = [a for a in CPU_DEFAULT_ARGS if a != "--trust-request-mm-kwargs"]
    return [*base, *request_mm_kwargs_server_args(), *extra]


def expected_prompt_tokens(unpruned: int, num_frames: int, retention: float) -> int:
    """Prompt length after pruning one video of ``num_frames`` from a prompt of ``unpruned`` tokens."""
    return unpruned - (num_frames * FRAME_TOKENS - num_kept(num_frames, FRAME_TOKENS, retention))


def jpeg_frames_url(num_frames: int, width: int, height: int, seed: int = 0) -> str:
    """``data:video/jpeg;base64,<frame>,<frame>...``: vLLM's frame-list video URL (exact frame count, any size)."""
    parts = []
    for frame in make_video_frames(num_frames, width, height, seed):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=90)
        parts.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return "data:video/jpeg;base64," + ",".join(parts)


def video_body(url: str, mm_kwargs: dict | None = None, *, max_tokens: int = 1, **params) -> dict:
    """A greedy chat request with one video part (and optional ``mm_processor_kwargs``), no model."""
    if mm_kwargs is not None:
        params["mm_processor_kwargs"] = mm_kwargs
    return chat_body(None, url, max_tokens=max_tokens, prompt="What happens?", **params)


def post_chat(server: VllmServer, body: dict, timeout: float = 300.0) -> requests.Response:
    """POST /v1/chat/completions; the body is JSON-encoded with NaN allowed (to test its rejection)."""
    body = {"model": server.model, **body}
    return requests.post(
        server.base_url + "/chat/completions",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=timeout,
    )
