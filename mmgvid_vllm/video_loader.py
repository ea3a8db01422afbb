"""``mmgvid_pyav``: vLLM's default video loader, decoding only the frames the model sees.

vLLM's default loader (``opencv``) reads a video with OpenCV: it takes ``total_num_frames``
from the header, picks ``num_frames`` indices with ``np.linspace`` and then *grabs every frame*
up to the last picked one, so its cost grows with the video's length. This loader subclasses
it (same ``compute_frames_index_to_sample``, same ``create_hf_metadata``, so the same indices
and the same metadata dict) and decodes with PyAV only what the picked frames need:

1. **Header metadata as OpenCV reads it** (``_opencv_source``): ``fps`` = the stream's average
   frame rate (else 1 / time base), ``total_num_frames`` = the header's frame count, else
   ``floor(duration * fps + 0.5)`` with the container's duration; ``duration = total / fps``.
   vLLM 0.32 (not 0.26) then lowers the count when an end-of-stream seek finds fewer
   presentable frames (``vllm_compat.opencv_corrects_frame_count``), meant for mp4 edit lists that hide
   frames; we apply its rule with the true count where an edit list hides packets.
2. **A packet index** (one demux pass over the in-memory file; no decoding): frame ``i`` (what
   OpenCV's ``i``-th ``grab()`` returns, i.e. the decoder's ``i``-th output) is the packet
   with the ``i``-th smallest pts, not counting packets an edit list discards.
3. **One decoding pass per GOP that holds targets**: each target is decoded from the last
   keyframe before it (in decode order, with pts <= the target's); targets sharing that
   keyframe share the pass; between passes the decoder is drained and flushed and the packets
   in between are never decoded. Inside a pass, frames that are neither a target nor used as a
   reference are skipped by the decoder (``skip_frame=NONREF`` for non-target packets). The
   passes are split into contiguous runs of about equal work, one per decode thread of a pool
   the process's requests share (``MMGVID_VIDEO_DECODE_WORKERS`` threads, default one per
   core), each with its own decoder and one FFmpeg thread (PyAV releases the GIL while FFmpeg decodes and converts);
   a single pass gets FFmpeg's frame threads instead.
4. **Same pixels as OpenCV**: OpenCV's FFmpeg backend converts with swscale to BGR24 with
   ``SWS_BICUBIC`` and the frame's colorspace, then vLLM swaps to RGB; we ask PyAV for exactly
   that (``to_ndarray(format="bgr24", interpolation="BICUBIC")``, then ``cv2.cvtColor``
   BGR2RGB): bit-identical, checked against OpenCV 5.1 and 4.14, on
   8-bit 4:2:0/4:2:2/4:4:4, full and limited range, BT.601 and BT.709, and 10-bit HEVC
   (``rgb24`` or bilinear differ by up to 4-31 levels on 10-bit input). Rotation: OpenCV
   auto-rotates by the display matrix (``CAP_PROP_ORIENTATION_AUTO``, on by default), so do we
   (``np.rot90`` by the frame's ``rotation``); flips are ignored, as OpenCV does.

If a target's pts never comes out of the decoder (a damaged file, a decoder that drops a
frame), the whole video is decoded again sequentially, counting outputs exactly as OpenCV does.

Differences from vLLM's loader, on purpose: a 1-frame file (OpenCV's ``grab`` returns nothing:
vLLM answers 400) gives its frame; a file no frame of which decodes raises ``ValueError``
(vLLM returns an empty array and fails later); operator limits (``VideoLimits``) raise
``ValueError`` (HTTP 400). ``frame_recovery=True`` or a ``backend`` other than ``opencv`` in
``media_io_kwargs`` is handed to vLLM's loader unchanged.

Fast, inexact mode (off by default): ``"mmgvid_seek": "keyframe"`` in the video's
``media_io_kwargs`` replaces each sampled frame by the keyframe its GOP starts with (same
metadata; only keyframes are decoded). Its cost in pixels and speed: ``benchmarks/RESULTS.md``.

Selection: ``VLLM_VIDEO_LOADER_BACKEND=mmgvid_pyav`` (``mmgvid serve`` sets it unless set),
or ``--media-io-kwargs '{"video": {"video_backend": "mmgvid_pyav"}}'``, or per request
``"media_io_kwargs": {"video": {"video_backend": "mmgvid_pyav"}}``; ``opencv`` in any of these
places goes back to vLLM's loader.

Speed (``benchmarks/video_load.py``, ``benchmarks/RESULTS.md``; 2-core CPU, 32 frames, identical
output): 5.3x faster than vLLM's loader on a 5-min 480p H.264 file (0.75 vs 3.97 s), 10.7x on
10 min, 26x on 60 min (1.8 vs 47 s), 4.9x on 5-min 1080p, 1.2-2x on 10-s clips, even on a 4-s clip
whose every frame is sampled. What each idea is worth on the 5-min file (wall s / CPU s): one
decoder, all frames of the GOP passes decoded: 1.82 / 1.87; + non-reference frames skipped:
1.24 / 1.29; + GOP-parallel workers (default): 0.75 / 1.34; FFmpeg frame threads instead of
workers: 1.32 / 1.76 (not kept); a seek-and-decode loop per target: 1.75 / 2.68.
"""

from __future__ import annotations

import bisect
import io
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import vllm_compat

__all__ = [
    "LOADER_NAME",
    "PyAVVideoLoader",  # noqa: F822 (built on first access by the module's __getattr__: it subclasses vLLM's loader)
    "VideoLimits",
    "register_video_loader",
    "load_video",
    "loader_class",
]

LOADER_NAME = "mmgvid_pyav"

# ---------------------------------------------------------------------------------------------
# Operator limits
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoLimits:
    """Per-video limits; a video beyond one is answered ``ValueError`` (HTTP 400). 0 = no limit.

    ==============================  =========================================  ===========
    variable                        what                                       default
    ==============================  =========================================  ===========
    ``MMGVID_MAX_VIDEO_SECONDS``    duration (header, and last frame's time)   14400 (4 h)
    ``MMGVID_MAX_VIDEO_FRAMES``     frames (header, and packets in the file)   1000000
    ``MMGVID_MAX_VIDEO_PIXELS``     width x height of a frame                  8847360 (4096x2160)
    ``MMGVID_MAX_DECODE_SECONDS``   wall time this loader spends on one video  120
    ==============================  =========================================  ===========
    """

    max_seconds: float = 14400.0
    max_frames: int = 1_000_000
    max_pixels: int = 4096 * 2160
    max_decode_seconds: float = 120.0

    ENV = {
        "max_seconds": "MMGVID_MAX_VIDEO_SECONDS",
        "max_frames": "MMGVID_MAX_VIDEO_FRAMES",
        "max_pixels": "MMGVID_MAX_VIDEO_PIXELS",
        "max_decode_seconds": "MMGVID_MAX_DECODE_SECONDS",
    }

    @classmethod
    def from_env(cls, environ=None) -> VideoLimits:
        """Read the ``MMGVID_MAX_*`` variables; a bad value raises ``ValueError`` naming it."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, var in cls.ENV.items():
            raw = environ.get(var, "").strip()
            if not raw:
                continue
            kind = int if field in ("max_frames", "max_pixels") else float
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{var} must be a{'n integer' if kind is int else ' number'} >= 0 "
                                 f"(0 = no limit), got {raw!r}") from None
            if not value >= 0 or math.isinf(value):
                raise ValueError(f"{var} must be a finite number >= 0 (0 = no limit), got {raw!r}")
            values[field] = value
        return cls(**values)

    def check(self, what: str, value: float, limit: float, var: str, unit: str = "") -> None:
        if limit and value > limit:
            raise ValueError(f"video rejected: its {what} ({value:g}{unit}) exceeds this server's limit "
                             f"of {limit:g}{unit} ({var})")


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
_EPS_ZERO = 0.000025  # OpenCV's eps_zero


@dataclass
class _Index:
    """The video stream's packets in decode order and the presentation order of their frames."""

    packets: list  # av.Packet, decode order (all packets of the stream that carry data)
    frame_packets: list[int]  # frame i (presentation order) -> position in ``packets``
    keyframes: list[int]  # positions in ``packets`` of keyframes, ascending
    # Packets an edit list hides (``is_discard``): the case vLLM 0.32's frame-count check is for
    # (a trimmed mp4's decode lead-in); without them the header's count is kept, as OpenCV's
    # seek-based check keeps it for truncated files.
    discarded: int = 0


def _opencv_source(container, stream):
    """``VideoSourceMetadata`` from the header, computed as OpenCV's FFmpeg backend does."""
    VideoSourceMetadata, _ = vllm_compat.video_metadata_types()
    rate = stream.average_rate
    fps = float(rate) if rate is not None and rate.denominator else 0.0
    if fps < _EPS_ZERO and stream.time_base:
        fps = 1.0 / float(stream.time_base)
    total = stream.frames or 0
    if total == 0:
        seconds = (container.duration or 0) / 1_000_000
        if seconds < _EPS_ZERO and stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        total = int(math.floor(seconds * fps + 0.5))
    return VideoSourceMetadata(total_frames_num=total, original_fps=fps, duration=total / fps if fps > 0 else 0)


def _open(data: bytes):
    import av

    if not data:
        raise ValueError("empty video: the request carried 0 bytes")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.FFmpegError as exc:
        raise ValueError(f"could not read the video ({len(data)} bytes): not a video container FFmpeg "
                         f"recognises, or truncated or corrupt ({exc})") from None
    if not container.streams.video:
        fmt = container.format.name
        container.close()
        raise ValueError(f"the file has no video stream (container {fmt!r})")
    return container


class _Deadline:
    def __init__(self, limits: VideoLimits):
        self.limit = limits.max_decode_seconds
        self.end = time.monotonic() + self.limit if self.limit else math.inf

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise ValueError(f"video rejected: decoding it took longer than this server's limit of "
                             f"{self.limit:g} s (MMGVID_MAX_DECODE_SECONDS)")


def _build_index(container, stream, limits: VideoLimits, deadline: _Deadline) -> _Index | None:
    """Demux every packet of ``stream``; None when the pts do not order the frames (then the caller
    decodes sequentially)."""
    import av

    packets, keyframes, order = [], [], []
    try:
        for n, packet in enumerate(container.demux(stream)):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            if n % 4096 == 0:
                deadline.check()
                limits.check("number of frames", len(packets), limits.max_frames, "MMGVID_MAX_VIDEO_FRAMES")
            if packet.is_keyframe:
                keyframes.append(len(packets))
            if not packet.is_discard:
                order.append((packet.pts, len(packets)))
            packets.append(packet)
    except av.FFmpegError:
        pass  # truncated or damaged after some packets: OpenCV reads what it can too
    limits.check("number of frames", len(order), limits.max_frames, "MMGVID_MAX_VIDEO_FRAMES")
    if not packets:
        raise ValueError("the video stream has no frames (empty, or truncated before its first frame)")
    if any(pts is None for pts, _ in order) or len({pts for pts, _ in order}) != len(order):
        return None
    order.sort()
    if limits.max_seconds and order:
        last = float((order[-1][0] - (stream.start_time or 0)) * stream.time_base)
        limits.check("duration", round(last, 3), limits.max_seconds, "MMGVID_MAX_VIDEO_SECONDS", " s")
    return _Index(packets, [pos for _, pos in order], keyframes, len(packets) - len(order))


def _bgr_to_rgb(bgr: np.ndarray) -> np.ndarray:
    """Channel swap into a new contiguous array: ``cv2.cvtColor`` as vLLM does (a SIMD copy);
    numpy's ``[..., ::-1]`` copy is ~10x slower (26 ms for 32 384x384 frames)."""
    try:
        import cv2
    except ImportError:
        return np.ascontiguousarray(bgr[..., ::-1])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _to_rgb(frame) -> np.ndarray:
    """The frame as OpenCV + vLLM give it: swscale BGR24 with SWS_BICUBIC, channels swapped,
    rotated by the display matrix (see the module docstring)."""
    bgr = frame.to_ndarray(format="bgr24", interpolation="BICUBIC")
    rgb = _bgr_to_rgb(bgr)
    rotation = getattr(frame, "rotation", 0) or 0
    if rotation % 90 == 0 and rotation % 360:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=(rotation // 90) % 4))
    return rgb


def _configure_decoder(stream, threads: int) -> Any:
    """``threads`` FFmpeg threads (frame + slice; 0 = one per core) or exactly one (1); PyAV's
    own default would be slice threads on every core."""
    ctx = stream.codec_context
    ctx.thread_type = "AUTO" if threads != 1 else "SLICE"
    ctx.thread_count = threads
    return ctx


def _plan(index: _Index, targets: list[int], seek: str = "exact"
          ) -> tuple[list[tuple[int, int]], dict[int, list[int]], set[int]]:
    """Decoding passes ``[(first, last packet position)]`` in decode order (module docstring,
    step 3), ``{pts: [frame indices]}`` to keep, and the packet positions decoded in full.

    ``seek="keyframe"`` (fast, inexact): each target is replaced by the keyframe its pass would
    start from, and only keyframes are decoded."""
    packets = index.packets
    want_pts: dict[int, list[int]] = {}
    spans: dict[int, int] = {}  # start keyframe position -> last position to decode
    for t in targets:
        pos = index.frame_packets[t]
        pts = packets[pos].pts
        # Last keyframe at or before the target in decode order whose pts is not after it
        # (a leading frame of an open GOP starts from the keyframe before).
        k = bisect.bisect_right(index.keyframes, pos) - 1
        while k >= 0 and packets[index.keyframes[k]].pts > pts:
            k -= 1
        start = index.keyframes[k] if k >= 0 else 0
        if seek == "keyframe":
            pos, pts = start, packets[start].pts
        want_pts.setdefault(pts, []).append(t)
        spans[start] = max(spans.get(start, pos), pos)
    passes: list[tuple[int, int]] = []
    for start in sorted(spans):
        if passes and start <= passes[-1][1] + 1:  # overlapping or adjacent: one pass
            passes[-1] = (passes[-1][0], max(passes[-1][1], spans[start]))
        else:
            passes.append((start, spans[start]))
    full = set(spans) if seek == "keyframe" else {index.frame_packets[t] for t in targets}
    return passes, want_pts, full


def _run_passes(ctx, packets: list, passes: list[tuple[int, int]], want_pts: dict[int, list[int]],
                target_positions: set[int], deadline: _Deadline, skip_nonref: bool) -> dict[int, np.ndarray]:
    """Decode ``passes`` with the decoder ``ctx``: drain and flush between passes."""
    import av

    out: dict[int, np.ndarray] = {}

    def receive(frames) -> None:
        for frame in frames:
            todo = [t for t in want_pts.get(frame.pts, ()) if t not in out]
            if todo:
                rgb = _to_rgb(frame)
                out.update((t, rgb) for t in todo)

    for n, (first, last) in enumerate(passes):
        if n:
            ctx.flush_buffers()
        for pos in range(first, last + 1):
            if pos % 64 == 0:
                deadline.check()
            if skip_nonref:
                ctx.skip_frame = "DEFAULT" if pos in target_positions else "NONREF"
            try:
                receive(ctx.decode(packets[pos]))
            except av.FFmpegError:
                continue  # a damaged packet: its frame is missing, as with OpenCV's grab()
        ctx.skip_frame = "DEFAULT"
        try:
            receive(ctx.decode(None))  # drain: the pass's last frames leave the reorder buffer
        except av.FFmpegError:
            pass
    return out


def _split(passes: list[tuple[int, int]], parts: int) -> list[list[tuple[int, int]]]:
    """Contiguous runs of ``passes`` with about equal numbers of packets."""
    total = sum(b - a + 1 for a, b in passes)
    chunks: list[list[tuple[int, int]]] = [[]]
    done = 0
    for p in passes:
        cost = p[1] - p[0] + 1
        if chunks[-1] and done + cost / 2 > total * len(chunks) / parts:  # its middle is past the boundary
            chunks.append([])
        chunks[-1].append(p)
        done += cost
    return chunks


def _decode_targets(data: bytes, stream, index: _Index, targets: list[int], deadline: _Deadline, *,
                    threads: int | None = None, workers: int = 1, skip_nonref: bool = True,
                    seek: str = "exact") -> dict[int, np.ndarray]:
    """Frames ``targets`` (presentation indices < len(index.frame_packets)) -> RGB arrays.

    ``workers`` > 1 decodes runs of passes on that many threads, each with its own decoder
    (PyAV releases the GIL while FFmpeg decodes). ``threads``: FFmpeg threads per decoder
    (0 = one per core; default: 0 for a single decoder, 1 with several workers)."""
    import av

    passes, want_pts, positions = _plan(index, targets, seek)
    chunks = _split(passes, workers) if workers > 1 else [passes]
    if len(chunks) == 1:  # one decoder: FFmpeg's own threads, unless told otherwise
        return _run_passes(_configure_decoder(stream, threads if threads is not None else 0), index.packets,
                           passes, want_pts, positions, deadline, skip_nonref)
    threads = 1 if threads is None else threads  # the workers use the cores

    def run(chunk):
        with av.open(io.BytesIO(data)) as container:  # its own decoder
            ctx = _configure_decoder(container.streams.video[0], threads)
            return _run_passes(ctx, index.packets, chunk, want_pts, positions, deadline, skip_nonref)

    out: dict[int, np.ndarray] = {}
    for part in _decode_pool(workers).map(run, chunks):
        out.update(part)
    return out


_POOLS: dict = {}  # (pid, size) -> ThreadPoolExecutor: this process's decode threads
_POOLS_LOCK = threading.Lock()  # requests load videos on several threads: one pool, not one each


def _decode_pool(size: int):
    """The process's pool of ``size`` decode threads, shared by all its requests.

    One pool per process, not one per request: under load a request's runs of passes queue
    behind other requests' instead of every request starting ``size`` threads of its own (with
    4 API servers at concurrency 64 on 16 cores that was 256 decoding threads, and requests/s
    fell below concurrency 16's). A single request on an idle server still gets every thread.
    Made on first use in each process (a forked child makes its own)."""
    from concurrent.futures import ThreadPoolExecutor

    key = (os.getpid(), size)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(size, thread_name_prefix="mmgvid-decode")
        return _POOLS[key]


def default_workers() -> int:
    """Decode threads of the process (``_decode_pool``), so at most that many GOP-parallel
    decoders per video: ``MMGVID_VIDEO_DECODE_WORKERS``, else the usable cores."""
    raw = os.environ.get("MMGVID_VIDEO_DECODE_WORKERS", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"MMGVID_VIDEO_DECODE_WORKERS must be an integer >= 1, got {raw!r}")
        return int(raw)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores)


def _decode_sequential(
    data: bytes, targets: list[int], deadline: _Deadline, threads: int | None = 0
) -> dict[int, np.ndarray]:
    """Frames ``targets`` by counting decoder outputs from the start: OpenCV's own method."""
    import av

    wanted = set(targets)
    last = max(targets)
    out: dict[int, np.ndarray] = {}
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        ctx = _configure_decoder(stream, threads)
        i = 0
        try:
            for packet in container.demux(stream):
                deadline.check()
                try:
                    frames = ctx.decode(packet if packet.size else None)
                except av.FFmpegError:
                    continue
                for frame in frames:
                    if i in wanted:
                        out[i] = _to_rgb(frame)
                    i += 1
                if i > last:
                    break
        except av.FFmpegError:
            pass
    return out


def load_video(data: bytes, num_frames: int = -1, fps: float = -1, *, limits: VideoLimits | None = None,
               loader_cls: type | None = None, threads: int | None = None, workers: int | None = None,
               skip_nonref: bool = True,
               seek: str = "exact", sampling_kwargs: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``(frames (N, H, W, 3) uint8 RGB, metadata)`` exactly as vLLM's ``opencv`` loader returns
    them for ``load_bytes(data, num_frames, fps)`` (see the module docstring).

    ``seek="keyframe"``: the fast, inexact mode (``SEEK_MODES``): same metadata, each frame
    replaced by the keyframe its GOP starts with."""
    if seek not in SEEK_MODES:
        raise ValueError(f"mmgvid_seek must be one of {sorted(SEEK_MODES)}, got {seek!r}")
    workers = default_workers() if workers is None else workers

    loader_cls = loader_cls or loader_class()
    limits = limits or VideoLimits.from_env()
    deadline = _Deadline(limits)
    _, VideoTargetMetadata = vllm_compat.video_metadata_types()
    with _open(data) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        if width <= 0 or height <= 0:
            raise ValueError(f"the video stream has no frame size ({width}x{height}): corrupt header")
        vllm_compat.check_frame_pixel_limit(width, height)
        limits.check("frame size", width * height, limits.max_pixels, "MMGVID_MAX_VIDEO_PIXELS", " pixels")
        source = loader_cls._prepare_source(_opencv_source(container, stream))
        limits.check("number of frames", source.total_frames_num, limits.max_frames, "MMGVID_MAX_VIDEO_FRAMES")
        limits.check("duration", round(source.duration, 3), limits.max_seconds, "MMGVID_MAX_VIDEO_SECONDS", " s")
        index = _build_index(container, stream, limits, deadline)
        if index is not None and index.discarded and vllm_compat.opencv_corrects_frame_count():
            visible = len(index.frame_packets)  # vLLM 0.32's rule, with the true count (see _Index)
            if 0 < visible < source.total_frames_num - 1:
                source = source._replace(total_frames_num=visible, duration=visible / source.original_fps
                                         if source.original_fps > 0 else 0)
        if source.total_frames_num <= 0:
            if index is None or not index.frame_packets:
                raise ValueError("the video has no frames")
            # No count in the header and no duration: count the frames (OpenCV 0.26/0.32 would give
            # up; vLLM 0.33's loader counts them too, with duration = count / fps).
            count = len(index.frame_packets)
            source = source._replace(total_frames_num=count,
                                     duration=count / source.original_fps if source.original_fps > 0 else 0)
        target = VideoTargetMetadata(num_frames=num_frames, fps=fps, max_duration=300)
        frame_idx = loader_cls.compute_frames_index_to_sample(source=source, target=target, **(sampling_kwargs or {}))
        frames: dict[int, np.ndarray] = {}
        if index is not None:
            present = [t for t in frame_idx if t < len(index.frame_packets)]
            if present:
                frames = _decode_targets(data, stream, index, present, deadline, threads=threads, workers=workers,
                                         skip_nonref=skip_nonref, seek=seek)
            complete = len(frames) == len(present)
        else:
            complete = False
    if not complete:
        frames = _decode_sequential(data, frame_idx, deadline, threads=0 if threads is None else threads)
    valid = [t for t in frame_idx if t in frames]
    if not valid:
        raise ValueError(f"no frame of the video could be decoded (asked for frames {frame_idx[:8]}"
                         f"{'...' if len(frame_idx) > 8 else ''} of {source.total_frames_num}): "
                         "the file is truncated or corrupt")
    out = np.stack([frames[t] for t in valid])
    metadata = loader_cls.create_hf_metadata(source=source, valid_frame_indices=valid,
                                             video_backend=loader_cls.video_backend_name)
    return out, metadata


SEEK_MODES = {
    "exact": "the frames vLLM's loader returns, bit for bit (default)",
    "keyframe": "each sampled frame replaced by the keyframe before it: only keyframes decoded (inexact)",
}
_CODEC_OPTIONS = ("num_ffmpeg_threads", "seek_mode", "device", "hw_decoders", "pool_size", "timeout_sec")


def _make_loader_class() -> type:
    base = vllm_compat.opencv_video_loader()

    class PyAVVideoLoader(base):  # type: ignore[misc, valid-type]
        """vLLM's ``opencv`` loader (indices, metadata) decoding with PyAV (module docstring)."""

        video_backend_name = "opencv"  # the metadata's ``video_backend``: same dict as vLLM's

        @classmethod
        def load_bytes(cls, data: bytes, num_frames: int = -1, fps: int = -1, max_duration: int = 300,
                       frame_recovery: bool = False, **kwargs):
            backend = kwargs.get("backend", "opencv")
            if frame_recovery or backend != "opencv":
                return super().load_bytes(data, num_frames, fps, max_duration, frame_recovery, **kwargs)
            seek = kwargs.pop("mmgvid_seek", "exact")
            sampling = {k: v for k, v in kwargs.items() if k != "backend" and k not in _CODEC_OPTIONS}
            return load_video(data, num_frames, fps, loader_cls=cls, seek=seek, sampling_kwargs=sampling)

    return PyAVVideoLoader


_LOADER_CLASS: list[type] = []


def loader_class() -> type:
    """``PyAVVideoLoader`` (built on first use: it subclasses vLLM's loader, so importing this
    module needs no vLLM)."""
    if not _LOADER_CLASS:
        _LOADER_CLASS.append(_make_loader_class())
    return _LOADER_CLASS[0]


def __getattr__(name: str):
    if name == "PyAVVideoLoader":
        return loader_class()
    raise AttributeError(name)


def register_video_loader() -> None:
    """Check the ``MMGVID_MAX_*`` limits and register ``mmgvid_pyav`` in vLLM's
    ``VIDEO_LOADER_REGISTRY`` (idempotent; called by the plugin in every vLLM process)."""
    VideoLimits.from_env()
    default_workers()
    registry = vllm_compat.video_loader_registry()
    if LOADER_NAME not in registry.name2class:
        registry.register(LOADER_NAME)(loader_class())
