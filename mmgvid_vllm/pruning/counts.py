"""Token counts: how many tokens a video keeps, and how integer budgets are split.

vLLM sizes a prompt's video placeholders before any embedding exists, so the number of
kept tokens must be a pure function of the video's shape and the retention ratio, the same
for every method. Everything here is plain integer arithmetic on the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["check_retention", "num_kept", "split_evenly", "allocate_with_caps"]


def check_retention(retention: object) -> float:
    """Return ``retention`` as a float, or raise ``ValueError`` unless it lies in (0, 1]."""
    if isinstance(retention, bool) or not isinstance(retention, (int, float)):
        raise ValueError(
            f"retention must be a number in (0, 1], got {type(retention).__name__} {retention!r}"
        )
    value = float(retention)
    if not (0.0 < value <= 1.0):  # also rejects NaN
        raise ValueError(f"retention must be in (0, 1], got {retention!r}")
    return value


def num_kept(num_frames: int, tokens_per_frame: int, retention: float) -> int:
    """Number of tokens a video of ``num_frames`` x ``tokens_per_frame`` keeps at ``retention``.

    ``round_half_up(retention * N)`` clamped to ``[1, N]`` with ``N = num_frames * tokens_per_frame``:
    the closest count to the requested ratio, and never an empty video.
    Example: 32 frames x 196 tokens at 0.25 -> 1568, at 0.15 -> 941, at 0.10 -> 627.
    """
    for name, value in (("num_frames", num_frames), ("tokens_per_frame", tokens_per_frame)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    total = num_frames * tokens_per_frame
    return min(total, max(1, math.floor(check_retention(retention) * total + 0.5)))


def split_evenly(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` near-equal integers, the remainder to the earliest parts.

    Front-loading matters for MMG-Vid: a segment's first frame is its anchor, so it is
    never left empty while a later frame of the same segment keeps tokens.
    """
    quotient, remainder = divmod(total, parts)
    return [quotient + (1 if i < remainder else 0) for i in range(parts)]


def allocate_with_caps(
    total: int, floors: Sequence[int], caps: Sequence[int], weights: Sequence[float]
) -> list[int]:
    """Deterministically split ``total`` into integers ``floors[k] <= n_k <= caps[k]``.

    The amount above the floors goes to the parts in proportion to ``weights``: each round
    grants the floor of every part's proportional quota, and when every quota is below one
    token a single token goes to the largest quota (ties: lowest index). A part at its cap
    takes no more and its share goes to the others; when no part with room has a positive
    weight, the rest is shared in proportion to the remaining room. Requires ``sum(floors) <= total <= sum(caps)``.
    """
    if not sum(floors) <= total <= sum(caps):
        raise ValueError(f"cannot split {total} between floors {list(floors)} and caps {list(caps)}")
    alloc = list(floors)
    remaining = total - sum(alloc)
    while remaining > 0:
        room = [cap - n for cap, n in zip(caps, alloc)]
        share = [w if r > 0 and w > 0 else 0.0 for w, r in zip(weights, room)]
        if sum(share) <= 0:
            share = [float(r) for r in room]
        scale = remaining / sum(share)
        quota = [s * scale for s in share]
        grant = [min(math.floor(q), r) for q, r in zip(quota, room)]
        if sum(grant) == 0:  # every quota is below one token: one token to the largest quota
            best = max((k for k in range(len(room)) if room[k] > 0), key=lambda k: (quota[k], -k))
            grant[best] = 1
        alloc = [n + g for n, g in zip(alloc, grant)]
        remaining -= sum(grant)
    return alloc
