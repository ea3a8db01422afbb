"""LLaVA-Video-7B's geometry on the CPU: 64 frames, placeholders equal embeddings at every retention.

The HF conversion of LLaVA-Video-7B-Qwen2 that vLLM serves (Isotr0py/LLaVA-Video-7B-Qwen2-hf,
vLLM issue #13190) is a ``LlavaOnevisionForConditionalGeneration`` with OneVision-7B's config
(README "Supported models"), so the tiny LLaVA-OneVision has its geometry: 27x27 SigLIP patches
pooled bilinearly to 14x14 = 196 tokens per frame, one newline after the last frame. What is
LLaVA-Video's is the frame count: the server samples 64 frames (``--media-io-kwargs``, as the GPU
benchmarks serve it), and a 64-frame video is 64 x 196 + 1 = 12545 tokens unpruned, beyond the
8192 the other server tests allow.

Each request's prompt must be the text's tokens + ``num_kept(64, 196, r)`` + 1, counted
independently of the server from the tokenizer, and generation must go past the prefill
(vLLM fails a request whose placeholder count differs from its embeddings).
"""

from __future__ import annotations

import json

import pytest
from helpers.plugin import jpeg_frames_url, plugin_server_args, post_chat, video_body
from transformers import AutoTokenizer

from mmgvid_vllm.launcher import VllmServer
from mmgvid_vllm.media import data_url, make_video_bytes
from mmgvid_vllm.pruning import num_kept
from mmgvid_vllm.tiny_model import FRAME_TOKENS, VIDEO_TOKEN_ID, ensure_tiny_model

pytestmark = pytest.mark.server

FRAMES = 64
MAX_LEN = 16384  # >= 64 * 196 + 1 + the text
GENERATED = 4


def _with(args: list[str], flag: str, value: str) -> list[str]:
    i = args.index(flag)
    return [*args[:i + 1], value, *args[i + 2:]]


@pytest.fixture(scope="module")
def server():
    args = plugin_server_args("--media-io-kwargs", json.dumps({"video": {"num_frames": FRAMES}}))
    for flag in ("--max-model-len", "--max-num-batched-tokens"):
        args = _with(args, flag, str(MAX_LEN))
    env = {"VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": "0.25", "MMGVID_METHOD": "mmgvid",
           "VLLM_VIDEO_LOADER_BACKEND": "mmgvid_pyav"}
    with VllmServer(ensure_tiny_model(), extra_args=args, env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def text_tokens() -> int:
    """Prompt tokens besides the video's placeholders: the rendered chat prompt less its ``<video>``."""
    content = video_body("unused")["messages"][0]["content"]
    messages = [{"role": "user", "content": [{"type": "video"}, *content[1:]]}]
    ids = AutoTokenizer.from_pretrained(ensure_tiny_model()).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ids).count(VIDEO_TOKEN_ID) == 1
    return len(ids) - 1


@pytest.fixture(scope="module")
def video96() -> str:
    """A 96-frame mp4: the server's loader samples 64 of them."""
    return data_url(make_video_bytes(96, 320, 240, seed=7))


def generate(server, body: dict) -> dict:
    r = post_chat(server, {**body, "ignore_eos": True})
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{server.log_tail(30)}"
    usage = r.json()["usage"]
    assert usage["completion_tokens"] == GENERATED, usage
    return usage


@pytest.mark.parametrize("retention", [1.0, 0.25, 0.15, 0.10])
def test_64_frames(server, text_tokens, video96, retention):
    usage = generate(server, video_body(video96, {"mmgvid_retention": retention}, max_tokens=GENERATED))
    assert usage["prompt_tokens"] == text_tokens + num_kept(FRAMES, FRAME_TOKENS, retention) + 1
    if retention == 1.0:  # LLaVA-OneVision's count, the longest prompt here
        assert usage["prompt_tokens"] - text_tokens == FRAMES * FRAME_TOKENS + 1 == 12545


def test_64_frame_list_server_default(server, text_tokens):
    """64 JPEG frames of another size, at the server's retention (0.25)."""
    usage = generate(server, video_body(jpeg_frames_url(FRAMES, 200, 120, seed=3), max_tokens=GENERATED))
    assert usage["prompt_tokens"] == text_tokens + num_kept(FRAMES, FRAME_TOKENS, 0.25) + 1
