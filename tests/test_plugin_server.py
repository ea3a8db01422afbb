"""The plugin over the OpenAI API: prompt lengths, per-request ratios, bad input.

One real server with the plugin: ``MMGVID_RETENTION=0.5`` in the environment, overridden
server-wide by ``--mm-processor-kwargs '{"mmgvid_retention": 0.25}'`` (so the default is
0.25), and requests that override both. The unpruned length of a prompt comes from
the same request at ``mmgvid_retention=1.0``, which ``test_plugin_vanilla`` shows is
vanilla vLLM's.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers.plugin import (
    expected_prompt_tokens,
    jpeg_frames_url,
    plugin_server_args,
    post_chat,
    video_body,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import LlavaOnevisionVideoProcessor

from mmgvid_vllm.client import stream_chat
from mmgvid_vllm.launcher import VllmServer, free_port
from mmgvid_vllm.media import data_url, make_video_bytes
from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model

pytestmark = pytest.mark.server

DEFAULT = 0.25
ALL_FRAMES = {"video": {"num_frames": -1}}  # media_io_kwargs: no frame sampling by vLLM's loader


@pytest.fixture(scope="module")
def video32(tmp_path_factory):
    """A 32-frame 320x240 mp4: (bytes, its file path)."""
    data = make_video_bytes(32, 320, 240, seed=0)
    path = tmp_path_factory.mktemp("media") / "video32.mp4"
    path.write_bytes(data)
    return data, path


@pytest.fixture(scope="module")
def server(video32):
    args = plugin_server_args(
        "--mm-processor-kwargs", json.dumps({"mmgvid_retention": DEFAULT}),
        "--allowed-local-media-path", str(video32[1].parent),
    )
    env = {"VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": "0.5", "MMGVID_METHOD": "mmgvid", "MMGVID_TAU": "0.9",
           "VLLM_MEDIA_CONNECTOR": "mmgvid", "VLLM_VIDEO_FETCH_TIMEOUT": "5"}
    with VllmServer(ensure_tiny_model(), extra_args=args, env=env) as srv:
        yield srv


def prompt_tokens(server, body) -> int:
    r = post_chat(server, body)
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{server.log_tail(30)}"
    return r.json()["usage"]["prompt_tokens"]


@pytest.fixture(scope="module")
def unpruned32(server, video32) -> int:
    return prompt_tokens(server, video_body(data_url(video32[0]), {"mmgvid_retention": 1.0}))


@pytest.fixture(scope="module")
def text_tokens(unpruned32) -> int:
    """Prompt tokens besides the video's placeholders."""
    return unpruned32 - (32 * FRAME_TOKENS + 1)


def assert_alive(server):
    assert requests.get(server.url + "/health", timeout=10).status_code == 200
    assert server.proc.poll() is None


@pytest.mark.parametrize("retention", [None, 0.25, 0.15, 0.10])
@pytest.mark.parametrize("source", ["data", "file"])
def test_32_frames(server, video32, unpruned32, source, retention):
    url = data_url(video32[0]) if source == "data" else video32[1].as_uri()
    mm_kwargs = None if retention is None else {"mmgvid_retention": retention}
    got = prompt_tokens(server, video_body(url, mm_kwargs))
    assert got == expected_prompt_tokens(unpruned32, 32, retention or DEFAULT)


@pytest.mark.parametrize("retention", [None, 0.10])
def test_streamed(server, video32, unpruned32, retention):
    mm_kwargs = None if retention is None else {"mmgvid_retention": retention}
    body = {"model": server.model, **video_body(data_url(video32[0]), mm_kwargs, max_tokens=4)}
    usage = stream_chat(server.url, body).usage
    assert usage["prompt_tokens"] == expected_prompt_tokens(unpruned32, 32, retention or DEFAULT)
    assert usage["completion_tokens"] >= 1


def test_override_applies_to_its_request_only(server, video32, unpruned32):
    url = data_url(video32[0])
    for mm_kwargs, retention in [(None, DEFAULT), ({"mmgvid_retention": 0.1}, 0.1), (None, DEFAULT),
                                 ({"mmgvid_retention": 0.1, "mmgvid_method": "uniform"}, 0.1), (None, DEFAULT)]:
        assert prompt_tokens(server, video_body(url, mm_kwargs)) == expected_prompt_tokens(unpruned32, 32, retention)


def test_concurrent_requests_get_their_own_counts(server, video32, text_tokens):
    """Same and different videos at different ratios and methods, at once, twice (cache hits)."""
    other = data_url(make_video_bytes(16, 128, 96, seed=3))
    cases = []
    for i, retention in enumerate([0.02, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 0.95, 1.0]):
        method = ["mmgvid", "uniform", "evs", "vidcom2", "random"][i % 5]
        cases.append((data_url(video32[0]), 32, retention, method))
        cases.append((other, 16, retention, "mmgvid"))
    cases *= 2

    def run(case):
        url, frames, retention, method = case
        body = video_body(url, {"mmgvid_retention": retention, "mmgvid_method": method})
        return prompt_tokens(server, body)

    with ThreadPoolExecutor(len(cases)) as pool:
        got = list(pool.map(run, cases))
    want = [expected_prompt_tokens(text_tokens + frames * FRAME_TOKENS + 1, frames, r) for _, frames, r, _ in cases]
    assert got == want
    assert_alive(server)


def test_frames_1_to_64_any_resolution(server, text_tokens):
    sizes = [(64, 48), (50, 30), (30, 90), (17, 23), (400, 40)]
    ratios = [None, 0.1, 0.5, 0.03, 1.0]
    for frames in range(1, 65):
        width, height = sizes[frames % len(sizes)]
        retention = ratios[frames % len(ratios)]
        if retention == 1.0 and frames > 40:
            retention = 0.6  # keep the prompt within --max-model-len 8192 (longer ones: clean 400, tested below)
        url = jpeg_frames_url(frames, width, height, seed=frames)
        mm_kwargs = None if retention is None else {"mmgvid_retention": retention}
        got = prompt_tokens(server, video_body(url, mm_kwargs, media_io_kwargs=ALL_FRAMES))
        want = expected_prompt_tokens(text_tokens + frames * FRAME_TOKENS + 1, frames, retention or DEFAULT)
        assert got == want, (frames, width, height, retention)
    assert_alive(server)


@pytest.mark.parametrize("frames, width, height", [(2, 320, 180), (33, 96, 160), (64, 200, 50)])
def test_mp4_non_square(server, text_tokens, frames, width, height):
    url = data_url(make_video_bytes(frames, width, height, seed=frames))
    got = prompt_tokens(server, video_body(url, media_io_kwargs=ALL_FRAMES))
    assert got == expected_prompt_tokens(text_tokens + frames * FRAME_TOKENS + 1, frames, DEFAULT)


def test_one_frame_video(server, text_tokens):
    got = prompt_tokens(server, video_body(jpeg_frames_url(1, 64, 48)))
    assert got == expected_prompt_tokens(text_tokens + FRAME_TOKENS + 1, 1, DEFAULT)
    # vLLM 0.32's OpenCV loader decodes 0 frames from any 1-frame file (its end-of-stream
    # probe loses the frame) and answers 400 "Cannot get size of empty video": not ours.
    r = post_chat(server, video_body(data_url(make_video_bytes(1, 64, 48))))
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
    assert_alive(server)


BAD_MM_KWARGS = {
    "ratio 0": {"mmgvid_retention": 0},
    "ratio -1": {"mmgvid_retention": -1},
    "ratio 1.5": {"mmgvid_retention": 1.5},
    "ratio NaN": {"mmgvid_retention": float("nan")},
    "ratio 'abc'": {"mmgvid_retention": "abc"},
    "ratio true": {"mmgvid_retention": True},
    "unknown key": {"mmgvid_ratio": 0.5},
    "unknown method": {"mmgvid_method": "best"},
    # HF video-processor keys that took vanilla vLLM's engine (and server) down with --trust-request-mm-kwargs
    "resampled frames": {"do_sample_frames": True, "num_frames": 8},
    "no resize": {"do_resize": False},
    "other size": {"size": {"height": 768, "width": 768}},
    "scoped kwargs": {"videos_kwargs": {"do_resize": False}},
    "std 0": {"image_std": 0},
    "mean of 2": {"image_mean": [0.5, 0.5]},
}


@pytest.mark.parametrize("mm_kwargs", BAD_MM_KWARGS.values(), ids=BAD_MM_KWARGS.keys())
def test_bad_mm_kwargs_is_400(server, video32, unpruned32, mm_kwargs):
    r = post_chat(server, video_body(data_url(video32[0]), mm_kwargs))
    assert r.status_code == 400, r.text
    assert any(repr(key) in r.json()["error"]["message"] for key in mm_kwargs), r.text  # names the key
    assert_alive(server)
    assert prompt_tokens(server, video_body(data_url(video32[0]))) == expected_prompt_tokens(unpruned32, 32, DEFAULT)


BAD_VIDEOS = {
    "corrupt bytes": data_url(b"\x00\x00\x00\x18ftypmp42 not really a video" * 20),
    "0-byte video": "data:video/mp4;base64,",
    "truncated mp4": None,  # filled in below: the first half of a real file
}


@pytest.mark.parametrize("name", BAD_VIDEOS)
def test_bad_video_is_4xx(server, video32, unpruned32, name):
    url = BAD_VIDEOS[name] or data_url(video32[0][: len(video32[0]) // 2])
    r = post_chat(server, video_body(url))
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
    if name != "truncated mp4":
        assert 400 <= r.status_code < 500
    assert_alive(server)
    assert prompt_tokens(server, video_body(data_url(video32[0]))) == expected_prompt_tokens(unpruned32, 32, DEFAULT)


@pytest.mark.parametrize("retention", [None, 1.0])
def test_256_frames_works_or_is_4xx(server, text_tokens, retention):
    url = jpeg_frames_url(256, 32, 24)
    mm_kwargs = None if retention is None else {"mmgvid_retention": retention}
    r = post_chat(server, video_body(url, mm_kwargs, media_io_kwargs=ALL_FRAMES))
    if r.status_code == 200:
        want = expected_prompt_tokens(text_tokens + 256 * FRAME_TOKENS + 1, 256, retention or DEFAULT)
        assert r.json()["usage"]["prompt_tokens"] == want
    else:
        assert 400 <= r.status_code < 500, r.text
    assert_alive(server)


@pytest.mark.parametrize("retention", [None, 0.25, 1.0])
def test_allowed_hf_keys_are_served(server, video32, unpruned32, retention):
    """The normalisation keys a request may set change pixel values, never the prompt."""
    mm_kwargs = {"image_mean": [0.4, 0.5, 0.6], "image_std": 0.25, "do_convert_rgb": True}
    if retention is not None:
        mm_kwargs["mmgvid_retention"] = retention
    assert prompt_tokens(server, video_body(data_url(video32[0]), mm_kwargs)) == expected_prompt_tokens(
        unpruned32, 32, retention or DEFAULT
    )


def test_values_that_hash_alike_get_their_own_prompt(server, video32, unpruned32):
    """int 1 and float 5e-324 have the same 8 bytes; as canonical floats they are two cache entries."""
    url = data_url(video32[0])
    assert prompt_tokens(server, video_body(url, {"mmgvid_retention": 1})) == unpruned32
    assert prompt_tokens(server, video_body(url, {"mmgvid_retention": 5e-324})) == expected_prompt_tokens(
        unpruned32, 32, 5e-324
    )


# Every key the HF video processor takes, ours, and vLLM's scoped forms, with values of every JSON type.
FUZZ_KEYS = sorted({*LlavaOnevisionVideoProcessor.valid_kwargs.__annotations__, "mmgvid_retention", "mmgvid_method",
                    "videos_kwargs", "images_kwargs", "mmgvid_x"})
_numbers = st.one_of(st.integers(-1000, 1000), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1]))
FUZZ_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), _numbers, st.sampled_from(["mmgvid", "evs", "pt", "abc", ""])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.fixed_dictionaries({"height": st.integers(-1, 1000), "width": st.integers(-1, 1000)}),
        st.dictionaries(st.sampled_from(FUZZ_KEYS), inner, max_size=2),
    ),
    max_leaves=4,
)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mm_kwargs=st.dictionaries(st.sampled_from(FUZZ_KEYS), FUZZ_VALUES, min_size=1, max_size=4))
def test_fuzz_mm_kwargs_never_take_the_server_down(server, mm_kwargs):
    """Random combinations of the HF video processor's keys and ours: 200 or 400, never the engine."""
    r = post_chat(server, video_body(jpeg_frames_url(4, 64, 48), mm_kwargs), timeout=120)
    assert r.status_code in (200, 400), f"{mm_kwargs}: {r.status_code} {r.text}\n{server.log_tail(30)}"
    assert_alive(server)


def bad_urls(tmp_dir) -> dict[str, tuple[str, str]]:
    """name -> (URL, a phrase the 400's message must contain)."""
    return {
        "closed port": (f"http://127.0.0.1:{free_port()}/video.mp4", "could not load media"),
        "file outside the allowed path": ("file:///etc/hostname", "allowed-local-media-path"),
        "missing file": ((tmp_dir / "missing.mp4").as_uri(), "could not load media"),
        "data URL without base64": ("data:video/mp4,AAAA", "base64"),
    }


@pytest.mark.parametrize("name", ["closed port", "file outside the allowed path", "missing file",
                                  "data URL without base64"])
def test_bad_url_is_400_that_says_why(server, video32, name):
    url, phrase = bad_urls(video32[1].parent)[name]
    r = post_chat(server, video_body(url))
    assert r.status_code == 400, r.text
    assert phrase in r.json()["error"]["message"], r.text
    assert_alive(server)
