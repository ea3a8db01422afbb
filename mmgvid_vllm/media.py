"""Video files and URLs for requests: one PyAV encoder, seeded synthetic clips and one data-URL
builder, shared by the benchmarks and the tests.

    >>> url = data_url(make_video_bytes(32, 384, 384, seed=0))   # "data:video/mp4;base64,..."
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping
from fractions import Fraction

import numpy as np

__all__ = ["data_url", "encode_video", "make_video_bytes", "make_video_frames"]


def encode_video(
    frames: Iterable[np.ndarray],
    fps: int = 8,
    *,
    codec: str = "mpeg4",
    fmt: str = "mp4",
    bit_rate: int | None = 4_000_000,
    options: Mapping[str, str] | None = None,
) -> bytes:
    """``(H, W, 3)`` uint8 RGB frames -> the bytes of a video file (yuv420p, so an odd width or
    height is cropped by one pixel).

    The default MPEG-4 part 2 is built into every FFmpeg, PyAV wheel and OpenCV (vLLM's default
    video loader); the encoder runs single-threaded, so the same frames give the same bytes.
    """
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as container:
        stream = None
        for i, rgb in enumerate(frames):
            if stream is None:
                height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
                stream = container.add_stream(codec, rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.time_base = Fraction(1, fps)
                if bit_rate is not None:
                    stream.bit_rate = bit_rate
                if options:
                    stream.options = dict(options)
                stream.codec_context.thread_count = 1
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        if stream is None:
            raise ValueError("no frames to encode")
        container.mux(stream.encode())
    return buf.getvalue()


def data_url(video: bytes, mime: str = "video/mp4") -> str:
    """``data:<mime>;base64,<...>``: a file as an OpenAI ``video_url``."""
    return f"data:{mime};base64," + base64.b64encode(video).decode("ascii")


def make_video_frames(num_frames: int, width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """Seeded uint8 RGB frames ``(num_frames, height, width, 3)``: a slowly drifting colour gradient,
    three moving boxes and mild noise (mostly redundant content with some motion, what pruning is
    for); the same arguments always give the same frames."""
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
