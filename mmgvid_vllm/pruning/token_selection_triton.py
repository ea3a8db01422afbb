"""Stage 3 of MMG-Vid on the GPU: the TG-DPC recurrence in Triton, three launches per frame position.

Same result as ``token_selection.select_tokens`` (the same equations, choices and tie rules;
only floating-point summation order differs), built for speed on CUDA:

- The tokens' inverse norms (a torch reduction), then one launch for every frame's in-frame
  distances ``(T, M, M)`` (tiles above the diagonal, mirrored, so exactly symmetric).
- The ``k`` smallest distances of every token to its segment's guide set are kept up to
  date in ``nearest`` ``(T*M, k)``: as soon as a frame's tokens are chosen, every *later*
  token of the segment merges its distances to them (a small matmul, then each new distance
  inserted into the token's sorted list). Each (token, guide token) distance is computed
  exactly once, by many programs in parallel, and the frame chosen next only reads its ``k``
  numbers per token.
- Position ``p`` (``p = -1, 0, ..., L-2`` for a longest segment of ``L`` frames) is three
  launches over (row block, frame from ``p + 1`` on): merge the tokens chosen at ``p`` into
  all later frames and write the densities of the frames at ``p + 1`` (eq. 7 or 9); their
  scores (eq. 8 / 10); their ranks, which give the kept tokens (the top ``b``, ties to the
  lower index). A merge is split over up to ``_MAX_SPLIT`` feature chunks when few frames
  are left (the last program of a row block to finish, by an atomic ticket, adds the
  partial dot products in chunk order and merges), so a position's time is not one
  program's long chain of tile products. Inside a program, reductions across a tile are
  avoided (``_merge_partials``): they were the slow part of these small programs.
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
from .token_selection import SAME_TOKEN, _inverse_norms

__all__ = ["MAX_KNN", "select_tokens_triton", "supports"]

MAX_KNN = 5  # nearest guide tokens kept per token (eq. 9's k); larger k takes the torch path

_BLOCK_ROWS = 32  # tokens of one frame per program (larger blocks made the merges slower on the H100)
_MAX_SPLIT = 4  # feature chunks one merge is split into at most (partial dot products, then summed)
_UNROLL = tl.constexpr(32)  # in-frame distance columns read per step of eq. 7
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
def _load_slot(near, j: tl.constexpr, row_ok, KNN: tl.constexpr):
    """Slot ``j`` of the rows' ``nearest`` lists (``inf`` past ``KNN``)."""
    if j < KNN:
        return tl.load(near + j, mask=row_ok, other=float("inf"))
    else:
        return tl.full(row_ok.shape, float("inf"), tl.float32)


@triton.jit
def _store_slot(near, j: tl.constexpr, value, row_ok, KNN: tl.constexpr):
    """Write slot ``j`` of the rows' ``nearest`` lists (nothing past ``KNN``)."""
    if j < KNN:
        tl.store(near + j, value, mask=row_ok)


@triton.jit
def _tile_products(tokens, flat_rows, row_ok, flat_cols, col_ok, D, d_start, d_stop, BLOCK_R: tl.constexpr,
                   BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr, IEEE: tl.constexpr):
    """``(BLOCK_R, BLOCK_C)`` dot products of the token rows ``flat_rows`` and ``flat_cols`` over
    the features ``[d_start, d_stop)`` (fp32 accumulation)."""
    features = tl.arange(0, BLOCK_D)
    dots = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
    for d0 in range(d_start, d_stop, BLOCK_D):
        f_ok = d0 + features < d_stop
        a = tl.load(tokens + flat_rows[:, None] * D + d0 + features[None, :],
                    mask=row_ok[:, None] & f_ok[None, :], other=0.0)
        b = tl.load(tokens + flat_cols[None, :] * D + d0 + features[:, None],
                    mask=col_ok[None, :] & f_ok[:, None], other=0.0)
        if IEEE:
            dots = tl.dot(a, b, dots, input_precision="ieee")
        else:
            dots = tl.dot(a, b, dots)
    return dots


@triton.jit
def _unit_distances(dots, row_inv, col_inv, SAME: tl.constexpr):
    """Squared distances between L2-normalised tokens from their dot products and inverse
    norms (0 for an all-zero token), below ``SAME`` set to 0: ``token_selection._unit_distances``."""
    cos = dots * row_inv[:, None] * col_inv[None, :]
    unit = (row_inv > 0).to(tl.float32)[:, None] + (col_inv > 0).to(tl.float32)[None, :]
    dist = unit - 2.0 * cos
    return tl.where(dist < SAME, 0.0, dist)


@triton.jit
def _store_partial_dots(tokens, partial, kept, frame, source, num_kept, rows, row_ok, chunk, chunk_d, chunk_stride,
                        M, D, M_COLS, BLOCK_ROWS: tl.constexpr, BLOCK_KEPT: tl.constexpr, BLOCK_D: tl.constexpr,
                        IEEE: tl.constexpr):
    """Dot products of ``rows`` of ``frame`` with the ``num_kept`` tokens chosen in ``source``, over
    the features of chunk ``chunk`` (``chunk_d`` of them), into ``partial[chunk, frame, column, row]``."""
    flat_rows = frame.to(tl.int64) * M + rows
    d_start = chunk * chunk_d
    d_stop = tl.minimum(d_start + chunk_d, D)
    for start in range(0, num_kept, BLOCK_KEPT):
        cols = start + tl.arange(0, BLOCK_KEPT)
        col_ok = cols < num_kept
        chosen = tl.load(kept + source.to(tl.int64) * M + cols, mask=col_ok, other=0)
        dots = _tile_products(tokens, flat_rows, row_ok, source.to(tl.int64) * M + chosen, col_ok, D, d_start, d_stop,
                              BLOCK_ROWS, BLOCK_KEPT, BLOCK_D, IEEE)
        target = partial + chunk.to(tl.int64) * chunk_stride + (frame.to(tl.int64) * M_COLS + cols[None, :]) * M
        tl.store(target + rows[:, None], dots, mask=row_ok[:, None] & col_ok[None, :])


@triton.jit
def _merge_partials(inv_norms, nearest, partial, kept, frame, source, num_kept, rows, row_ok, chunks, chunk_stride,
                    M, M_COLS, SAME: tl.constexpr, KNN: tl.constexpr, BLOCK_KEPT: tl.constexpr):
    """Merge the distances of ``rows`` of ``frame`` to the ``num_kept`` tokens chosen in
    ``source`` into their ``KNN`` smallest so far (``nearest``, ascending, inf-padded).

    The dot products are the sums of the ``chunks`` partials, added in chunk order
    (deterministic). The distances go back to chunk 0's slots and are inserted into each
    row's sorted list one column at a time: elementwise min/max only, no reductions across
    the tile (on the H100, eq. 7 by five pops of a 32 x 256 tile took 27 us, by inserts 8 us).
    """
    big = float("inf")
    flat_rows = frame.to(tl.int64) * M + rows
    near = nearest + flat_rows * KNN  # slot j of every row at near + j
    r0, r1, r2 = _load_slot(near, 0, row_ok, KNN), _load_slot(near, 1, row_ok, KNN), _load_slot(near, 2, row_ok, KNN)
    r3, r4 = _load_slot(near, 3, row_ok, KNN), _load_slot(near, 4, row_ok, KNN)
    row_inv = tl.load(inv_norms + flat_rows, mask=row_ok, other=0.0)
    columns = partial + frame.to(tl.int64) * M_COLS * M  # chunk 0: [column, row] of this frame
    for start in range(0, num_kept, BLOCK_KEPT):
        cols = start + tl.arange(0, BLOCK_KEPT)
        col_ok = cols < num_kept
        chosen = tl.load(kept + source.to(tl.int64) * M + cols, mask=col_ok, other=0)
        col_inv = tl.load(inv_norms + source.to(tl.int64) * M + chosen, mask=col_ok, other=0.0)
        tile = columns + cols[None, :] * M + rows[:, None]
        ok = row_ok[:, None] & col_ok[None, :]
        dots = tl.zeros((rows.shape[0], BLOCK_KEPT), dtype=tl.float32)
        for chunk in range(0, chunks):  # written by other programs of this launch: bypass L1
            dots += tl.load(tile + chunk * chunk_stride, mask=ok, other=0.0, cache_modifier=".cg")
        tl.store(tile, _unit_distances(dots, row_inv, col_inv, SAME), mask=ok)
        tl.debug_barrier()  # the tile is stored before its columns are read back
        for j in tl.static_range(BLOCK_KEPT):
            # (rows * 0 + ...: a full mask; Triton's interpreter rejects a broadcast one)
            column_ok = rows * 0 + start + j < num_kept
            value = tl.load(columns + (start + j) * M + rows, mask=row_ok & column_ok, other=big)
            r0, r1, r2, r3, r4 = _insert(value, r0, r1, r2, r3, r4)
    _store_slot(near, 0, r0, row_ok, KNN)
    _store_slot(near, 1, r1, row_ok, KNN)
    _store_slot(near, 2, r2, row_ok, KNN)
    _store_slot(near, 3, r3, row_ok, KNN)
    _store_slot(near, 4, r4, row_ok, KNN)


@triton.jit
def _first_frame_density(in_frame, density, frame, rows, row_ok, M, KNN: tl.constexpr, UNROLL: tl.constexpr):
    """Eq. 7 for ``rows`` of ``frame``: exp(-mean distance to the k nearest other tokens of the
    frame). Column ``c`` of the rows is row ``c`` of the (symmetric) in-frame distances, read
    ``UNROLL`` columns at a time and inserted into sorted lists as in ``_merge_partials``."""
    big = float("inf")
    base = frame.to(tl.int64) * M
    r0 = tl.full(rows.shape, big, tl.float32)
    r1, r2, r3, r4 = r0, r0, r0, r0
    for start in range(0, M, UNROLL):
        for j in tl.static_range(UNROLL):
            column = start + j
            column_ok = rows * 0 + column < M  # a full mask, as in _merge_partials
            value = tl.load(in_frame + (base + column) * M + rows, mask=row_ok & column_ok, other=big)
            value = tl.where(rows == column, big, value)
            r0, r1, r2, r3, r4 = _insert(value, r0, r1, r2, r3, r4)
    k = tl.minimum(M - 1, KNN)
    total = tl.where(k > 0, r0, 0.0)  # the k smallest, added in ascending order
    total += tl.where(k > 1, r1, 0.0)
    total += tl.where(k > 2, r2, 0.0)
    total += tl.where(k > 3, r3, 0.0)
    total += tl.where(k > 4, r4, 0.0)
    value = tl.where(k > 0, tl.exp(-(total / tl.maximum(k, 1).to(tl.float32))), 1.0)
    tl.store(density + base + rows, value, mask=row_ok)


@triton.jit
def _guided_density(nearest, plan, density, frame, rows, row_ok, T, M, KNN: tl.constexpr):
    """Eq. 9 for ``rows`` of ``frame``: 1 - exp(-mean distance to the k nearest guide tokens)."""
    big = float("inf")
    flat_rows = frame.to(tl.int64) * M + rows
    slot = tl.arange(0, 8)
    near = tl.load(nearest + flat_rows[:, None] * KNN + slot[None, :],
                   mask=row_ok[:, None] & (slot[None, :] < KNN), other=big)
    total = tl.sum(tl.where(near < big, near, 0.0), axis=1)
    count = tl.maximum(tl.minimum(tl.load(plan + 2 * T + frame), KNN), 1).to(tl.float32)
    tl.store(density + flat_rows, 1.0 - tl.exp(-(total / count)), mask=row_ok)


@triton.jit
def _in_frame_kernel(tokens, inv_norms, in_frame, M, D, SAME: tl.constexpr, BLOCK: tl.constexpr,
                     BLOCK_D: tl.constexpr, IEEE: tl.constexpr):
    """Program ``(frame, row block, column block)``: the in-frame distances of one tile and its
    mirror (exactly symmetric, zero diagonal). Tiles below the diagonal exit."""
    frame = tl.program_id(0)
    row_block = tl.program_id(1)
    col_block = tl.program_id(2)
    if row_block <= col_block:
        base = frame.to(tl.int64) * M
        rows = row_block * BLOCK + tl.arange(0, BLOCK)
        cols = col_block * BLOCK + tl.arange(0, BLOCK)
        row_ok, col_ok = rows < M, cols < M
        dots = _tile_products(tokens, base + rows, row_ok, base + cols, col_ok, D, 0, D, BLOCK, BLOCK, BLOCK_D, IEEE)
        row_inv = tl.load(inv_norms + base + rows, mask=row_ok, other=0.0)
        dist = _unit_distances(dots, row_inv, tl.load(inv_norms + base + cols, mask=col_ok, other=0.0), SAME)
        ok = row_ok[:, None] & col_ok[None, :]
        if row_block == col_block:  # mirror the upper triangle onto the lower one
            upper = cols[None, :] > rows[:, None]
            dist = tl.where(upper, dist, tl.trans(dist))
            dist = tl.where(cols[None, :] == rows[:, None], 0.0, dist)
            tl.store(in_frame + (base + rows)[:, None] * M + cols[None, :], dist, mask=ok)
        else:
            tl.store(in_frame + (base + rows)[:, None] * M + cols[None, :], dist, mask=ok)
            tl.store(in_frame + (base + cols)[None, :] * M + rows[:, None], dist, mask=ok)


@triton.jit
def _merge_kernel(tokens, inv_norms, in_frame, plan, nearest, kept, partial, arrivals, density, position, chunks,
                  chunk_d, chunk_stride, T, M, D, M_COLS, SAME: tl.constexpr, KNN: tl.constexpr,
                  BLOCK_ROWS: tl.constexpr, BLOCK_KEPT: tl.constexpr, BLOCK_D: tl.constexpr,
                  IEEE: tl.constexpr):
    """Program ``(row block, frame, feature chunk)``, first launch of position ``position``.

    If the frame comes later in its segment than ``position``, the program adds one feature
    chunk of the dot products of its rows with the tokens chosen at ``position`` to
    ``partial``; the last of the ``chunks`` programs of the row block to finish (a ticket from
    ``arrivals``) merges the summed distances into the rows' ``nearest`` lists. Then, if the
    frame is at ``position + 1``, that program writes its rows' densities (eq. 7 from the
    in-frame distances at a segment's first frame, eq. 9 from ``nearest`` after).
    Splitting the features shortens the chain of dependent tile products of a merge, which
    bounds the time of a position with few frames left to merge into.
    """
    block = tl.program_id(0)
    frame = position + 1 + tl.program_id(1)  # frames before position + 1 have nothing to do
    chunk = tl.program_id(2)
    start = tl.load(plan + frame)
    frame_position = frame - start
    rows = block * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    last = chunk == 0
    if position >= 0 and frame_position > position:
        source = start + position
        num_kept = tl.load(plan + T + source)
        if num_kept > 0:
            _store_partial_dots(tokens, partial, kept, frame, source, num_kept, rows, rows < M, chunk, chunk_d,
                                chunk_stride, M, D, M_COLS, BLOCK_ROWS, BLOCK_KEPT, BLOCK_D, IEEE)
            tl.debug_barrier()  # every thread's partials are stored before the ticket is taken
            counter = arrivals + frame * tl.num_programs(0) + block
            last = tl.atomic_add(counter, 1) == chunks - 1
            if last:
                tl.store(counter, 0)  # ready for the next position
                _merge_partials(inv_norms, nearest, partial, kept, frame, source, num_kept, rows, rows < M, chunks,
                                chunk_stride, M, M_COLS, SAME, KNN, BLOCK_KEPT)
    if last and frame_position == position + 1 and tl.load(plan + T + frame) > 0:
        tl.debug_barrier()  # this program's own merge wrote these rows
        if position < 0:
            _first_frame_density(in_frame, density, frame, rows, rows < M, M, KNN, _UNROLL)
        else:
            _guided_density(nearest, plan, density, frame, rows, rows < M, T, M, KNN)


@triton.jit
def _score_kernel(in_frame, plan, density, score, position, T, M,
                  BLOCK_ROWS: tl.constexpr, BLOCK_M: tl.constexpr):
    """Program ``(row block, frame)``, second launch: for the frame at ``position + 1``, the
    score ``density * separation`` (eq. 8 / 10) of its rows; separation is the distance to
    the nearest strictly denser token of the frame, or the largest distance for the densest."""
    block = tl.program_id(0)
    frame = position + 1 + tl.program_id(1)  # frames before position + 1 have nothing to do
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
    frame = position + 1 + tl.program_id(1)  # frames before position + 1 have nothing to do
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

    ``run(positions)`` computes the inverse norms (torch), issues the in-frame launch and
    positions ``-1 .. positions - 2``; it reads only device memory (its few temporaries come
    from the graph's pool), so on CUDA it is captured in a CUDA graph
    per number of positions (``_run_as_graph``) and replayed: one host call per video
    instead of ``3 * positions + 1`` Triton launches, whose host-side cost would dominate.
    """

    def __init__(self, num_frames: int, per_frame: int, dim: int, dtype: torch.dtype, knn: int,
                 device: torch.device) -> None:
        self.shape = (num_frames, per_frame, dim)
        self.knn = knn
        self.kept_columns = triton.cdiv(per_frame, _BLOCK_KEPT) * _BLOCK_KEPT
        # Under Triton's interpreter: the H100's 132 SMs, so merges are split as they would be there.
        sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132
        self.target_programs = 2 * sms
        self.tokens = torch.empty(num_frames, per_frame, dim, dtype=dtype, device=device)
        self.plan = torch.zeros(3, num_frames, dtype=torch.int32, device=device)
        self.in_frame = torch.empty(num_frames, per_frame, per_frame, device=device)
        self.inv_norms = torch.empty(num_frames, per_frame, device=device)
        self.nearest = torch.empty(num_frames * per_frame, knn, device=device)
        self.partial = torch.empty(_MAX_SPLIT, num_frames, self.kept_columns, per_frame, device=device)
        self.arrivals = torch.zeros(num_frames, triton.cdiv(per_frame, _BLOCK_ROWS), dtype=torch.int32,
                                    device=device)  # back to 0 after every merge
        self.scratch = torch.empty(2, num_frames, per_frame, device=device)
        self.kept = torch.empty(num_frames, per_frame, dtype=torch.int32, device=device)
        self.keep = torch.zeros(num_frames, per_frame, dtype=torch.int8, device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}  # by number of positions (CUDA only)

    def feature_chunks(self, position: int) -> int:
        """Feature chunks of position ``position``'s merges: enough programs for about two per
        SM, counting every frame after ``position`` as one to merge into (exact for one segment)."""
        num_frames, _, dim = self.shape
        merges = (num_frames - position - 1) * self.arrivals.shape[1]
        if position < 0 or merges == 0:
            return 1
        return max(1, min(_MAX_SPLIT, triton.cdiv(dim, _BLOCK_D), triton.cdiv(self.target_programs, merges)))

    def run(self, positions: int) -> None:
        num_frames, per_frame, dim = self.shape
        ieee = self.tokens.dtype == torch.float32
        self.keep.zero_()
        tiles = triton.cdiv(per_frame, _IN_FRAME_TILE)
        # torch's reduction: 22 us for 32 frames on the H100, vs 61 for a Triton pass and ~40 for
        # squaring inside the in-frame tiles
        self.inv_norms.copy_(_inverse_norms(self.tokens))
        self.nearest.fill_(float("inf"))  # the guide sets start empty
        _in_frame_kernel[(num_frames, tiles, tiles)](
            self.tokens, self.inv_norms, self.in_frame, per_frame, dim, SAME=SAME_TOKEN, BLOCK=_IN_FRAME_TILE,
            BLOCK_D=_BLOCK_D, IEEE=ieee)
        row_blocks = triton.cdiv(per_frame, _BLOCK_ROWS)
        block_m = max(16, triton.next_power_of_2(per_frame))
        density, score = self.scratch
        for position in range(-1, positions - 1):
            # Programs only for frames from position + 1 on: a frame later than `position` in
            # its segment comes at least that far into the video.
            frames = num_frames - position - 1
            chunk_d = triton.cdiv(triton.cdiv(dim, _BLOCK_D), self.feature_chunks(position)) * _BLOCK_D
            chunks = triton.cdiv(dim, chunk_d)
            _merge_kernel[(row_blocks, frames, chunks)](
                self.tokens, self.inv_norms, self.in_frame, self.plan, self.nearest, self.kept, self.partial,
                self.arrivals, density, position, chunks, chunk_d, self.partial.stride(0), num_frames, per_frame, dim,
                self.kept_columns, SAME=SAME_TOKEN, KNN=self.knn, BLOCK_ROWS=_BLOCK_ROWS, BLOCK_KEPT=_BLOCK_KEPT,
                BLOCK_D=_BLOCK_D, IEEE=ieee, num_stages=_STAGES)
            _score_kernel[(row_blocks, frames)](self.in_frame, self.plan, density, score, position, num_frames,
                                                per_frame, BLOCK_ROWS=_BLOCK_ROWS, BLOCK_M=block_m)
            _rank_kernel[(row_blocks, frames)](self.plan, score, self.keep, self.kept, position, num_frames, per_frame,
                                               BLOCK_ROWS=_BLOCK_ROWS, BLOCK_M=block_m)


_WORKSPACES: OrderedDict[tuple, _Workspace] = OrderedDict()
_MAX_WORKSPACES = 4  # shapes kept (a 32-frame bf16 7B-shape video: ~76 MB of buffers, 26 MB of them partials)


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
