"""Smoke test: plain vLLM (no plugin) serves the tiny LLaVA-OneVision on the CPU
and expands a 32-frame video into 32 * 196 + 1 placeholder tokens."""

from __future__ import annotations

import pytest
from helpers.plugin import post_chat

from mmgvid_vllm.client import chat_body
from mmgvid_vllm.launcher import VllmServer
from mmgvid_vllm.media import data_url, make_video_bytes
from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model, num_video_tokens

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
    response = post_chat(vanilla_server, chat_body(None, url, max_tokens=2))
    assert response.status_code == 200, response.text
    body = response.json()
    usage = body["usage"]
    assert usage["prompt_tokens"] >= num_video_tokens(NUM_FRAMES) == NUM_FRAMES * 196 + 1
    # the text around the video (chat template + question) is short
    assert usage["prompt_tokens"] - num_video_tokens(NUM_FRAMES) < 64
    assert usage["completion_tokens"] >= 1
    assert body["choices"][0]["finish_reason"] in ("length", "stop")
