"""Frame sampling like LLaVA-OneVision's reference, re-encoded into one small mp4.

lmms-eval's ``llava_onevision`` ``load_video`` reads all frames with decord and
keeps ``np.linspace(0, total - 1, 32, dtype=int)``. We do the same with PyAV
and re-encode exactly those frames (in order, duplicates kept when the video is
shorter than 32 frames) into an mp4 at 8 fps, so vLLM's own sampler (32
frames by default) keeps every one of them and the server sees the reference
frames, through its video path (and thus MMG-Vid pruning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..media import encode_video

__all__ = ["sample_indices", "SampledVideo", "sample_video", "count_frames"]

DEFAULT_NUM_FRAMES = 32


def sample_indices(total: int, num_frames: int = DEFAULT_NUM_FRAMES) -> np.ndarray:
    """LLaVA-OneVision / lmms-eval uniform sampling: ``np.linspace(0, total - 1, num_frames, dtype=int)``."""
    if total < 1:
        raise ValueError("video has no frames")
    return np.linspace(0, total - 1, num_frames, dtype=int)


@dataclass
class SampledVideo:
    mp4: bytes
    source_frames: int
    indices: list[int]
    width: int
    height: int

    @property
    def num_frames(self) -> int:
        return len(self.indices)


def count_frames(path: str) -> int:
    """Number of decodable video frames (packet count; falls back to decoding)."""
    import av

    with av.open(path) as c:
        stream = c.streams.video[0]
        n = sum(1 for p in c.demux(stream) if p.size > 0)
    if n > 0:
        return n
    with av.open(path) as c:
        return sum(1 for _ in c.decode(video=0))


def _decode_at(path: str, indices: np.ndarray, max_side: int | None) -> tuple[list[np.ndarray], int]:
    import av

    wanted: dict[int, int] = {}
    for i in indices.tolist():
        wanted[i] = wanted.get(i, 0) + 1
    last = int(indices.max())
    frames: list[np.ndarray] = []
    seen = 0
    with av.open(path) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(c.decode(stream)):
            seen = i + 1
            if i in wanted:
                if max_side and max(frame.width, frame.height) > max_side:
                    s = max_side / max(frame.width, frame.height)
                    frame = frame.reformat(width=max(2, round(frame.width * s)), height=max(2, round(frame.height * s)))
                rgb = frame.to_ndarray(format="rgb24")
                frames.extend([rgb] * wanted[i])
            if i >= last:
                break
    return frames, seen


def sample_video(path: str, num_frames: int = DEFAULT_NUM_FRAMES, max_side: int | None = None) -> SampledVideo:
    """Sample ``num_frames`` frames of ``path`` uniformly (reference indices) and re-encode them as mp4."""
    total = count_frames(path)
    idx = sample_indices(total, num_frames)
    frames, seen = _decode_at(path, idx, max_side)
    if len(frames) != num_frames:  # container frame count was off: use the decoded count
        import av

        with av.open(path) as c:
            total = sum(1 for _ in c.decode(video=0))
        idx = sample_indices(total, num_frames)
        frames, _ = _decode_at(path, idx, max_side)
        if len(frames) != num_frames:
            raise RuntimeError(f"{path}: decoded {len(frames)} of {num_frames} sampled frames")
    h, w = frames[0].shape[:2]
    return SampledVideo(encode_video(frames, bit_rate=8_000_000), total, idx.tolist(), w - w % 2, h - h % 2)
