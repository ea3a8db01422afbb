"""A deterministic corpus of real-length test videos, generated with PyAV and cached.

    >>> from mmgvid_vllm.corpus import corpus_path, CORPUS, CI_VIDEOS
    >>> path = corpus_path("h264_480p_10s")      # generated on first use (~1 s), then cached
    >>> CORPUS["h264_480p_5min"].seconds         # 300

Files live under ``$XDG_CACHE_HOME`` (default ``~/.cache``) ``/mmgvid-vllm/corpus/``, named
``<name>-v<CORPUS_VERSION>.<ext>``; a file is written under a temporary name and renamed, so
an interrupted run never leaves a half file behind. ``python -m mmgvid_vllm.corpus [NAME...]``
builds them (all by default) and prints their paths.

Content (``_Synth``): shots of 2-7 s (a seeded random length each), every shot its own
background (a luma gradient with blotchy texture and grain, flat chroma) over which the camera
pans at up to 2 px per frame, and four solid boxes that move at constant speed and bounce off
the borders; a hard cut between shots. The frames are synthesised
straight in ``yuv420p`` (numpy slices, no colour conversion), so a 1080p frame costs well under
a millisecond and the encoder dominates. The same spec always gives the same frames; the bytes
are those of the installed FFmpeg's encoders (x264 is deterministic with threads on).

Encoders (the ``av`` wheel has libx264, libx265, libvpx-vp9, libsvtav1, mpeg4, mjpeg; it
has no libaom, and decodes AV1 with libdav1d): H.264 uses x264 ``preset=veryfast`` (B-frames,
CABAC, deblocking: what phones and ``ffmpeg`` defaults produce, unlike ``ultrafast``), CRF 23,
and either x264's default GOP (``keyint=250``, plus a keyframe at each scene cut) or a fixed
``gop`` in seconds (``keyint=min-keyint=gop*fps``, ``scenecut=0``). VP9 uses libvpx
``deadline=realtime, cpu-used=8`` (fast) with its default GOP. The VFR file alternates 1/30 s
and 1/10 s frame intervals in an mp4 (whose header holds the true frame count).
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["CORPUS", "CI_VIDEOS", "CORPUS_VERSION", "VideoSpec", "corpus_dir", "corpus_path", "encode_spec"]

CORPUS_VERSION = 1  # bump when the content or the encoding settings change

RESOLUTIONS = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


@dataclass(frozen=True)
class VideoSpec:
    """One corpus video: ``frames = seconds * fps`` frames of ``width x height``."""

    name: str
    seconds: float
    width: int
    height: int
    fps: int = 30
    codec: str = "libx264"
    fmt: str = "mp4"
    gop: float | None = None  # keyframe interval in seconds; None = the encoder's default
    vfr: bool = False
    seed: int = 0

    @property
    def frames(self) -> int:
        return round(self.seconds * self.fps)

    @property
    def ext(self) -> str:
        return {"matroska": "mkv"}.get(self.fmt, self.fmt)

    @property
    def mime(self) -> str:
        return {"mp4": "video/mp4", "webm": "video/webm", "matroska": "video/x-matroska"}[self.fmt]


def _specs() -> dict[str, VideoSpec]:
    specs = []
    for label, seconds in [("10s", 10), ("1min", 60), ("5min", 300), ("10min", 600), ("60min", 3600)]:
        specs.append(VideoSpec(f"h264_480p_{label}", seconds, *RESOLUTIONS["480p"]))
    for res in ("720p", "1080p"):
        for label, seconds in [("10s", 10), ("5min", 300)]:
            specs.append(VideoSpec(f"h264_{res}_{label}", seconds, *RESOLUTIONS[res]))
    for label, seconds in [("10s", 10), ("5min", 300)]:
        specs.append(VideoSpec(f"h264_480p_{label}_gop2s", seconds, *RESOLUTIONS["480p"], gop=2.0))
    for label, seconds in [("10s", 10), ("1min", 60)]:
        specs.append(VideoSpec(f"vp9_480p_{label}", seconds, *RESOLUTIONS["480p"], codec="libvpx-vp9", fmt="webm"))
    specs.append(VideoSpec("vfr_480p_10s", 10, *RESOLUTIONS["480p"], vfr=True))
    return {s.name: s for s in specs}


CORPUS: dict[str, VideoSpec] = _specs()
# Short files for CI (each encodes in a few seconds on 2 cores).
CI_VIDEOS = ("h264_480p_10s", "h264_480p_10s_gop2s", "h264_720p_10s", "vp9_480p_10s", "vfr_480p_10s")


def corpus_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mmgvid-vllm" / "corpus"


def corpus_path(name: str, *, directory: str | os.PathLike | None = None) -> Path:
    """Path of corpus video ``name``, generating it first if it is not cached."""
    spec = CORPUS[name]
    folder = Path(directory) if directory is not None else corpus_dir()
    path = folder / f"{spec.name}-v{CORPUS_VERSION}.{spec.ext}"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            encode_spec(spec, f)
        os.replace(tmp, path)
    return path


class _Synth:
    """yuv420p frames of ``spec``: shots with moving boxes (see the module docstring)."""

    def __init__(self, spec: VideoSpec):
        self.w, self.h, self.fps = spec.width, spec.height, spec.fps
        self.rng = np.random.default_rng(spec.seed)
        self.shot_end = -1
        self.y = np.empty((self.h, self.w), np.uint8)
        self.u = np.empty((self.h // 2, self.w // 2), np.uint8)
        self.v = np.empty_like(self.u)

    def _new_shot(self, t: int) -> None:
        rng, h, w = self.rng, self.h, self.w
        self.shot_start = t
        self.shot_end = t + int(rng.uniform(2, 7) * self.fps)
        # Background: a gradient plus blotchy texture, larger than the frame; the camera pans over it.
        self.pan = rng.uniform(-2, 2, size=2)  # pixels per frame
        self.margin = m = int(np.ceil(np.abs(self.pan).max() * (self.shot_end - t))) + 1
        bh, bw = h + 2 * m, w + 2 * m
        gy, gx = rng.uniform(-80, 80, size=2)
        ys = np.linspace(0, 1, bh, dtype=np.float32)[:, None]
        xs = np.linspace(0, 1, bw, dtype=np.float32)[None, :]
        blotches = rng.normal(0, 12, size=(bh // 16 + 1, bw // 16 + 1)).astype(np.float32)
        blotches = np.kron(blotches, np.ones((16, 16), np.float32))[:bh, :bw]
        grain = rng.normal(0, 3, size=(bh, bw)).astype(np.float32)
        self.bg = np.clip(rng.uniform(60, 190) + gy * ys + gx * xs + blotches + grain, 16, 235).astype(np.uint8)
        self.bg_uv = rng.integers(64, 192, size=2)
        n = 4
        self.size = (rng.uniform(0.08, 0.25, size=(n, 2)) * (h, w)).astype(int)
        self.pos = rng.uniform(0, 1, size=(n, 2)) * ((h, w) - self.size)
        self.vel = rng.uniform(-1, 1, size=(n, 2)) * (h, w) / (2.0 * self.fps)  # up to half a frame per second
        self.luma = rng.integers(16, 236, size=n)
        self.chroma = rng.integers(16, 241, size=(n, 2))

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` (called with t = 0, 1, 2, ...) as a ``(h * 3 // 2, w)`` yuv420p array."""
        if t >= self.shot_end:
            self._new_shot(t)
        y, u, v = self.y, self.u, self.v
        dt = t - self.shot_start
        oy, ox = (self.margin + dt * self.pan).astype(int)
        np.copyto(y, self.bg[oy : oy + self.h, ox : ox + self.w])
        u.fill(self.bg_uv[0])
        v.fill(self.bg_uv[1])
        span = np.maximum((self.h, self.w) - self.size, 1)
        p = np.abs((self.pos + dt * self.vel) % (2 * span) - span)  # bounce: a triangle wave
        p = (span - p).astype(int)
        for (y0, x0), (bh, bw), lum, (cu, cv) in zip(p, self.size, self.luma, self.chroma):
            y[y0 : y0 + bh, x0 : x0 + bw] = lum
            u[y0 // 2 : (y0 + bh) // 2, x0 // 2 : (x0 + bw) // 2] = cu
            v[y0 // 2 : (y0 + bh) // 2, x0 // 2 : (x0 + bw) // 2] = cv
        return np.concatenate([y, u.reshape(-1, self.w), v.reshape(-1, self.w)])


def _encoder_options(spec: VideoSpec) -> dict[str, str]:
    if spec.codec == "libx264":
        opts = {"preset": "veryfast", "crf": "23"}
        if spec.gop is not None:
            k = str(round(spec.gop * spec.fps))
            opts["x264-params"] = f"keyint={k}:min-keyint={k}:scenecut=0"
        return opts
    if spec.codec == "libvpx-vp9":
        opts = {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "row-mt": "1"}
        if spec.gop is not None:
            opts["g"] = str(round(spec.gop * spec.fps))
        return opts
    return {}


def _timestamps(spec: VideoSpec) -> tuple[list[int], Fraction]:
    """Presentation timestamps and their time base."""
    tb = Fraction(1, spec.fps)
    if not spec.vfr:
        return list(range(spec.frames)), tb
    # 1/30 s and 1/10 s intervals in turn (a VFR screen recording / phone clip).
    pts, t = [], 0
    while len(pts) < spec.frames and t * tb < spec.seconds:
        pts.append(t)
        t += 1 if len(pts) % 2 else 3
    return pts, tb


def encode_spec(spec: VideoSpec, out) -> None:
    """Encode ``spec`` into the binary file object ``out``."""
    import av

    synth = _Synth(spec)
    pts, tb = _timestamps(spec)
    with av.open(out, mode="w", format=spec.fmt) as container:
        stream = container.add_stream(spec.codec, rate=spec.fps, options=_encoder_options(spec))
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.time_base = tb
        stream.codec_context.time_base = tb
        stream.codec_context.thread_count = 0
        for i, t in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(synth.frame(i), format="yuv420p")
            frame.pts, frame.time_base = t, tb
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def encode_spec_bytes(spec: VideoSpec) -> bytes:
    buf = io.BytesIO()
    encode_spec(spec, buf)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    import time

    names = (argv if argv is not None else sys.argv[1:]) or list(CORPUS)
    for name in names:
        t0 = time.perf_counter()
        path = corpus_path(name)
        print(f"{path}  ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
