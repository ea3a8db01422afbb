"""Stage 3 of MMG-Vid on the GPU: the TG-DPC recurrence in Triton, one launch per frame position.

Same result as ``token_selection.select_tokens`` (the same equations, choices and tie rules;
only floating-point summation order differs), built for speed on CUDA:

- One launch computes every frame's in-frame distances ``(T, M, M)`` (tiles above the
  diagonal, mirrored, so exactly symmetric) and the tokens' inverse norms.
- The ``k`` smallest distances of every token to its segment's guide set are kept up to
  date in ``nearest`` ``(T*M, k)``: as soon as a frame's tokens are chosen, every *later*
  token of the segment merges its distances to them (a small matmul with the merge in its
  epilogue). Each (token, guide token) distance is computed exactly once, by many programs
  in parallel, and the frame chosen next only reads its ``k`` numbers per token.
- Position ``p`` (``p = -1, 0, ..., L-2`` for a longest segment of ``L`` frames) is three
  launches, each parallel over (row block, frame) with no inter-program communication:
  merge the tokens chosen at ``p`` into all later frames and write the densities of the
  frames at ``p + 1`` (eq. 7 or 9); their scores (eq. 8 / 10); their ranks, which give the
  kept tokens (the top ``b``, ties to the lower index).
- On CUDA all launches are one CUDA graph per input shape, captured on first use and
  replayed (the host cost of ``3T + 1`` Triton launches would exceed the GPU time).
- Tokens are read in their own dtype (bf16 in vLLM): ``tl.dot`` multiplies bf16 exactly and
  accumulates in fp32, as an fp32 matmul of the upcast tokens would. fp32 tokens use
  IEEE fp32 dots (never TF32).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
import triton
import triton.language as tl

from .segmentation import Segment
from .token_selection import SAME_TOKEN

__all__ = ["MAX_KNN", "select_tokens_triton", "supports"]

MAX_KNN = 5  # nearest guide tokens kept per token (eq. 9's k); larger k takes the torch path

_BLOCK_ROWS = 32  # tokens of one frame merged per program
_BLOCK_KEPT = 64  # guide tokens per matmul tile of a merge
_BLOCK_D = 64  # feature chunk of the matmul
_STAGES = 3  # software-pipelining depth of the merge's feature loop
_IN_FRAME_TILE = 64  # rows and columns of one in-frame distance tile
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def supports(tokens: torch.Tensor, knn: int) -> bool:
    """Whether this path applies: CUDA tokens (or any, under ``TRITON_INTERPRET=1``, Triton's
    CPU interpreter used by the tests), fp32/bf16/fp16, ``knn <= MAX_KNN``."""
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    return tokens.dtype in _DTYPES and (tokens.is_cuda or interpreted) and knn <= MAX_KNN


@triton.jit
def _keep_smaller(slot, value):
    """``(min, max)`` of ``slot`` and ``value``: the slot keeps the smaller, the larger moves on."""
    return tl.minimum(slot, value), tl.maximum(slot, value)


@triton.jit
def _insert(value, r0, r1, r2, r3, r4):
    """Insert ``value`` into the ascending lists ``r0 <= ... <= r4`` (one per row), dropping the largest."""
    r0, value = _keep_smaller(r0, value)
    r1, value = _keep_smaller(r1, value)
    r2, value = _keep_smaller(r2, value)
    r3, value = _keep_smaller(r3, value)
    return r0, r1, r2, r3, tl.minimum(r4, value)


@triton.jit
def _pop_smallest(dist, cols, missing):
    """``(R, C)``: each row's smallest entry, and ``dist`` with its first occurrence set to inf
    (``cols`` are the column ids, ``missing`` an id past them)."""
    smallest = tl.min(dist, axis=1)
    first = tl.min(tl.where(dist == smallest[:, None], cols[None, :], missing), axis=1)
    return smallest, tl.where(cols[None, :] == first[:, None], float("inf"), dist)


@triton.jit
def _tile_products(tokens, flat_rows, row_ok, flat_cols, col_ok, D, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_D: tl.constexpr, IEEE: tl.constexpr, NORMS: tl.constexpr):
    """``(BLOCK_R, BLOCK_C)`` dot products of the token rows ``flat_rows`` and ``flat_cols``
    (fp32 accumulation), and with ``NORMS`` their squared norms from the same tiles (zeros
    otherwise: the merge reads the norms computed once; squaring in its loop made the whole
    stage 3 two to three times slower on the H100)."""
    features = tl.arange(0, BLOCK_D)
    dots = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    row_sq = tl.zeros((BLOCK_R,), dtype=tl.float32)
    col_sq = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        f_ok = d0 + features < D
        a = tl.load(tokens + flat_rows[:, None] * D + d0 + features[None, :],
                    mask=row_ok[:, None] & f_ok[None, :], other=0.0)
        b = tl.load(tokens + flat_cols[None, :] * D + d0 + features[:, None],
                    mask=col_ok[None, :] & f_ok[:, None], other=0.0)
        if IEEE:
            dots = tl.dot(a, b, dots, input_precision="ieee")
        else:
            dots = tl.dot(a, b, dots)
        if NORMS:
            a32 = a.to(tl.float32)
            b32 = b.to(tl.float32)
            row_sq += tl.sum(a32 * a32, axis=1)
            col_sq += tl.sum(b32 * b32, axis=0)
    return dots, row_sq, col_sq


@triton.jit
def _unit_distances(dots, row_inv, col_inv, SAME: tl.constexpr):
    """Squared distances between L2-normalised tokens from their dot products and inverse
    norms (0 for an all-zero token), below ``SAME`` set to 0: ``token_selection._unit_distances``."""
    cos = dots * row_inv[:, None] * col_inv[None, :]
    unit = (row_inv > 0).to(tl.float32)[:, None] + (col_inv > 0).to(tl.float32)[None, :]
    dist = unit - 2.0 * cos
    return tl.where(dist < SAME, 0.0, dist)


@triton.jit
def _merge_guide(tokens, inv_norms, nearest, kept, frame, source, rows, row_ok, num_kept,
                 M, D, SAME: tl.constexpr, KNN: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_KEPT: tl.constexpr,
                 BLOCK_D: tl.constexpr, IEEE: tl.constexpr):
    """Merge the distances of ``rows`` of ``frame`` to the ``num_kept`` tokens chosen in
    ``source`` into their ``KNN`` smallest so far (``nearest``, ascending, inf-padded)."""
    big = float("inf")
    flat_rows = frame.to(tl.int64) * M + rows
    slot = tl.arange(0, 8)
    stored = nearest + flat_rows[:, None] * KNN + slot[None, :]
    current = tl.load(stored, mask=row_ok[:, None] & (slot[None, :] < KNN), other=big)
    r0 = tl.min(tl.where(slot[None, :] == 0, current, big), axis=1)
    r1 = tl.min(tl.where(slot[None, :] == 1, current, big), axis=1)
    r2 = tl.min(tl.where(slot[None, :] == 2, current, big), axis=1)
    r3 = tl.min(tl.where(slot[None, :] == 3, current, big), axis=1)
    r4 = tl.min(tl.where(slot[None, :] == 4, current, big), axis=1)
    row_inv = tl.load(inv_norms + flat_rows, mask=row_ok, other=0.0)
    for start in range(0, num_kept, BLOCK_KEPT):
        cols = start + tl.arange(0, BLOCK_KEPT)
        col_ok = cols < num_kept
        chosen = tl.load(kept + source.to(tl.int64) * M + cols, mask=col_ok, other=0)
        flat_cols = source.to(tl.int64) * M + chosen
        dots, _, _ = _tile_products(tokens, flat_rows, row_ok, flat_cols, col_ok, D,
                                    BLOCK_ROWS, BLOCK_KEPT, BLOCK_D, IEEE, False)
        col_inv = tl.load(inv_norms + flat_cols, mask=col_ok, other=0.0)
        dist = _unit_distances(dots, row_inv, col_inv, SAME)
        dist = tl.where(col_ok[None, :], dist, big)
        # The KNN smallest of this tile, one at a time, each inserted into the running list.
        for _ in tl.static_range(KNN):
            smallest, dist = _pop_smallest(dist, cols, BLOCK_KEPT + start)
            r0, r1, r2, r3, r4 = _insert(smallest, r0, r1, r2, r3, r4)
    merged = tl.where(slot[None, :] == 0, r0[:, None], big)
    merged = tl.where(slot[None, :] == 1, r1[:, None], merged)
    merged = tl.where(slot[None, :] == 2, r2[:, None], merged)
    merged = tl.where(slot[None, :] == 3, r3[:, None], merged)
    merged = tl.where(slot[None, :] == 4, r4[:, None], merged)
    tl.store(stored, merged, mask=row_ok[:, None] & (slot[None, :] < KNN))


@triton.jit
def _in_frame_kernel(tokens, inv_norms, in_frame, nearest, M, D,
                     SAME: tl.constexpr, KNN: tl.constexpr, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr,
                     IEEE: tl.constexpr):
    """Program ``(frame, row block, column block)``: the in-frame distances of one tile and its
    mirror (exactly symmetric, zero diagonal), the rows' inverse norms, and ``inf`` in the
    rows' ``nearest`` lists (the guide set starts empty). Tiles below the diagonal exit."""
    frame = tl.program_id(0)
    row_block = tl.program_id(1)
    col_block = tl.program_id(2)
    if row_block <= col_block:
        base = frame.to(tl.int64) * M
        rows = row_block * BLOCK + tl.arange(0, BLOCK)
        cols = col_block * BLOCK + tl.arange(0, BLOCK)
        row_ok, col_ok = rows < M, cols < M
        dots, row_sq, col_sq = _tile_products(tokens, base + rows, row_ok, base + cols, col_ok, D,
                                              BLOCK, BLOCK, BLOCK_D, IEEE, True)
        row_inv = tl.where(row_sq > 0, 1.0 / tl.sqrt(row_sq), 0.0)
        dist = _unit_distances(dots, row_inv, tl.where(col_sq > 0, 1.0 / tl.sqrt(col_sq), 0.0), SAME)
        ok = row_ok[:, None] & col_ok[None, :]
        if row_block == col_block:  # mirror the upper triangle onto the lower one
            upper = cols[None, :] > rows[:, None]
            dist = tl.where(upper, dist, tl.trans(dist))
            dist = tl.where(cols[None, :] == rows[:, None], 0.0, dist)
            tl.store(in_frame + (base + rows)[:, None] * M + cols[None, :], dist, mask=ok)
            tl.store(inv_norms + base + rows, row_inv, mask=row_ok)
            slot = tl.arange(0, 8)
            tl.store(nearest + (base + rows)[:, None] * KNN + slot[None, :],
                     tl.full((BLOCK, 8), float("inf"), tl.float32), mask=row_ok[:, None] & (slot[None, :] < KNN))
        else:
            tl.store(in_frame + (base + rows)[:, None] * M + cols[None, :], dist, mask=ok)
            tl.store(in_frame + (base + cols)[None, :] * M + rows[:, None], dist, mask=ok)


@triton.jit
def _density_kernel(tokens, inv_norms, in_frame, plan, nearest, kept, density, position, T, M, D,
                    SAME: tl.constexpr, KNN: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_KEPT: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, IEEE: tl.constexpr):
    """Program ``(row block, frame)``, first launch of position ``position``: merge the tokens
    chosen at ``position`` into this frame's ``nearest`` lists if the frame comes later in
    the segment; if it is the frame at ``position + 1``, write its rows' densities (eq. 7 from
    the in-frame distances at a segment's first frame, eq. 9 from ``nearest`` after)."""
    block = tl.program_id(0)
    frame = tl.program_id(1)
    start = tl.load(plan + frame)
    frame_position = frame - start
    rows = block * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_ok = rows < M
    base = frame.to(tl.int64) * M
    if position >= 0 and frame_position > position:
        source = start + position
        num_kept = tl.load(plan + T + source)
        if num_kept > 0:
            _merge_guide(tokens, inv_norms, nearest, kept, frame, source, rows, row_ok, num_kept,
                         M, D, SAME, KNN, BLOCK_ROWS, BLOCK_KEPT, BLOCK_D, IEEE)
    if frame_position == position + 1 and tl.load(plan + T + frame) > 0:
        big = float("inf")
        if position < 0:  # eq. 7: exp(-mean distance to the k nearest other tokens of the frame)
            cols = tl.arange(0, BLOCK_M)
            k = tl.minimum(M - 1, KNN)
            dist = tl.load(in_frame + (base + rows)[:, None] * M + cols[None, :],
                           mask=row_ok[:, None] & (cols[None, :] < M), other=big)
            dist = tl.where(cols[None, :] == rows[:, None], big, dist)
            total = tl.zeros((BLOCK_ROWS,), dtype=tl.float32)
            for r in tl.static_range(KNN):
                smallest, dist = _pop_smallest(dist, cols, BLOCK_M)
                total += tl.where(r < k, smallest, 0.0)
            value = tl.where(k > 0, tl.exp(-(total / tl.maximum(k, 1).to(tl.float32))), 1.0)
        else:  # eq. 9: 1 - exp(-mean distance to the k nearest guide tokens)
            tl.debug_barrier()  # this program's own merge wrote these rows
            slot = tl.arange(0, 8)
            near = tl.load(nearest + (base + rows)[:, None] * KNN + slot[None, :],
                           mask=row_ok[:, None] & (slot[None, :] < KNN), other=big)
            total = tl.sum(tl.where(near < big, near, 0.0), axis=1)
            count = tl.maximum(tl.minimum(tl.load(plan + 2 * T + frame), KNN), 1).to(tl.float32)
            value = 1.0 - tl.exp(-(total / count))
        tl.store(density + base + rows, value, mask=row_ok)


@triton.jit
def _score_kernel(in_frame, plan, density, score, position, T, M,
                  BLOCK_ROWS: tl.constexpr, BLOCK_M: tl.constexpr):
    """Program ``(row block, frame)``, second launch: for the frame at ``position + 1``, the
    score ``density * separation`` (eq. 8 / 10) of its rows; separation is the distance to
    the nearest strictly denser token of the frame, or the largest distance for the densest."""
    block = tl.program_id(0)
    frame = tl.program_id(1)
    if frame - tl.load(plan + frame) == position + 1 and tl.load(plan + T + frame) > 0:
        big = float("inf")
        base = frame.to(tl.int64) * M
        rows = block * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
        cols = tl.arange(0, BLOCK_M)
        row_ok, col_ok = rows < M, cols < M
        density_i = tl.load(density + base + rows, mask=row_ok, other=0.0)
        density_j = tl.load(density + base + cols, mask=col_ok, other=0.0)
        dist = tl.load(in_frame + (base + rows)[:, None] * M + cols[None, :],
                       mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        denser = (density_j[None, :] > density_i[:, None]) & col_ok[None, :]
        nearest_denser = tl.min(tl.where(denser, dist, big), axis=1)
        farthest = tl.max(tl.where(col_ok[None, :], dist, -big), axis=1)
        separation = tl.where(nearest_denser < big, nearest_denser, farthest)
        tl.store(score + base + rows, density_i * separation, mask=row_ok)


@triton.jit
def _rank_kernel(plan, score, keep, kept, position, T, M, BLOCK_ROWS: tl.constexpr, BLOCK_M: tl.constexpr):
    """Program ``(row block, frame)``, third launch: for the frame at ``position + 1``, each
    row's rank by score (descending, ties to the lower index); the top ``budget`` are kept and
    listed in ``kept[frame, rank]`` for the next position's merges."""
    block = tl.program_id(0)
    frame = tl.program_id(1)
    budget = tl.load(plan + T + frame)
    if frame - tl.load(plan + frame) == position + 1 and budget > 0:
        big = float("inf")
        base = frame.to(tl.int64) * M
        rows = block * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
        cols = tl.arange(0, BLOCK_M)
        row_ok, col_ok = rows < M, cols < M
        score_i = tl.load(score + base + rows, mask=row_ok, other=-big)
        score_j = tl.load(score + base + cols, mask=col_ok, other=-big)
        ahead = (score_j[None, :] > score_i[:, None]) | ((score_j[None, :] == score_i[:, None]) & (cols[None, :] < rows[:, None]))
        rank = tl.sum((ahead & col_ok[None, :]).to(tl.int32), axis=1)
        chosen = row_ok & (rank < budget)
        tl.store(keep + base + rows, chosen.to(tl.int8), mask=row_ok)
        tl.store(kept + base + rank, rows, mask=chosen)


class _Workspace:
    """Every buffer of one run for one shape, and the launches that fill them.

    ``run(positions)`` issues the in-frame launch and positions ``-1 .. positions - 2``; it
    allocates nothing and reads only device memory, so on CUDA it is captured in a CUDA graph
    per number of positions (``_run_as_graph``) and replayed: one host call per video
    instead of ``3 * positions + 1`` Triton launches, whose host-side cost would dominate.
    """

    def __init__(self, num_frames: int, per_frame: int, dim: int, dtype: torch.dtype, knn: int,
                 device: torch.device) -> None:
        self.shape = (num_frames, per_frame, dim)
        self.knn = knn
        self.tokens = torch.empty(num_frames, per_frame, dim, dtype=dtype, device=device)
        self.plan = torch.zeros(3, num_frames, dtype=torch.int32, device=device)
        self.in_frame = torch.empty(num_frames, per_frame, per_frame, device=device)
        self.inv_norms = torch.empty(num_frames, per_frame, device=device)
        self.nearest = torch.empty(num_frames * per_frame, knn, device=device)
        self.scratch = torch.empty(2, num_frames, per_frame, device=device)
        self.kept = torch.empty(num_frames, per_frame, dtype=torch.int32, device=device)
        self.keep = torch.zeros(num_frames, per_frame, dtype=torch.int8, device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}  # by number of positions (CUDA only)

    def run(self, positions: int) -> None:
        num_frames, per_frame, dim = self.shape
        ieee = self.tokens.dtype == torch.float32
        self.keep.zero_()
        tiles = triton.cdiv(per_frame, _IN_FRAME_TILE)
        _in_frame_kernel[(num_frames, tiles, tiles)](
            self.tokens, self.inv_norms, self.in_frame, self.nearest, per_frame, dim,
            SAME=SAME_TOKEN, KNN=self.knn, BLOCK=_IN_FRAME_TILE, BLOCK_D=_BLOCK_D, IEEE=ieee)
        grid = (triton.cdiv(per_frame, _BLOCK_ROWS), num_frames)
        block_m = max(16, triton.next_power_of_2(per_frame))
        density, score = self.scratch
        for position in range(-1, positions - 1):
            _density_kernel[grid](
                self.tokens, self.inv_norms, self.in_frame, self.plan, self.nearest, self.kept, density,
                position, num_frames, per_frame, dim, SAME=SAME_TOKEN, KNN=self.knn, BLOCK_ROWS=_BLOCK_ROWS,
                BLOCK_KEPT=_BLOCK_KEPT, BLOCK_D=_BLOCK_D, BLOCK_M=block_m, IEEE=ieee, num_stages=_STAGES)
            _score_kernel[grid](self.in_frame, self.plan, density, score, position, num_frames, per_frame,
                                BLOCK_ROWS=_BLOCK_ROWS, BLOCK_M=block_m)
            _rank_kernel[grid](self.plan, score, self.keep, self.kept, position, num_frames, per_frame,
                               BLOCK_ROWS=_BLOCK_ROWS, BLOCK_M=block_m)


_WORKSPACES: OrderedDict[tuple, _Workspace] = OrderedDict()
_MAX_WORKSPACES = 4  # shapes kept (a 32-frame bf16 7B-shape video: ~55 MB of buffers)


def _workspace_for(tokens: torch.Tensor, knn: int) -> _Workspace:
    key = (tokens.device, tokens.dtype, tuple(tokens.shape), knn)
    if key in _WORKSPACES:
        _WORKSPACES.move_to_end(key)
    else:
        _WORKSPACES[key] = _Workspace(*tokens.shape, tokens.dtype, knn, tokens.device)
        if len(_WORKSPACES) > _MAX_WORKSPACES:
            _WORKSPACES.popitem(last=False)
    return _WORKSPACES[key]


def _run_as_graph(workspace: _Workspace, positions: int) -> None:
    """``workspace.run(positions)`` through a CUDA graph: the first time for this number of
    positions it runs directly (compiling the kernels if needed) and is then captured;
    afterwards the graph is replayed."""
    graph = workspace.graphs.get(positions)
    if graph is not None:
        graph.replay()
        return
    workspace.run(positions)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        workspace.run(positions)  # recorded, not executed
    workspace.graphs[positions] = graph


def _plan(segments: list[Segment], frame_budgets: list[int]) -> torch.Tensor:
    """``(3, T)`` int32 host table: segment start, budget and guide size of every frame."""
    starts, guide_sizes = [], []
    for segment in segments:
        before = 0
        for frame in segment:
            starts.append(segment.start)
            guide_sizes.append(before)
            before += frame_budgets[frame]
    return torch.tensor([starts, list(frame_budgets), guide_sizes], dtype=torch.int32)


def select_tokens_triton(
    tokens: torch.Tensor, segments: list[Segment], frame_budgets: list[int], knn: int
) -> torch.Tensor:
    """Drop-in for ``token_selection.select_tokens`` where ``supports(tokens, knn)``.

    Args:
        tokens: ``(T, M, D)`` fp32, bf16 or fp16 (read as they are; distances in fp32).
        segments, frame_budgets, knn: as for ``select_tokens``.

    Returns:
        ``(T, M)`` bool mask of the kept tokens, ``frame_budgets[t]`` True in row t.

    On CUDA the launches replay a CUDA graph (one per shape and longest-segment length,
    captured the first time); under the interpreter they run directly.
    """
    workspace = _workspace_for(tokens, knn) if tokens.is_cuda else _Workspace(*tokens.shape, tokens.dtype, knn, tokens.device)
    workspace.tokens.copy_(tokens)
    workspace.plan.copy_(_plan(segments, frame_budgets), non_blocking=True)
    positions = max(len(segment) for segment in segments)
    if tokens.is_cuda:
        _run_as_graph(workspace, positions)
    else:
        workspace.run(positions)
    return workspace.keep.clone().view(torch.bool)
