"""Deterministic synthetic videos for tests, encoded with PyAV.

Each frame is a smooth colour gradient background (slowly drifting), a few
moving solid rectangles, and mild seeded noise: mostly redundant content with
some motion, which is what video-token pruning is meant to exploit. The same
arguments always give the same frames, and (for a given PyAV/FFmpeg build)
the same bytes (with the default ``mpeg4`` codec).

    >>> from helpers.video import make_video_bytes, data_url, video_chat_message
    >>> data = make_video_bytes(32, 320, 240, seed=0)
    >>> url = data_url(data)          # "data:video/mp4;base64,..."
    >>> msg = video_chat_message(url, "What happens?")  # OpenAI chat message
"""

from __future__ import annotations

import numpy as np

from mmgvid_vllm.media import data_url, encode_video

__all__ = ["make_video_frames", "make_video_bytes", "data_url", "video_chat_message"]

_MIME = {"mp4": "video/mp4", "webm": "video/webm", "avi": "video/x-msvideo", "mkv": "video/x-matroska"}


def make_video_frames(num_frames: int, width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """Return uint8 RGB frames of shape (num_frames, height, width, 3)."""
    if num_frames < 1 or width < 2 or height < 2:
        raise ValueError("need num_frames >= 1 and width, height >= 2")
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    tilt = rng.uniform(-1.0, 1.0, size=(3, 2)).astype(np.float32)
    n_boxes = 3
    box_size = rng.uniform(0.12, 0.3, size=(n_boxes, 2)) * (height, width)
    box_pos = rng.uniform(0, 1, size=(n_boxes, 2)) * (height, width)
    box_vel = rng.uniform(-0.03, 0.03, size=(n_boxes, 2)) * (height, width)
    box_col = rng.integers(0, 256, size=(n_boxes, 3))

    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        img = np.empty((height, width, 3), dtype=np.float32)
        for c in range(3):
            img[..., c] = base[c] + 60.0 * (tilt[c, 0] * ys / height + tilt[c, 1] * xs / width) + 2.0 * t
        for b in range(n_boxes):
            y0, x0 = (box_pos[b] + t * box_vel[b]) % (height, width)
            y0, x0 = int(y0), int(x0)
            h, w = int(box_size[b, 0]), int(box_size[b, 1])
            img[y0 : y0 + h, x0 : x0 + w] = box_col[b]
        img += rng.normal(0.0, 4.0, size=img.shape).astype(np.float32)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def make_video_bytes(
    num_frames: int,
    width: int = 320,
    height: int = 240,
    seed: int = 0,
    codec: str = "mpeg4",
    fmt: str = "mp4",
    fps: int = 8,
) -> bytes:
    """Encode ``make_video_frames(...)`` into a container and return the file bytes.

    ``codec="mpeg4"`` (default) is built into every FFmpeg, PyAV wheel and
    OpenCV (vLLM's default video loader), and its output is byte-identical
    across runs. ``"libx264"`` also works with PyAV wheels, but its bytes (not
    its frames' content) vary slightly from run to run. Width and height must be even (yuv420p). At the default 8 fps a
    32-frame video lasts 4 s, so vLLM's default sampling (32 frames) keeps
    every frame.
    """
    if width % 2 or height % 2:
        raise ValueError("width and height must be even for yuv420p")
    options = {"crf": "18", "preset": "veryfast"} if codec in ("libx264", "h264") else None
    bit_rate = 4_000_000 if codec == "mpeg4" else None
    frames = make_video_frames(num_frames, width, height, seed)
    return encode_video(frames, fps, codec=codec, fmt=fmt, bit_rate=bit_rate, options=options)


def video_chat_message(url: str, text: str = "What happens in this video?") -> dict:
    """An OpenAI chat ``user`` message with one ``video_url`` part and one text part."""
    return {
        "role": "user",
        "content": [
            {"type": "video_url", "video_url": {"url": url}},
            {"type": "text", "text": text},
        ],
    }
