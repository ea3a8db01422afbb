"""Stages 1 and 2 of MMG-Vid on the device: one Triton program turns the frame-mean Gram
matrix into the segments and every frame's token budget, written as the plan stage 3 reads
(``token_selection_triton``), so pruning on CUDA never waits for the host.

The equations, choices and tie rules are those of ``segmentation`` and ``budgeting`` (the
host implementation, float64 numpy), computed in float64 too. Two differences of arithmetic,
not of method: a block of the Gram matrix is summed from its integral image (four reads)
rather than element by element, and sums over segments add in a tree order. A decision can
therefore differ from the host's only where two quantities are equal up to rounding (a
cosine at exactly ``tau``, two equal marginal values, a quota at an integer); the tests
check that the two agree on random and structured videos under Triton's interpreter.

The program works on vectors of ``BLOCK_T`` lanes (one per frame, or one per segment) and
keeps what it must gather by index (start flags, segment starts, counts) in a small int32
scratch buffer. Non-finite input (a frame whose squared mean is inf or NaN) sets the
``failed`` flag; every loop is bounded whatever the values, so such input still ends.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["plan_on_device"]

_STD_EPS = tl.constexpr(1e-9)  # budgeting._STD_EPS: marginal values closer than this are one value
_FLOOR_EPS = tl.constexpr(1e-9)  # budgeting.frame_budgets: the floor is ceil(R_min * N_k - 1e-9)
_LARGEST = tl.constexpr(1.7976931348623157e308)  # |x| <= this: x is finite


@triton.jit
def _cosine(dot, sq_a, sq_b):
    """``segmentation.cosine_from_sums``: ``a.b / (|a| |b|)``, 0 when either vector is zero."""
    denom = tl.sqrt(tl.maximum(sq_a, 0.0) * tl.maximum(sq_b, 0.0))
    return tl.where(denom > 0.0, dot / tl.where(denom > 0.0, denom, 1.0), 0.0)


@triton.jit
def _block_sum(integral, stride, a0, a1, b0, b1, ok):
    """Sum of the Gram block ``[a0:a1, b0:b1]`` from the integral image (``integral[i, j]`` =
    sum of ``gram[:i, :j]``, row stride ``stride``); scalars or vectors, 0 where not ``ok``."""
    return (tl.load(integral + a1 * stride + b1, mask=ok, other=0.0)
            - tl.load(integral + a0 * stride + b1, mask=ok, other=0.0)
            - tl.load(integral + a1 * stride + b0, mask=ok, other=0.0)
            + tl.load(integral + a0 * stride + b0, mask=ok, other=0.0))


@triton.jit
def _pick(lanes, chosen, values):
    """The value of lane ``chosen`` (a scalar) of ``values``."""
    return tl.sum(tl.where(lanes == chosen, values, tl.zeros_like(values)), axis=0)


@triton.jit
def _segment_frames(gram, integral, flags, tau, T, BLOCK_T: tl.constexpr):
    """Stage 1 (``segmentation.segment_frames``): eq. 3's boundaries, then eq. 4's merging of
    one-frame segments, the earliest first, into the more similar neighbour (ties: the
    earlier). Returns ``(start, count)``: lane t is True where a segment starts at frame t,
    and the number of segments. ``flags`` (``BLOCK_T + 1`` int32) is scratch."""
    t = tl.arange(0, BLOCK_T)
    in_video = t < T
    after_first = in_video & (t > 0)
    sq = tl.load(gram + t * T + t, mask=in_video, other=0.0)
    sq_prev = tl.load(gram + (t - 1) * T + t - 1, mask=after_first, other=0.0)
    dot_prev = tl.load(gram + (t - 1) * T + t, mask=after_first, other=0.0)
    start = (t == 0) | (after_first & (_cosine(dot_prev, sq_prev, sq) < tau))
    count = tl.sum(start.to(tl.int32), axis=0)
    stride = T + 1
    tl.store(flags + t, start.to(tl.int32), mask=in_video)
    tl.store(flags + T, 1)  # the end of the video starts "a segment": the last frame's successor
    tl.debug_barrier()
    single = start & (tl.load(flags + t + 1, mask=in_video, other=0) == 1)
    k = tl.min(tl.where(single, t, BLOCK_T), axis=0)  # the earliest one-frame segment
    while (k < T) & (count > 1):
        prev_start = tl.max(tl.where(start & (t < k), t, -1), axis=0)
        next_stop = tl.min(tl.where(start & (t > k + 1), t, T), axis=0)
        has_prev = prev_start >= 0
        has_next = k + 1 < T
        prev_at = tl.maximum(prev_start, 0)
        sq_k = tl.load(gram + k * T + k)
        sim_prev = _cosine(_block_sum(integral, stride, k, k + 1, prev_at, k, has_prev), sq_k,
                           _block_sum(integral, stride, prev_at, k, prev_at, k, has_prev))
        sim_next = _cosine(_block_sum(integral, stride, k, k + 1, k + 1, next_stop, has_next), sq_k,
                           _block_sum(integral, stride, k + 1, next_stop, k + 1, next_stop, has_next))
        to_prev = has_prev & (~has_next | (sim_prev >= sim_next))
        start = start & (t != tl.where(to_prev, k, k + 1))  # the boundary that goes
        count -= 1
        tl.debug_barrier()  # every lane has read the old flags
        tl.store(flags + t, start.to(tl.int32), mask=in_video)
        tl.debug_barrier()
        single = start & (tl.load(flags + t + 1, mask=in_video, other=0) == 1)
        k = tl.min(tl.where(single, t, BLOCK_T), axis=0)
    return start, count


@triton.jit
def _selection_zscores(integral, bounds, count, lam, T, BLOCK_T: tl.constexpr):
    """Stage 2a (``budgeting.selection_zscores``, eq. 5-6): each segment's z-score at the step
    greedy marginal-gain selection takes it. Lane k is segment k (``bounds[k] .. bounds[k+1]``)."""
    k = tl.arange(0, BLOCK_T)
    is_segment = k < count
    stride = T + 1
    first = tl.load(bounds + k, mask=is_segment, other=0)
    stop = tl.load(bounds + k + 1, mask=is_segment, other=0)
    length = tl.where(is_segment, stop - first, 1).to(tl.float64)
    diagonal = _block_sum(integral, stride, first, stop, first, stop, is_segment) / (length * length)
    to_remaining = tl.zeros((BLOCK_T,), tl.float64)  # sum of g_k . g_i over the remaining i
    for c in range(0, count):
        c_first, c_stop = tl.load(bounds + c), tl.load(bounds + c + 1)
        c_len = (c_stop - c_first).to(tl.float64)
        to_remaining += _block_sum(integral, stride, first, stop, c_first, c_stop, is_segment) / (length * c_len)
    to_selected = tl.zeros((BLOCK_T,), tl.float64)
    within_remaining = tl.sum(to_remaining, axis=0)
    within_selected = tl.sum(tl.zeros((BLOCK_T,), tl.float64), axis=0)
    zscores = tl.zeros((BLOCK_T,), tl.float64)
    remaining = is_segment
    for step in range(0, count):
        diversity = tl.where(step > 0, 1.0 - _cosine(to_selected, diagonal, within_selected), 1.0)
        values = lam * _cosine(to_remaining, diagonal, within_remaining) + (1.0 - lam) * diversity
        best = tl.max(tl.where(remaining, values, -float("inf")), axis=0)
        chosen = tl.min(tl.where(remaining & (values == best), k, BLOCK_T), axis=0)  # ties: the earliest
        left = (count - step).to(tl.float64)
        mean = tl.sum(tl.where(remaining, values, 0.0), axis=0) / left
        spread = tl.where(remaining, values - mean, 0.0)
        std = tl.sqrt(tl.sum(spread * spread, axis=0) / left)
        score = tl.where(std >= _STD_EPS, (best - mean) / tl.where(std >= _STD_EPS, std, 1.0), 0.0)
        zscores = tl.where(k == chosen, score, zscores)
        diagonal_c = _pick(k, chosen, diagonal)
        within_remaining -= 2.0 * _pick(k, chosen, to_remaining) - diagonal_c
        within_selected += 2.0 * _pick(k, chosen, to_selected) + diagonal_c
        c_first, c_stop = tl.load(bounds + chosen), tl.load(bounds + chosen + 1)
        column = _block_sum(integral, stride, first, stop, c_first, c_stop, is_segment) / (
            length * (c_stop - c_first).to(tl.float64))
        to_remaining -= column
        to_selected += column
        remaining = remaining & (k != chosen)
    return zscores


@triton.jit
def _segment_counts(bounds, zscores, count, keep, r_min, M, BLOCK_T: tl.constexpr):
    """Stage 2b (``budgeting.frame_budgets`` and ``counts.allocate_with_caps``): tokens kept
    per segment, ``keep`` in all, at least ``ceil(R_min N_k)`` (``floor`` if those exceed
    ``keep``), the rest in proportion to ``max(z_k, 0) N_k`` by rounds of whole tokens."""
    k = tl.arange(0, BLOCK_T)
    is_segment = k < count
    sizes = tl.where(is_segment, tl.load(bounds + k + 1, mask=is_segment, other=0)
                     - tl.load(bounds + k, mask=is_segment, other=0), 0) * M
    products = r_min * sizes.to(tl.float64)
    floors = tl.where(is_segment, tl.ceil(products - _FLOOR_EPS), 0.0).to(tl.int32)
    if tl.sum(floors, axis=0) > keep:
        floors = tl.where(is_segment, tl.floor(products), 0.0).to(tl.int32)
    weights = tl.where(is_segment, tl.maximum(zscores, 0.0) * sizes.to(tl.float64), 0.0)
    alloc = floors
    remaining = keep - tl.sum(floors, axis=0)
    while remaining > 0:
        room = sizes - alloc
        share = tl.where((room > 0) & (weights > 0), weights, 0.0)
        share = tl.where(tl.sum(share, axis=0) > 0, share, room.to(tl.float64))
        quota = share * (remaining.to(tl.float64) / tl.sum(share, axis=0))
        grant = tl.maximum(tl.minimum(tl.floor(quota).to(tl.int32), room), 0)
        # every quota below one token: one token to the largest quota (ties: the earliest)
        largest = tl.max(tl.where(room > 0, quota, -1.0), axis=0)
        best = tl.min(tl.where((room > 0) & (quota == largest), k, BLOCK_T), axis=0)
        grant = tl.where((tl.sum(grant, axis=0) == 0) & (k == best), 1, grant)
        alloc += grant
        remaining -= tl.sum(grant, axis=0)
    return alloc


@triton.jit
def _plan_kernel(gram, integral, settings, plan, outcome, scratch, T, M, BLOCK_T: tl.constexpr):
    """One program: ``gram`` ``(T, T)`` and its integral image ``(T + 1, T + 1)`` (float64),
    ``settings`` ``[tau, lam, R_min, keep]`` (float64) -> ``plan`` ``(4, T)`` int32 (per frame:
    its segment's first frame, its budget, the tokens kept before it in its segment, its
    segment's end) and ``outcome`` ``[segments, failed]`` (1 segment when failed).
    ``scratch``: ``3 * (BLOCK_T + 1)`` int32. (Not named ``params``: Triton 3.6's launcher binds
    a local of that name, and the kernel then received a dict.)"""
    t = tl.arange(0, BLOCK_T)
    in_video = t < T
    tau, lam, r_min = tl.load(settings), tl.load(settings + 1), tl.load(settings + 2)
    keep = tl.load(settings + 3).to(tl.int32)
    sq = tl.load(gram + t * T + t, mask=in_video, other=0.0)
    failed = tl.max((in_video & ~(tl.abs(sq) <= _LARGEST)).to(tl.int32), axis=0)

    start, count = _segment_frames(gram, integral, scratch, tau, T, BLOCK_T)
    bounds = scratch + BLOCK_T + 1  # bounds[k]: segment k's first frame; bounds[count] = T
    segment = tl.cumsum(start.to(tl.int32), axis=0) - 1  # each frame's segment
    tl.store(bounds + segment, t, mask=start & in_video)
    tl.store(bounds + count, T)
    tl.debug_barrier()
    zscores = _selection_zscores(integral, bounds, count, lam, T, BLOCK_T)
    zscores = tl.where(failed > 0, 0.0, zscores)  # (NaN z-scores would make NaN quotas)
    counts = scratch + 2 * (BLOCK_T + 1)
    tl.store(counts + t, _segment_counts(bounds, zscores, count, keep, r_min, M, BLOCK_T), mask=t < count)
    tl.debug_barrier()

    # each segment's count split evenly over its frames, the remainder to its earliest
    first = tl.load(bounds + segment, mask=in_video, other=0)
    stop = tl.load(bounds + segment + 1, mask=in_video, other=1)
    kept = tl.load(counts + segment, mask=in_video, other=0)
    length = stop - first
    position = t - first
    quotient, remainder = kept // length, kept % length
    tl.store(plan + t, first, mask=in_video)
    tl.store(plan + T + t, quotient + (position < remainder).to(tl.int32), mask=in_video)
    tl.store(plan + 2 * T + t, position * quotient + tl.minimum(position, remainder), mask=in_video)
    tl.store(plan + 3 * T + t, stop, mask=in_video)
    tl.store(outcome, tl.where(failed > 0, 1, count))
    tl.store(outcome + 1, failed)


def block_frames(num_frames: int) -> int:
    """Lanes of the plan program for ``num_frames`` frames."""
    return max(16, triton.next_power_of_2(num_frames))


def plan_on_device(
    gram: torch.Tensor, integral: torch.Tensor, settings: torch.Tensor, per_frame: int,
    plan: torch.Tensor, outcome: torch.Tensor, scratch: torch.Tensor,
) -> None:
    """Queue stages 1 and 2: ``gram`` ``(T, T)`` float64 (``segmentation.frame_mean_gram``),
    ``integral`` ``(T + 1, T + 1)`` float64 (its integral image, zero first row and column),
    ``settings`` ``(4,)`` float64 ``[tau, lam, R_min, keep]`` -> ``plan`` ``(4, T)`` int32 and
    ``outcome`` ``(2,)`` int32 ``[segments, failed]``; ``scratch`` ``(3 * (block_frames(T) + 1),)``
    int32. Reads and writes device memory only (capturable in a CUDA graph). No fused
    multiply-adds: each product and sum is rounded as numpy rounds it on the host. One warp:
    the reductions over lanes, dozens per segment, stay within the warp (no shared memory)."""
    num_frames = gram.shape[0]
    _plan_kernel[(1,)](gram, integral, settings, plan, outcome, scratch, num_frames, per_frame,
                       BLOCK_T=block_frames(num_frames), enable_fp_fusion=False, num_warps=1)
