"""Pruning off is vanilla vLLM; per-request pruning cuts exactly the pruned tokens.

Two real servers, one after the other: vanilla vLLM (``VLLM_PLUGINS=""``), then the
same flags with the plugin loaded and no retention configured. The plugin server must
give the same prompt token ids and the same greedy output ids for videos and images,
and, asked per request to prune a 32-frame video to r, exactly
``6272 - num_kept(32, 196, r)`` fewer prompt tokens than vanilla.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from helpers.plugin import expected_prompt_tokens, plugin_server_args, post_chat, video_body
from PIL import Image

from mmgvid_vllm.launcher import VllmServer
from mmgvid_vllm.media import data_url, make_video_bytes
from mmgvid_vllm.tiny_model import ensure_tiny_model

pytestmark = pytest.mark.server


def _image_body() -> dict:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Describe."}]
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0.0}


REQUESTS = {
    "video32": video_body(data_url(make_video_bytes(32, 320, 240, seed=0)), max_tokens=8),
    "video8": video_body(data_url(make_video_bytes(8, 96, 64, seed=1)), max_tokens=8),
    "image": _image_body(),
}


def _run(server: VllmServer) -> dict[str, tuple[list[int], list[int]]]:
    """Prompt token ids and greedy output ids of each request in ``REQUESTS``."""
    results = {}
    for name, body in REQUESTS.items():
        r = post_chat(server, {**body, "return_token_ids": True, "ignore_eos": True})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["usage"]["prompt_tokens"] == len(out["prompt_token_ids"])
        results[name] = (out["prompt_token_ids"], out["choices"][0]["token_ids"])
    return results


@pytest.fixture(scope="module")
def vanilla():
    """Results of plain vLLM (the plugin not loaded); the server is stopped on return."""
    with VllmServer(ensure_tiny_model(), extra_args=plugin_server_args(), env={"VLLM_PLUGINS": ""}) as server:
        return _run(server)


@pytest.fixture(scope="module")
def plugin_off_server(vanilla):  # starts after the vanilla server has stopped: one server at a time
    env = {"VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": None, "MMGVID_METHOD": None}
    with VllmServer(ensure_tiny_model(), extra_args=plugin_server_args(), env=env) as server:
        yield server


def test_plugin_without_retention_is_vanilla(vanilla, plugin_off_server):
    assert _run(plugin_off_server) == vanilla


def test_retention_one_is_vanilla(vanilla, plugin_off_server):
    body = {**REQUESTS["video32"], "mm_processor_kwargs": {"mmgvid_retention": 1.0}}
    r = post_chat(plugin_off_server, {**body, "return_token_ids": True, "ignore_eos": True})
    assert r.status_code == 200, r.text
    assert (r.json()["prompt_token_ids"], r.json()["choices"][0]["token_ids"]) == vanilla["video32"]


@pytest.mark.parametrize("retention", [0.25, 0.15, 0.10])
def test_pruned_count_vs_vanilla(vanilla, plugin_off_server, retention):
    r = post_chat(plugin_off_server, {**REQUESTS["video32"], "mm_processor_kwargs": {"mmgvid_retention": retention}})
    assert r.status_code == 200, r.text
    unpruned = len(vanilla["video32"][0])
    assert r.json()["usage"]["prompt_tokens"] == expected_prompt_tokens(unpruned, 32, retention)
    kept = {0.25: 1568, 0.15: 941, 0.10: 627}[retention]  # num_kept(32, 196, r)
    assert unpruned - r.json()["usage"]["prompt_tokens"] == 6272 - kept
