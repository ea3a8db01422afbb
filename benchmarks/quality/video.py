"""Seeded structured synthetic videos with ground truth, as numpy frames.

A video is a sequence of shots (cuts between them); each shot shows one scene, and a
scene may recur in several shots. A scene is a textured background canvas seen either
still (sensor noise only), through a slow pan, or with objects moving over it. Needles
are small objects of a random colour (so of random contrast) shown in 1-2 frames only. Every object (moving object
per shot, needle) is a ``Track`` with its visible pixels mapped to the 196-token grid.

Profiles (``PROFILES``): ``recurring`` (3 scenes over 6 shots, scenes recur),
``multi_cut`` (6 distinct scenes), ``single_shot`` (one pan or moving-object shot),
``near_static`` (one still shot). Every profile gets ``NEEDLES`` needles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import FRAME, token_coverage

__all__ = ["PROFILES", "NEEDLES", "ON_TOKEN", "Track", "Video", "make_video"]

PROFILES = ("recurring", "multi_cut", "single_shot", "near_static")
NEEDLES = 3
ON_TOKEN = 0.25  # a token is "on" an object when >= this share of its pooled pixels are the object's
NOISE_SIGMA = 3.0  # per-frame sensor noise, in 0-255 units
PAN_SPEED = (3, 7)  # pixels per frame
OBJECT_SPEED = (5, 11)
NEEDLE_SIZE = (36, 46)


@dataclass(frozen=True)
class Track:
    """One object: ``coverage`` is ``(T, 196)``, the share of each token made of its visible pixels."""

    name: str
    needle: bool
    coverage: np.ndarray

    def on_tokens(self) -> np.ndarray:
        """``(T, 196)`` bool: the tokens that show this object."""
        return self.coverage >= ON_TOKEN

    def frames(self) -> np.ndarray:
        """Frame indices where the object is on at least one token."""
        return np.flatnonzero(self.on_tokens().any(axis=1))


@dataclass(frozen=True)
class Video:
    """``frames`` ``(T, 384, 384, 3)`` uint8; ``scene_ids``/``shot_ids`` ``(T,)`` int."""

    name: str
    frames: np.ndarray
    scene_ids: np.ndarray
    shot_ids: np.ndarray
    tracks: list[Track]


@dataclass(frozen=True)
class _Sprite:
    mask: np.ndarray  # (h, w) bool
    color: np.ndarray  # (3,) float


@dataclass(frozen=True)
class _Mover:
    sprite: _Sprite
    start: np.ndarray  # (2,) float, top-left (y, x) in frame pixels
    velocity: np.ndarray  # (2,) float, pixels per frame


@dataclass(frozen=True)
class _Scene:
    canvas: np.ndarray  # (384, 384 + pan room, 3) float
    pan_speed: int  # 0 unless the scene pans
    movers: list[_Mover]


def _shape_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``(height, width)`` bool: a filled rectangle or ellipse."""
    if rng.random() < 0.5:
        return np.ones((height, width), dtype=bool)
    y, x = np.ogrid[:height, :width]
    return ((y + 0.5 - height / 2) / (height / 2)) ** 2 + ((x + 0.5 - width / 2) / (width / 2)) ** 2 <= 1.0


def _paste(image: np.ndarray, sprite: _Sprite, top: int, left: int) -> np.ndarray:
    """Draw ``sprite`` into ``image`` (H, W, 3) at (top, left), clipped; return the (H, W) bool pixels drawn."""
    drawn = np.zeros(image.shape[:2], dtype=bool)
    h, w = sprite.mask.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, image.shape[0]), min(left + w, image.shape[1])
    if y0 < y1 and x0 < x1:
        drawn[y0:y1, x0:x1] = sprite.mask[y0 - top : y1 - top, x0 - left : x1 - left]
        image[drawn] = sprite.color
    return drawn


def _palette_color(rng: np.random.Generator, hue: float) -> np.ndarray:
    """A colour near ``hue`` (0-1) with random saturation/brightness, as (3,) floats in 0-255."""
    h = (hue + rng.normal(0, 0.06)) % 1.0
    s, v = rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.95)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    return 255 * v * (1 - s * np.clip(np.minimum(k, 4 - k), 0, 1))


def _make_scene(rng: np.random.Generator, motion: str, length: int) -> _Scene:
    """A textured background (gradient + blobs + grain) in its own hue, with ``motion`` in still/pan/objects."""
    hue = rng.random()
    pan_speed = int(rng.integers(*PAN_SPEED, endpoint=True)) if motion == "pan" else 0
    height, width = FRAME, FRAME + pan_speed * length
    ramp = np.linspace(0, 1, width)[None, :, None] * rng.uniform(0.3, 1.0) + np.linspace(0, 1, height)[:, None, None]
    a, b = _palette_color(rng, hue), _palette_color(rng, hue + 0.5 * rng.random())
    canvas = a + (b - a) * (ramp / ramp.max())
    for _ in range(int(rng.integers(8, 16)) * width // FRAME):
        h, w = (int(v) for v in rng.integers(30, 140, size=2))
        blob = _Sprite(_shape_mask(rng, h, w), _palette_color(rng, hue + rng.normal(0, 0.15)))
        _paste(canvas, blob, int(rng.integers(-h // 2, height)), int(rng.integers(-w // 2, width)))
    canvas += rng.normal(0, 6.0, size=canvas.shape)
    movers = []
    if motion == "objects":
        for _ in range(int(rng.integers(1, 3))):
            h, w = (int(v) for v in rng.integers(50, 100, size=2))
            speed = rng.uniform(*OBJECT_SPEED)
            angle = rng.uniform(0, 2 * np.pi)
            sprite = _Sprite(_shape_mask(rng, h, w), _palette_color(rng, hue + 0.5))
            start = rng.uniform([0, 0], [FRAME - h, FRAME - w])
            movers.append(_Mover(sprite, start, speed * np.array([np.sin(angle), np.cos(angle)])))
    return _Scene(canvas, pan_speed, movers)


def _bounce(position: float, low: float, high: float) -> float:
    """Reflect a 1-D position into [low, high] (objects bounce off the frame edges)."""
    span = high - low
    p = (position - low) % (2 * span)
    return low + (p if p <= span else 2 * span - p)


def _shot_lengths(rng: np.random.Generator, num_frames: int, shots: int, shortest: int = 3) -> list[int]:
    """Random lengths >= ``shortest`` summing to ``num_frames``."""
    cuts = np.sort(rng.choice(np.arange(1, num_frames - shots * (shortest - 1)), size=shots - 1, replace=False))
    lengths = np.diff(np.concatenate([[0], cuts, [num_frames - shots * (shortest - 1)]])) + shortest - 1
    return [int(n) for n in lengths]


def _storyboard(rng: np.random.Generator, profile: str, num_frames: int) -> list[tuple[int, int]]:
    """``[(scene id, shot length)]`` for ``profile``; scene ids count from 0 in order of first use."""
    if profile == "recurring":
        order = [0, 1, 0, 2, 1, 0] if rng.random() < 0.5 else [0, 1, 2, 0, 1, 2]
    elif profile == "multi_cut":
        order = list(range(6))
    else:
        order = [0]
    return list(zip(order, _shot_lengths(rng, num_frames, len(order))))


def make_video(profile: str, seed: int, num_frames: int = 32) -> Video:
    """Render one seeded video of ``profile`` with ``num_frames`` frames (>= 18 for ``multi_cut``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    rng = np.random.default_rng([seed, PROFILES.index(profile)])
    board = _storyboard(rng, profile, num_frames)
    scene_count = max(scene for scene, _ in board) + 1
    longest = max(length for _, length in board)
    motions = {"near_static": ["still"], "single_shot": ["pan", "objects"]}.get(profile, ["still", "pan", "objects"])
    scenes = [_make_scene(rng, str(rng.choice(motions)), longest) for _ in range(scene_count)]

    frames = np.zeros((num_frames, FRAME, FRAME, 3))
    visible: dict[str, np.ndarray] = {}  # track name -> (T, 384, 384) bool
    scene_ids, shot_ids = np.zeros(num_frames, dtype=np.int64), np.zeros(num_frames, dtype=np.int64)
    t = 0
    for shot, (scene_id, length) in enumerate(board):
        scene = scenes[scene_id]
        for step in range(length):
            offset = scene.pan_speed * step
            frame = scene.canvas[:, offset : offset + FRAME].copy()
            for k, mover in enumerate(scene.movers):
                h, w = mover.sprite.mask.shape
                y, x = mover.start + step * mover.velocity
                drawn = _paste(frame, mover.sprite, round(_bounce(y, 0, FRAME - h)), round(_bounce(x, 0, FRAME - w)))
                visible.setdefault(f"shot{shot}-obj{k}", np.zeros((num_frames, FRAME, FRAME), dtype=bool))[t] = drawn
            frames[t] = frame + rng.normal(0, NOISE_SIGMA, size=frame.shape)
            scene_ids[t], shot_ids[t] = scene_id, shot
            t += 1

    for n in range(NEEDLES):  # drawn last, on top of everything
        size = int(rng.integers(*NEEDLE_SIZE, endpoint=True))
        sprite = _Sprite(_shape_mask(rng, size, size), rng.uniform(0, 255, size=3))  # any colour: salient or not
        start, duration = int(rng.integers(num_frames - 1)), int(rng.integers(1, 3))
        top, left = (int(v) for v in rng.integers(0, FRAME - size - 6, size=2))
        masks = np.zeros((num_frames, FRAME, FRAME), dtype=bool)
        for t in range(start, start + duration):
            masks[t] = _paste(frames[t], sprite, top, left)
        for other in visible.values():
            other &= ~masks
        visible[f"needle{n}"] = masks

    tracks = [Track(name, name.startswith("needle"), token_coverage(m)) for name, m in visible.items()]
    pixels = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    return Video(f"{profile}-{seed}", pixels, scene_ids, shot_ids, tracks)
