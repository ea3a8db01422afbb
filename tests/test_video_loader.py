"""``mmgvid_pyav`` (``mmgvid_vllm.video_loader``) against vLLM's own ``opencv`` loader.

Offline: the same frame indices, the same metadata dict and bit-identical frames on the CI
corpus (``mmgvid_vllm.corpus.CI_VIDEOS``) and on small clips of every codec and container the
``av`` wheel encodes; a 1-frame file; bad files and operator limits -> ``ValueError`` with a
message that says what is wrong. Server (``server`` marker): vanilla vLLM with its own loader,
then the plugin at retention 1.0 with ``mmgvid_pyav``: same prompt ids and greedy output ids,
a 1-frame mp4 served, a corrupt file answered 400 with the server still healthy.
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest

from mmgvid_vllm.corpus import CI_VIDEOS, corpus_path
from mmgvid_vllm.video_loader import LOADER_NAME, VideoLimits, load_video, loader_class, register_video_loader


@pytest.fixture(scope="module")
def opencv():
    from vllm.multimodal.video import VIDEO_LOADER_REGISTRY

    return VIDEO_LOADER_REGISTRY.load("opencv")


def _clip(codec="libx264", fmt="mp4", n=45, w=320, h=240, pix="yuv420p", rotation=None, colorspace=None,
          pts=None, options=None, path=None) -> bytes:
    """A small clip of moving boxes on a gradient, with a scene cut at frame 20 (written to
    ``path`` instead of memory where given: mp4's ``faststart`` rewrites the file)."""
    import av

    buf = io.BytesIO() if path is None else str(path)
    ys, xs = np.mgrid[0:h, 0:w]
    muxer_options = {"movflags": "+faststart"} if path is not None and fmt == "mp4" else {}
    with av.open(buf, "w", format=fmt, options=muxer_options) as c:
        s = c.add_stream(codec, rate=30, options=options or {})
        s.width, s.height, s.pix_fmt = w, h, pix
        s.time_base = Fraction(1, 30)
        if colorspace is not None:
            s.codec_context.colorspace = colorspace
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i in range(n):
            img = np.empty((h, w, 3), np.uint8)
            shot = i // 20
            img[..., 0] = (xs // 2 + 40 * shot) % 256
            img[..., 1] = (ys + 70 * shot) % 256
            img[..., 2] = 90 + 50 * shot
            x, y = (7 * i) % (w - 40), (5 * i) % (h - 30)
            img[y : y + 30, x : x + 40] = (250, 240 - 10 * shot, 20)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i if pts is None else pts[i]
            c.mux(s.encode(frame))
        c.mux(s.encode())
    return buf.getvalue() if path is None else open(path, "rb").read()


def _assert_same(opencv, data: bytes, **kw):
    want_frames, want_meta = opencv.load_bytes(data, **kw)
    got_frames, got_meta = loader_class().load_bytes(data, **kw)
    assert got_meta == want_meta
    assert got_frames.dtype == want_frames.dtype and got_frames.shape == want_frames.shape
    assert np.array_equal(got_frames, want_frames)
    return got_frames, got_meta


@pytest.mark.parametrize("name", CI_VIDEOS)
def test_corpus_same_as_vllm(opencv, name):
    frames, meta = _assert_same(opencv, corpus_path(name).read_bytes(), num_frames=32)
    assert len(meta["frames_indices"]) == 32


def test_fps_sampling_same_as_vllm(opencv):
    _assert_same(opencv, corpus_path("h264_480p_10s_gop2s").read_bytes(), num_frames=64, fps=2)


CLIPS = {
    "h264-mp4": {},
    "h264-mkv": {"fmt": "matroska"},
    "h264-mov": {"fmt": "mov"},
    "hevc-mp4": {"codec": "libx265", "options": {"x265-params": "log-level=error"}},
    "hevc10bit-mkv": {"codec": "libx265", "fmt": "matroska", "pix": "yuv420p10le",
                      "options": {"x265-params": "log-level=error"}},
    "vp9-webm": {"codec": "libvpx-vp9", "fmt": "webm", "options": {"deadline": "realtime", "cpu-used": "8"}},
    "av1-mp4": {"codec": "libsvtav1", "options": {"preset": "12", "svtav1-params": "log-level=0"}},
    "mpeg4-avi": {"codec": "mpeg4", "fmt": "avi"},
    "mjpeg-avi": {"codec": "mjpeg", "fmt": "avi", "pix": "yuvj420p"},
    "odd-size-444": {"w": 321, "h": 241, "pix": "yuv444p", "fmt": "matroska"},
    "bt709": {"colorspace": 1},
    "rotated-90": {"rotation": 90},
    "rotated-270-mov": {"rotation": 270, "fmt": "mov"},
    "vfr-mp4": {"pts": [int(k) for k in np.cumsum([0] + [1 if i % 3 else 4 for i in range(44)])]},
}


@pytest.mark.parametrize("name", CLIPS)
def test_codecs_and_containers_same_as_vllm(opencv, name):
    import av

    kw = CLIPS[name]
    try:
        av.codec.Codec(kw.get("codec", "libx264"), "w")
    except Exception:
        pytest.skip(f"the av wheel has no {kw.get('codec')} encoder")
    frames, meta = _assert_same(opencv, _clip(**kw), num_frames=8)
    assert len(frames) == 8
    if "rotation" in kw:
        assert frames.shape[1:3] == (320, 240)  # rotated as OpenCV does


def test_one_frame_file_gives_its_frame():
    frames, meta = loader_class().load_bytes(_clip(n=1), num_frames=32)
    assert frames.shape == (1, 240, 320, 3)
    assert meta["frames_indices"] == [0] and meta["total_num_frames"] == 1 and meta["do_sample_frames"]


def test_registered_and_selected_through_vllm():
    """vLLM's own ``VideoMediaIO`` picks the loader by ``video_backend`` (media_io_kwargs)."""
    from vllm.multimodal.media.image import ImageMediaIO
    from vllm.multimodal.media.video import VideoMediaIO

    register_video_loader()
    data = corpus_path("h264_480p_10s").read_bytes()
    ours = VideoMediaIO(ImageMediaIO(), num_frames=8, video_backend=LOADER_NAME)
    vanilla = VideoMediaIO(ImageMediaIO(), num_frames=8)
    assert type(ours.video_loader).__name__ == "PyAVVideoLoader"
    got, want = ours.load_bytes(data), vanilla.load_bytes(data)
    got, want = getattr(got, "media", got), getattr(want, "media", want)  # vLLM 0.32: MediaWithBytes
    assert got[1] == want[1] and np.array_equal(got[0], want[0])


def _truncated_mp4(tmp_path) -> bytes:
    """An mp4 with its index in front (``faststart``) cut at 40 %, inside the frame data."""
    data = _clip(n=45, path=tmp_path / "faststart.mp4")
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat")
    return data[: len(data) * 2 // 5]


BAD = {
    "empty": (b"", "0 bytes"),
    "garbage": (b"\x00\x01not a video" * 100, "could not read the video"),
    "truncated-moov-at-end": (None, "could not read the video"),
    "audio-only": (None, "no video stream"),
}


def _audio_only() -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        c.mux(s.encode(frame))
        c.mux(s.encode())
    return buf.getvalue()


@pytest.mark.parametrize("name", BAD)
def test_bad_input_raises_value_error(name):
    data, message = BAD[name]
    if name == "truncated-moov-at-end":
        full = _clip()
        data = full[: len(full) // 2]
    elif name == "audio-only":
        data = _audio_only()
    with pytest.raises(ValueError, match=message):
        loader_class().load_bytes(data, num_frames=8)


def test_truncated_after_the_index_keeps_the_frames_it_has(opencv, tmp_path):
    """Cut inside the frame data: the header's count kept, the frames that are there returned,
    the others skipped, exactly as vLLM's loader does."""
    frames, meta = _assert_same(opencv, _truncated_mp4(tmp_path), num_frames=8)
    assert meta["frames_indices"] == [0, 6] and meta["total_num_frames"] == 45


@pytest.mark.parametrize(
    "var, value, message",
    [
        ("MMGVID_MAX_VIDEO_SECONDS", "5", r"duration \(10 s\) exceeds .* 5 s \(MMGVID_MAX_VIDEO_SECONDS\)"),
        ("MMGVID_MAX_VIDEO_FRAMES", "100", r"number of frames \(300\) exceeds .* 100 \(MMGVID_MAX_VIDEO_FRAMES\)"),
        ("MMGVID_MAX_VIDEO_PIXELS", "100000", r"frame size \(409920 pixels\) .*MMGVID_MAX_VIDEO_PIXELS"),
        ("MMGVID_MAX_DECODE_SECONDS", "0.000001", r"longer than .*MMGVID_MAX_DECODE_SECONDS"),
    ],
)
def test_limits(monkeypatch, var, value, message):
    data = corpus_path("h264_480p_10s").read_bytes()
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=message):
        loader_class().load_bytes(data, num_frames=8)
    monkeypatch.setenv(var, "0")  # 0 = no limit
    assert len(loader_class().load_bytes(data, num_frames=8)[0]) == 8


@pytest.mark.parametrize("value", ["-1", "abc", "inf", "nan"])
def test_bad_limit_value_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("MMGVID_MAX_VIDEO_SECONDS", value)
    with pytest.raises(ValueError, match="MMGVID_MAX_VIDEO_SECONDS"):
        register_video_loader()


def test_speed_knobs_keep_the_frames():
    """Threads, GOP-parallel workers and non-reference skipping change nothing in the output."""
    data = corpus_path("h264_480p_10s").read_bytes()
    ref, meta = load_video(data, 16, threads=1, workers=1, skip_nonref=False, limits=VideoLimits())
    for kw in [dict(threads=0, workers=1), dict(threads=1, workers=2), dict(threads=0, workers=2, skip_nonref=False)]:
        got, got_meta = load_video(data, 16, limits=VideoLimits(), **kw)
        assert got_meta == meta and np.array_equal(got, ref), kw


def test_mmgvid_serve_selects_the_loader_unless_told_otherwise():
    from mmgvid_vllm import cli

    assert cli.build_serve_command("/m", [], environ={}, cuda=False)[1]["VLLM_VIDEO_LOADER_BACKEND"] == LOADER_NAME
    env = cli.build_serve_command("/m", [], environ={"VLLM_VIDEO_LOADER_BACKEND": "opencv"}, cuda=False)[1]
    assert env["VLLM_VIDEO_LOADER_BACKEND"] == "opencv"  # the way back to vLLM's loader


def test_keyframe_mode_keeps_the_metadata():
    """``mmgvid_seek="keyframe"`` (inexact, opt-in): same metadata and shape, keyframes only."""
    data = corpus_path("h264_480p_10s").read_bytes()
    exact, meta = loader_class().load_bytes(data, num_frames=32)
    fast, fast_meta = loader_class().load_bytes(data, num_frames=32, mmgvid_seek="keyframe")
    assert fast_meta == meta and fast.shape == exact.shape
    assert np.array_equal(fast[0], exact[0])  # frame 0 is a keyframe
    assert 0 < len({f.tobytes() for f in fast}) < 32  # frames of one GOP share its keyframe
    with pytest.raises(ValueError, match="mmgvid_seek"):
        loader_class().load_bytes(data, num_frames=8, mmgvid_seek="nearest")


# --------------------------------------------------------------------------------------------
# Through the real server
# --------------------------------------------------------------------------------------------
SERVER_VIDEOS = ("h264_480p_10s", "vp9_480p_10s")


def _requests() -> dict[str, dict]:
    from helpers.plugin import video_body

    from mmgvid_vllm.media import data_url

    out = {}
    for name in SERVER_VIDEOS:
        path = corpus_path(name)
        mime = "video/webm" if path.suffix == ".webm" else "video/mp4"
        out[name] = video_body(data_url(path.read_bytes(), mime), max_tokens=8)
    return out


def _run(server, requests: dict[str, dict]) -> dict[str, tuple[list[int], list[int]]]:
    from helpers.plugin import post_chat

    results = {}
    for name, body in requests.items():
        r = post_chat(server, {**body, "return_token_ids": True, "ignore_eos": True})
        assert r.status_code == 200, f"{name}: {r.status_code} {r.text}\n{server.log_tail(30)}"
        results[name] = (r.json()["prompt_token_ids"], r.json()["choices"][0]["token_ids"])
    return results


@pytest.fixture(scope="module")
def vanilla_results():
    from helpers.plugin import plugin_server_args

    from mmgvid_vllm.launcher import VllmServer
    from mmgvid_vllm.tiny_model import ensure_tiny_model

    requests = _requests()
    env = {"VLLM_PLUGINS": "", "VLLM_VIDEO_LOADER_BACKEND": None}
    with VllmServer(ensure_tiny_model(), extra_args=plugin_server_args(), env=env) as server:
        return _run(server, requests)


@pytest.fixture(scope="module")
def loader_server(vanilla_results):  # after the vanilla server has stopped: one at a time
    from helpers.plugin import plugin_server_args

    from mmgvid_vllm.launcher import VllmServer
    from mmgvid_vllm.tiny_model import ensure_tiny_model

    env = {"VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": "1.0", "MMGVID_METHOD": None,
           "VLLM_VIDEO_LOADER_BACKEND": LOADER_NAME}
    with VllmServer(ensure_tiny_model(), extra_args=plugin_server_args(), env=env) as server:
        yield server


@pytest.mark.server
def test_server_same_tokens_as_vanilla(vanilla_results, loader_server):
    assert _run(loader_server, _requests()) == vanilla_results


@pytest.mark.server
def test_server_one_frame_mp4(loader_server):
    from helpers.plugin import post_chat, video_body

    from mmgvid_vllm.media import data_url

    r = post_chat(loader_server, video_body(data_url(_clip(n=1))))
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] > 196


@pytest.mark.server
@pytest.mark.parametrize("name", ["garbage", "truncated-moov-at-end", "limit"])
def test_server_bad_video_is_400_and_server_keeps_serving(loader_server, name):
    import requests as http
    from helpers.plugin import post_chat, video_body

    from mmgvid_vllm.media import data_url

    if name == "garbage":
        data, message = b"\x00\x01not a video" * 100, "could not read the video"
    elif name == "truncated-moov-at-end":
        full = _clip()
        data, message = full[: len(full) // 2], "could not read the video"
    else:  # over MMGVID_MAX_VIDEO_PIXELS's default (4096x2160): 4200x2200
        data, message = _clip(n=2, w=4200, h=2200, codec="mjpeg", fmt="avi", pix="yuvj420p"), "MMGVID_MAX_VIDEO_PIXELS"
    r = post_chat(loader_server, video_body(data_url(data)))
    assert r.status_code == 400, r.text
    assert message in r.text
    assert http.get(loader_server.url + "/health", timeout=10).status_code == 200
    assert loader_server.proc.poll() is None
