"""Synthetic video corpus: seeded frames, encoded with PyAV, cached on disk by parameters.

A video is a sequence of *scenes* (hard cuts between them). Each scene has its own
colour-gradient background, which pans ``motion`` pixels per frame, and a few solid boxes
that move at up to ``motion`` pixels per frame in random directions, plus mild noise.
``motion=0`` gives a static scene (only noise changes); ``scenes=1`` gives no cut.
The same ``VideoSpec`` and seed always give the same frames.

Encoded files live in ``<cache_dir>/<spec key>/<seed>.mp4``: the key hashes every
parameter, so a corpus is built once and reused by later runs with the same parameters,
and each seed is a distinct video (the load generator gives every request its own seed).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmgvid_vllm.media import data_url, encode_video

__all__ = ["VideoSpec", "Corpus", "default_cache_dir", "synth_frames", "encode_spec"]


def default_cache_dir() -> Path:
    """``$MMGVID_LOADTEST_CACHE`` or ``~/.cache/mmgvid-vllm/loadtest-corpus``."""
    env = os.environ.get("MMGVID_LOADTEST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mmgvid-vllm" / "loadtest-corpus"


@dataclass(frozen=True)
class VideoSpec:
    """Everything that determines a video's bytes, except its seed."""

    frames: int = 32
    width: int = 384
    height: int = 384
    fps: int = 8
    scenes: int = 1
    motion: float = 4.0
    noise: float = 4.0
    codec: str = "mpeg4"
    bitrate: int = 1_000_000

    def __post_init__(self) -> None:
        if self.frames < 1 or self.fps < 1 or not 1 <= self.scenes <= self.frames:
            raise ValueError("need frames >= 1, fps >= 1 and 1 <= scenes <= frames")
        if self.width < 2 or self.height < 2 or self.width % 2 or self.height % 2:
            raise ValueError("width and height must be even and >= 2 (yuv420p)")
        if self.motion < 0 or self.noise < 0:
            raise ValueError("motion and noise must be >= 0")

    @property
    def key(self) -> str:
        """Short stable hash of the parameters (the cache folder's name)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return f"f{self.frames}-{self.width}x{self.height}-" + hashlib.sha256(blob).hexdigest()[:12]


def synth_frames(spec: VideoSpec, seed: int) -> np.ndarray:
    """uint8 RGB frames, shape ``(frames, height, width, 3)``."""
    rng = np.random.default_rng(seed)
    h, w = spec.height, spec.width
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((spec.frames, h, w, 3), dtype=np.uint8)
    for s in range(spec.scenes):
        lo, hi = s * spec.frames // spec.scenes, (s + 1) * spec.frames // spec.scenes
        base = rng.uniform(40, 215, size=3).astype(np.float32)
        tilt = rng.uniform(-80, 80, size=(3, 2)).astype(np.float32)
        pan = rng.normal(size=2)
        pan = spec.motion * pan / (np.linalg.norm(pan) + 1e-9)
        n_boxes = int(rng.integers(2, 5))
        size = rng.uniform(0.1, 0.3, size=(n_boxes, 2)) * (h, w)
        pos = rng.uniform(0, 1, size=(n_boxes, 2)) * (h, w)
        vel = rng.uniform(-1, 1, size=(n_boxes, 2)) * spec.motion
        colour = rng.integers(0, 256, size=(n_boxes, 3)).astype(np.float32)
        for t in range(lo, hi):
            k = t - lo
            gy, gx = (ys + k * pan[0]) / h, (xs + k * pan[1]) / w
            img = base + gy[..., None] * tilt[:, 0] + gx[..., None] * tilt[:, 1]
            for b in range(n_boxes):
                y0, x0 = (pos[b] + k * vel[b]) % (h, w)
                img[int(y0) : int(y0 + size[b, 0]), int(x0) : int(x0 + size[b, 1])] = colour[b]
            if spec.noise:
                img += rng.normal(0.0, spec.noise, size=img.shape).astype(np.float32)
            out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def encode_spec(spec: VideoSpec, seed: int) -> bytes:
    """The mp4 file bytes of ``synth_frames(spec, seed)``."""
    return encode_video(synth_frames(spec, seed), spec.fps, codec=spec.codec, bit_rate=spec.bitrate)


def _build_one(job: tuple[VideoSpec, int, str]) -> None:
    spec, seed, path = job
    tmp = Path(path + f".{os.getpid()}.tmp")
    tmp.write_bytes(encode_spec(spec, seed))
    tmp.replace(path)  # atomic: concurrent builders never see half a file


class Corpus:
    """The cached videos of one ``VideoSpec``; ``data_url(seed)`` is what a request sends."""

    def __init__(self, spec: VideoSpec, cache_dir: str | os.PathLike | None = None) -> None:
        self.spec = spec
        self.dir = Path(cache_dir or default_cache_dir()) / spec.key
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "spec.json").write_text(json.dumps(asdict(spec), indent=1))

    def path(self, seed: int) -> Path:
        return self.dir / f"{seed}.mp4"

    def ensure(self, seeds: list[int], workers: int | None = None, progress: bool = True) -> None:
        """Encode the videos of ``seeds`` that are not cached yet, in parallel processes."""
        from tqdm import tqdm

        jobs = [(self.spec, s, str(self.path(s))) for s in seeds if not self.path(s).exists()]
        if not jobs:
            return
        workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
        bar = tqdm(total=len(jobs), desc=f"encoding videos ({self.spec.key})", disable=not progress)
        with bar:
            if workers == 1:
                for job in jobs:
                    _build_one(job)
                    bar.update()
            else:
                with ProcessPoolExecutor(workers) as pool:
                    for _ in pool.map(_build_one, jobs, chunksize=4):
                        bar.update()

    def data_url(self, seed: int) -> str:
        """``data:video/mp4;base64,...`` of the cached video (built now if missing)."""
        path = self.path(seed)
        if not path.exists():
            _build_one((self.spec, seed, str(path)))
        return data_url(path.read_bytes())
