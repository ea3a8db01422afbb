"""Smoke test: plain vLLM (no plugin) serves the tiny LLaVA-OneVision on the CPU
and expands a 32-frame video into 32 * 196 + 1 placeholder tokens."""

from __future__ import annotations

import pytest

from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model, num_video_tokens
from helpers.server import VllmServer
from helpers.video import data_url, make_video_bytes, video_chat_message

pytestmark = pytest.mark.server

NUM_FRAMES = 32


@pytest.fixture(scope="module")
def vanilla_server():
    # VLLM_PLUGINS="" loads no plugin, even though this package registers one.
    with VllmServer(ensure_tiny_model(), env={"VLLM_PLUGINS": ""}) as server:
        yield server


def test_video_request_unpruned(vanilla_server):
    assert FRAME_TOKENS == 196
    url = data_url(make_video_bytes(NUM_FRAMES, 320, 240, seed=0))
    body = vanilla_server.chat([video_chat_message(url, "What happens in this video?")],
                               max_tokens=2, temperature=0.0)
    usage = body["usage"]
    assert usage["prompt_tokens"] >= num_video_tokens(NUM_FRAMES) == NUM_FRAMES * 196 + 1
    # the text around the video (chat template + question) is short
    assert usage["prompt_tokens"] - num_video_tokens(NUM_FRAMES) < 64
    assert usage["completion_tokens"] >= 1
    assert body["choices"][0]["finish_reason"] in ("length", "stop")
