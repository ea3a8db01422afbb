"""Video files and URLs for requests: one PyAV encoder and one data-URL builder, shared by
``mmgvid eval``, ``loadtest`` and the tests."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping
from fractions import Fraction

import numpy as np

__all__ = ["encode_video", "data_url"]


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
