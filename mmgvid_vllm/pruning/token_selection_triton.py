"""Stage 3 of MMG-Vid on the GPU: the TG-DPC recurrence in Triton, by windows of positions.

Same result as ``token_selection.select_tokens`` (the same equations, choices and tie rules;
only floating-point summation order differs), built for speed on CUDA. Frame positions within
a segment are cut into windows of ``_WINDOW``; a segment's frames in one window form a piece
(at most ``W`` consecutive frames). Segments are independent, so every window's pieces are
processed together, and a video takes ``ceil(L / W)`` windows for a longest segment of ``L``.

- One launch computes, for every piece, the distances between all its tokens (tiles above
  the diagonal, mirrored, so exactly symmetric). They hold every frame's in-frame distances
  and the distances to the tokens of the earlier frames of its piece.
- Per window, one launch selects the tokens of the window's pieces: a few programs per piece
  walk its frames in order, each program taking some of a frame's tokens. For a frame they
  insert the distances to the tokens already kept in the piece (read from the piece's
  distances) into the ``k`` nearest guide distances brought by earlier windows (``nearest``
  ``(T*M, k)``), then compute density (eq. 7 or 9), score (eq. 8 / 10) and ranks (a sort),
  and append the kept tokens to the segment's guide list. The programs of a frame wait for
  each other (a grid barrier) before reading all densities and all scores. No matmul and no
  launch boundary between the frames of a piece.
- Then one launch pushes the tokens kept in each piece into every later frame of its
  segment: a tile product of the later tokens with the piece's kept tokens, merged into each
  later token's ``nearest`` list. Each (token, kept token) distance is computed exactly once.
  A segment's later tokens are contiguous and tiled across frames (no padded tile per frame);
  a program covers one tile of kept tokens, writes the tile's ``k`` smallest per row, and the
  last program of a row tile to finish (an atomic ticket) merges the tiles' lists.
- A sorted list of ``k`` is updated by inserting one value at a time (elementwise min/max,
  ``_insert``), not by reductions across a tile: those were the slow part of small programs.
- The plan (each frame's segment, budget and guide offset) comes from stages 1 and 2 on the
  device (``plan_triton``), so on CUDA the whole prune (norms, frame-mean Gram matrix, plan,
  stage 3) is one CUDA graph per input shape, captured on first use and replayed: the host
  never waits for the device (the host cost of the ``2 T / W`` Triton launches would exceed
  the GPU time; the windows no segment reaches are empty launches).
  (Tried and removed: stages 1 and 2 on a host thread while the GPU spun on a pinned flag for
  its plan. Under load in vLLM it deadlocked: the GPU waited for the thread, the thread for
  the GIL, and vLLM's main thread, holding the GIL, for room in the full CUDA launch queue
  behind the waiting GPU. Before that, the host waited for the Gram matrix, ran stages 1-2
  and launched stage 3, the GPU idle meanwhile.)
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

from .baselines import uniform_keep_mask
from .plan_triton import block_frames, plan_on_device
from .segmentation import frame_mean_gram
from .token_selection import SAME_TOKEN, _inverse_norms

__all__ = ["MAX_KNN", "supports", "workspace_for"]

MAX_KNN = 5  # nearest guide tokens kept per token (eq. 9's k); larger k takes the torch path

_WINDOW = 4  # positions per window: one selection launch and one push launch each
_TILE = 128  # rows and columns of one piece-distance tile
_PUSH_ROWS = 64  # later tokens per push program
_PUSH_COLS = 128  # kept tokens per push program
_PUSH_WARPS = 4  # warps of a push program
_BLOCK_D = 64  # feature chunk of a tile product
_STAGES = 3  # software-pipelining depth of the tile products' feature loop
_GROUPS = 4  # columns a selection loop reads at once (1, 2 or 4), each into its own group of results
_UNROLL = tl.constexpr(16)  # unrolled steps of the selection's insert loops
_CHUNK = 256  # columns of one tile of the separation (eq. 8 / 10)
_SELECT_ROWS = 32  # tokens of a frame per selection program (the frame's programs wait for each other twice)
_SELECT_WARPS = 4  # warps of a selection program: one (token, group) per thread
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def supports(tokens: torch.Tensor, knn: int) -> bool:
    """Whether this path applies: CUDA tokens (or any, under ``TRITON_INTERPRET=1``, Triton's
    CPU interpreter used by the tests), fp32/bf16/fp16, ``knn <= MAX_KNN``."""
    return tokens.dtype in _DTYPES and (tokens.is_cuda or _interpreted()) and knn <= MAX_KNN


def _interpreted() -> bool:
    """Whether Triton runs its CPU interpreter (``TRITON_INTERPRET=1``): programs one after another."""
    return os.environ.get("TRITON_INTERPRET") == "1"


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
    """Slot ``j`` of the rows' lists at ``near`` (``inf`` past ``KNN``)."""
    if j < KNN:
        return tl.load(near + j, mask=row_ok, other=float("inf"))
    else:
        return tl.full(row_ok.shape, float("inf"), tl.float32)


@triton.jit
def _store_slots(near, r0, r1, r2, r3, r4, row_ok, KNN: tl.constexpr):
    """Write the first ``KNN`` slots of the rows' lists at ``near``."""
    tl.store(near, r0, mask=row_ok)
    if KNN > 1:
        tl.store(near + 1, r1, mask=row_ok)
    if KNN > 2:
        tl.store(near + 2, r2, mask=row_ok)
    if KNN > 3:
        tl.store(near + 3, r3, mask=row_ok)
    if KNN > 4:
        tl.store(near + 4, r4, mask=row_ok)


@triton.jit
def _mean_of_smallest(r0, r1, r2, r3, r4, k):
    """Mean of the ``k`` (``0 <= k <= 5``) smallest, ``r0 .. r{k-1}``, added in ascending order; 0 if ``k == 0``."""
    total = tl.where(k > 0, r0, 0.0)
    total += tl.where(k > 1, r1, 0.0)
    total += tl.where(k > 2, r2, 0.0)
    total += tl.where(k > 3, r3, 0.0)
    total += tl.where(k > 4, r4, 0.0)
    return total / tl.maximum(k, 1).to(tl.float32)


@triton.jit
def _tile_products(tokens, flat_rows, row_ok, flat_cols, col_ok, D, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_D: tl.constexpr, IEEE: tl.constexpr):
    """``(BLOCK_R, BLOCK_C)`` dot products of the token rows ``flat_rows`` and ``flat_cols`` (fp32 accumulation)."""
    features = tl.arange(0, BLOCK_D)
    dots = tl.zeros((BLOCK_R, BLOCK_C), dtype=tl.float32)
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
def _piece_distances_kernel(tokens, inv_norms, plan, distances, T, M, D, WM, W: tl.constexpr, SAME: tl.constexpr,
                            TILE: tl.constexpr, BLOCK_D: tl.constexpr, IEEE: tl.constexpr):
    """Program ``(frame, row tile, column tile)``: if ``frame`` starts a piece, one tile of the
    piece's distances between all its tokens (numbered from the piece's first) and its
    mirror; exactly symmetric, zero diagonal. Row ``i`` of a piece starting at frame ``a`` is
    row ``a * M + i`` of ``distances`` ``(T * M, W * M)``. Tiles below the diagonal exit."""
    frame = tl.program_id(0)
    row_tile = tl.program_id(1)
    col_tile = tl.program_id(2)
    count = (tl.minimum(frame + W, tl.load(plan + 3 * T + frame)) - frame) * M  # the piece's tokens
    starts_piece = (frame - tl.load(plan + frame)) % W == 0  # at a position that is a multiple of W
    if starts_piece and row_tile <= col_tile and col_tile * TILE < count:
        first = frame.to(tl.int64) * M  # flat index of the piece's first token
        rows = row_tile * TILE + tl.arange(0, TILE)
        cols = col_tile * TILE + tl.arange(0, TILE)
        row_ok, col_ok = rows < count, cols < count
        dots = _tile_products(tokens, first + rows, row_ok, first + cols, col_ok, D, TILE, TILE, BLOCK_D, IEEE)
        row_inv = tl.load(inv_norms + first + rows, mask=row_ok, other=0.0)
        col_inv = tl.load(inv_norms + first + cols, mask=col_ok, other=0.0)
        dist = _unit_distances(dots, row_inv, col_inv, SAME)
        block = distances + first * WM
        ok = row_ok[:, None] & col_ok[None, :]
        if row_tile == col_tile:  # mirror the upper triangle onto the lower one
            dist = tl.where(cols[None, :] > rows[:, None], dist, tl.trans(dist))
            dist = tl.where(cols[None, :] == rows[:, None], 0.0, dist)
            tl.store(block + rows[:, None] * WM + cols[None, :], dist, mask=ok)
        else:
            tl.store(block + rows[:, None] * WM + cols[None, :], dist, mask=ok)
            tl.store(block + cols[None, :] * WM + rows[:, None], dist, mask=ok)


@triton.jit
def _halve(r0, r1, r2, r3, r4, ROWS: tl.constexpr, HALF: tl.constexpr):
    """``(ROWS, 2 * HALF)`` sorted lists -> ``(ROWS, HALF)``: the lists of groups ``2h`` and
    ``2h + 1`` merged (the second's values inserted into the first's)."""
    a0, b0 = tl.split(tl.reshape(r0, [ROWS, HALF, 2]))
    a1, b1 = tl.split(tl.reshape(r1, [ROWS, HALF, 2]))
    a2, b2 = tl.split(tl.reshape(r2, [ROWS, HALF, 2]))
    a3, b3 = tl.split(tl.reshape(r3, [ROWS, HALF, 2]))
    a4, b4 = tl.split(tl.reshape(r4, [ROWS, HALF, 2]))
    a0, a1, a2, a3, a4 = _insert(b0, a0, a1, a2, a3, a4)
    a0, a1, a2, a3, a4 = _insert(b1, a0, a1, a2, a3, a4)
    a0, a1, a2, a3, a4 = _insert(b2, a0, a1, a2, a3, a4)
    a0, a1, a2, a3, a4 = _insert(b3, a0, a1, a2, a3, a4)
    return _insert(b4, a0, a1, a2, a3, a4)


@triton.jit
def _merge_groups(r0, r1, r2, r3, r4, ROWS: tl.constexpr, G: tl.constexpr):
    """``(ROWS, G)`` sorted lists (``G`` in 1, 2, 4) -> ``(ROWS,)``: each row's ``G`` lists merged."""
    if G == 4:
        r0, r1, r2, r3, r4 = _halve(r0, r1, r2, r3, r4, ROWS, 2)
    if G >= 2:
        r0, r1, r2, r3, r4 = _halve(r0, r1, r2, r3, r4, ROWS, 1)
    return (tl.reshape(r0, [ROWS]), tl.reshape(r1, [ROWS]), tl.reshape(r2, [ROWS]), tl.reshape(r3, [ROWS]),
            tl.reshape(r4, [ROWS]))


@triton.jit
def _first_frame_density(block, local, rows, row_ok, M, WM, KNN: tl.constexpr, G: tl.constexpr,
                         UNROLL: tl.constexpr):
    """Eq. 7 for the tokens ``rows`` of the frame whose tokens start at ``local`` in its
    piece's distances ``block``: exp(-mean distance to the k nearest other tokens of the
    frame). Column ``c`` of the rows is row ``c`` of the symmetric distances (contiguous);
    ``G`` columns are read at once, each into its own group of sorted lists."""
    big = float("inf")
    r0 = tl.full((rows.shape[0], G), big, tl.float32)
    r1, r2, r3, r4 = r0, r0, r0, r0
    groups = tl.arange(0, G)[None, :]
    for start in range(0, M, UNROLL * G):
        for j in tl.static_range(UNROLL):
            column = start + j * G + groups  # (1, G)
            ok = row_ok[:, None] & (column < M)
            value = tl.load(block + (local + column) * WM + local + rows[:, None], mask=ok, other=big)
            r0, r1, r2, r3, r4 = _insert(tl.where(rows[:, None] == column, big, value), r0, r1, r2, r3, r4)
    r0, r1, r2, r3, r4 = _merge_groups(r0, r1, r2, r3, r4, rows.shape[0], G)
    k = tl.minimum(M - 1, KNN)
    return tl.where(k > 0, tl.exp(-_mean_of_smallest(r0, r1, r2, r3, r4, k)), 1.0)


@triton.jit
def _guided_density(block, nearest, guide, plan, frame, segment, piece, local, rows, row_ok, T, M, WM,
                    KNN: tl.constexpr, G: tl.constexpr, UNROLL: tl.constexpr):
    """Eq. 9 for the tokens ``rows`` of ``frame``: 1 - exp(-mean distance to the k nearest
    guide tokens). ``nearest`` holds the k nearest among the tokens kept before this piece;
    the tokens kept in the piece's earlier frames (guide entries ``first .. stop - 1``) are
    inserted from the piece's distances ``block`` (tokens numbered from frame ``piece``'s
    first), ``G`` at once into groups of lists, which are merged at the end."""
    big = float("inf")
    r0 = tl.full((rows.shape[0], G), big, tl.float32)
    r1, r2, r3, r4 = r0, r0, r0, r0
    groups = tl.arange(0, G)[None, :]
    first = tl.load(plan + 2 * T + piece)
    stop = tl.load(plan + 2 * T + frame)
    piece_first = piece * M
    entries = guide + segment * M
    for start in range(first, stop, UNROLL * G):
        for j in tl.static_range(UNROLL):
            entry = start + j * G + groups  # (1, G)
            token = tl.load(entries + entry, mask=entry < stop, other=piece_first)
            value = tl.load(block + (token - piece_first) * WM + local + rows[:, None],
                            mask=row_ok[:, None] & (entry < stop), other=big)
            r0, r1, r2, r3, r4 = _insert(value, r0, r1, r2, r3, r4)
    r0, r1, r2, r3, r4 = _merge_groups(r0, r1, r2, r3, r4, rows.shape[0], G)
    near = nearest + (frame * M + rows) * KNN
    r0, r1, r2, r3, r4 = _insert(_load_slot(near, 0, row_ok, KNN), r0, r1, r2, r3, r4)
    r0, r1, r2, r3, r4 = _insert(_load_slot(near, 1, row_ok, KNN), r0, r1, r2, r3, r4)
    r0, r1, r2, r3, r4 = _insert(_load_slot(near, 2, row_ok, KNN), r0, r1, r2, r3, r4)
    r0, r1, r2, r3, r4 = _insert(_load_slot(near, 3, row_ok, KNN), r0, r1, r2, r3, r4)
    r0, r1, r2, r3, r4 = _insert(_load_slot(near, 4, row_ok, KNN), r0, r1, r2, r3, r4)
    k = tl.minimum(stop, KNN)  # the guide's size
    return 1.0 - tl.exp(-_mean_of_smallest(r0, r1, r2, r3, r4, k))


@triton.jit
def _separation(block, densities, own_density, local, rows, row_ok, M, WM, BLOCK_M: tl.constexpr,
                CHUNK: tl.constexpr):
    """Eq. 8 / 10: distance of each row to the nearest strictly denser token of its frame, or
    the largest distance for the densest (``densities`` of the frame's tokens in memory).
    The rows' distances are read as whole ``(ROWS, CHUNK)`` tiles (one load each, coalesced
    along the columns), each reduced at once."""
    big = float("inf")
    nearest_denser = tl.full(rows.shape, big, tl.float32)
    farthest = tl.zeros(rows.shape, tl.float32)  # distances are >= 0 (a row's own is 0)
    for start in tl.static_range(0, BLOCK_M, CHUNK):
        columns = start + tl.arange(0, CHUNK)
        # past M: 0, never denser (and rows past M get separation 0, not inf * 0)
        dist = tl.load(block + (local + rows)[:, None] * WM + local + columns[None, :],
                       mask=row_ok[:, None] & (columns < M)[None, :], other=0.0)
        # (written by the frame's other programs: read from L2)
        density = tl.load(densities + columns, mask=columns < M, other=-big, cache_modifier=".cg")
        denser = density[None, :] > own_density[:, None]
        nearest_denser = tl.minimum(nearest_denser, tl.min(tl.where(denser, dist, big), axis=1))
        farthest = tl.maximum(farthest, tl.max(dist, axis=1))
    return tl.where(nearest_denser < big, nearest_denser, farthest)


@triton.jit
def _ranked(score, rows, row_ok, BLOCK_M: tl.constexpr):
    """The rows sorted by score, descending, equal scores to the lower index (as a stable
    sort): ``(BLOCK_M,)`` row indices, rows past ``M`` last. Scores are >= 0, so their bits
    order them as integers; the key's low half orders equal scores by index."""
    key = (score.to(tl.int32, bitcast=True).to(tl.int64) << 32) | (BLOCK_M - 1 - rows).to(tl.int64)
    key = tl.sort(tl.where(row_ok, key, -1), descending=True)
    return BLOCK_M - 1 - (key & 0xFFFFFFFF).to(tl.int32)


@triton.jit
def _wait_for_all(counter, programs):
    """Grid barrier of the ``programs`` programs sharing ``counter`` (0 before the first one
    arrives): each program's stores before it are visible to all of them after it. The
    programs are few and alone on the GPU, so all of them are resident and none waits forever."""
    tl.debug_barrier()  # every thread of this program has stored
    tl.atomic_add(counter, 1, sem="release")
    while tl.atomic_add(counter, 0, sem="acquire") < programs:
        pass
    tl.debug_barrier()


@triton.jit
def _select_frame(distances, plan, nearest, guide, density, score, phases, keep, piece, frame, segment, part,
                  PARTS, T, M, WM, KNN: tl.constexpr, ROWS: tl.constexpr, BLOCK_M: tl.constexpr, G: tl.constexpr,
                  UNROLL: tl.constexpr, CHUNK: tl.constexpr):
    """Keep the ``budget`` best-scoring tokens of ``frame`` and append them to its segment's
    guide list (entries ``guide[segment * M + offset + rank]``, flat token indices).

    The frame's tokens are shared by ``PARTS`` programs, ``ROWS`` each (this one: part
    ``part``): each computes its tokens' densities and scores, waiting for the others before
    reading all densities (eq. 8 / 10) and all scores (ranks). Every part then sorts all
    scores and writes the same kept tokens and guide entries, so it can go on to the next
    frame without waiting (the same values written by every part are harmless).
    """
    budget = tl.load(plan + T + frame)
    if budget > 0:
        rows = part * ROWS + tl.arange(0, ROWS)
        row_ok = rows < M
        block = distances + piece.to(tl.int64) * M * WM  # the piece's distances
        local = (frame - piece) * M  # the frame's first token in its piece
        if frame == segment:
            own_density = _first_frame_density(block, local, rows, row_ok, M, WM, KNN, G, UNROLL)
        else:
            own_density = _guided_density(block, nearest, guide, plan, frame, segment, piece, local, rows,
                                          row_ok, T, M, WM, KNN, G, UNROLL)
        base = frame * M
        tl.store(density + base + rows, own_density, mask=row_ok)
        _wait_for_all(phases + 2 * frame, PARTS)
        own_score = own_density * _separation(block, density + base, own_density, local, rows, row_ok, M, WM,
                                              BLOCK_M, CHUNK)
        tl.store(score + base + rows, own_score, mask=row_ok)
        _wait_for_all(phases + 2 * frame + 1, PARTS)
        every = tl.arange(0, BLOCK_M)
        scores = tl.load(score + base + every, mask=every < M, other=0.0, cache_modifier=".cg")
        ranked = _ranked(scores, every, every < M, BLOCK_M)  # position p holds the row of rank p
        chosen = every < budget
        tl.store(keep + base + ranked, tl.full(every.shape, 1, tl.int8), mask=chosen)
        tl.store(guide + segment * M + tl.load(plan + 2 * T + frame) + every, base + ranked, mask=chosen)
        tl.debug_barrier()  # the next frame reads these guide entries


@triton.jit(do_not_specialize=["window"])
def _select_kernel(distances, plan, nearest, guide, density, score, phases, keep, window, T, M, W: tl.constexpr,
                   KNN: tl.constexpr, ROWS: tl.constexpr, BLOCK_M: tl.constexpr, G: tl.constexpr,
                   UNROLL: tl.constexpr, CHUNK: tl.constexpr):
    """Program ``(j, part)`` of window ``window``: if frame ``window * W + j`` starts its
    segment's piece of this window (positions ``window * W ..``), select (its part of) the
    tokens of the piece's frames, in order. A frame at position ``p`` comes at least ``p``
    frames into the video, so the programs start at frame ``window * W``."""
    piece = window * W + tl.program_id(0)
    segment = tl.load(plan + piece)
    if piece - segment == window * W:
        for frame in range(piece, tl.minimum(piece + W, tl.load(plan + 3 * T + piece))):
            _select_frame(distances, plan, nearest, guide, density, score, phases, keep, piece, frame, segment,
                          tl.program_id(1), tl.num_programs(1), T, M, W * M, KNN, ROWS, BLOCK_M, G, UNROLL, CHUNK)


@triton.jit
def _push_tile(plan, row_tile, window, T, M, W: tl.constexpr, ROWS: tl.constexpr, BLOCK_T: tl.constexpr):
    """Which rows push tile ``row_tile`` of window ``window`` covers: ``(segment, first, count)``,
    the tile's segment (its first frame; ``>= T`` for a program past the last tile), the flat
    index of the tile's first row and its number of rows. Each segment's tokens after its
    piece of the window are contiguous and tiled on their own, ``ROWS`` at a time across frames,
    segment after segment (a prefix sum over the segments' tile counts)."""
    frames = tl.arange(0, BLOCK_T)
    in_video = frames < T
    starts = tl.load(plan + frames, mask=in_video, other=-1)  # each frame's segment start
    ends = tl.load(plan + 3 * T + frames, mask=in_video, other=0)
    # held by a segment's first frame: its tokens after its piece of the window
    later = tl.where(starts == frames, tl.maximum(ends - frames - (window + 1) * W, 0) * M, 0)
    tiles = tl.cdiv(later, ROWS)
    tiles_to = tl.cumsum(tiles, axis=0)  # tiles up to and including each frame's segment
    segment = tl.sum((tiles_to <= row_tile).to(tl.int32))  # the first frame whose tiles pass row_tile
    mine = frames == segment
    tile = row_tile - tl.sum(tl.where(mine, tiles_to - tiles, 0))
    first = (segment + (window + 1) * W).to(tl.int64) * M + tile * ROWS
    count = tl.minimum(tl.sum(tl.where(mine, later, 0)) - tile * ROWS, ROWS)
    return segment, first, count


@triton.jit
def _merge_tile(dots, rows, row_ok, kept, col_ok, count, tiles, region, inv_norms, nearest, partial, counter,
                col_tile, T, M, SAME: tl.constexpr, KNN: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr):
    """A push tile's products -> distances -> each row's ``KNN`` smallest, written to ``partial``;
    the last of the row tile's ``tiles`` column tiles to get here (a ticket from ``counter``)
    merges them all into ``nearest``. The tile is transposed through ``region`` (the tile's own),
    so each kept token's distances are read back as one vector and inserted, without reductions."""
    big = float("inf")
    local_rows = tl.arange(0, ROWS)
    row_inv = tl.load(inv_norms + rows, mask=row_ok, other=0.0)
    dist = _unit_distances(dots, row_inv, tl.load(inv_norms + kept, mask=col_ok, other=0.0), SAME)
    tl.store(region + tl.arange(0, COLS)[None, :] * ROWS + local_rows[:, None], dist,
             mask=row_ok[:, None] & col_ok[None, :])
    tl.debug_barrier()  # the tile is stored before its columns are read back
    r0 = tl.full((ROWS,), big, tl.float32)
    r1, r2, r3, r4 = r0, r0, r0, r0
    for j in tl.static_range(COLS):
        value = tl.load(region + j * ROWS + local_rows,
                        mask=row_ok & (local_rows * 0 + col_tile * COLS + j < count), other=big)
        r0, r1, r2, r3, r4 = _insert(value, r0, r1, r2, r3, r4)
    _store_slots(partial + (col_tile * T * M + rows) * KNN, r0, r1, r2, r3, r4, row_ok, KNN)
    tl.debug_barrier()  # every thread's lists are stored before the ticket is taken
    if tl.atomic_add(counter, 1) == tiles - 1:
        tl.store(counter, 0)  # ready for the next push
        near = nearest + rows * KNN
        r0, r1 = _load_slot(near, 0, row_ok, KNN), _load_slot(near, 1, row_ok, KNN)
        r2, r3 = _load_slot(near, 2, row_ok, KNN), _load_slot(near, 3, row_ok, KNN)
        r4 = _load_slot(near, 4, row_ok, KNN)
        for tile in range(0, tiles):  # written by other programs of this launch: bypass L1
            lists = partial + (tile * T * M + rows) * KNN
            for slot in tl.static_range(KNN):
                value = tl.load(lists + slot, mask=row_ok, other=big, cache_modifier=".cg")
                r0, r1, r2, r3, r4 = _insert(value, r0, r1, r2, r3, r4)
        _store_slots(near, r0, r1, r2, r3, r4, row_ok, KNN)


@triton.jit(do_not_specialize=["window"])
def _push_kernel(tokens, inv_norms, plan, guide, nearest, transposed, partial, arrivals, window, T, M, D,
                 W: tl.constexpr, SAME: tl.constexpr, KNN: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr,
                 BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr, IEEE: tl.constexpr):
    """Program ``(row tile, column tile)``: distances of the ``ROWS`` later tokens of push
    tile ``row tile`` (``_push_tile``: one segment's tokens after its piece of window
    ``window``) to ``COLS`` of the tokens kept in that piece, merged into the tokens' ``nearest``
    lists (``_merge_tile``, through the tile's own region of ``transposed`` and the row tile's
    counter in ``arrivals``).
    """
    row_tile = tl.program_id(0)
    col_tile = tl.program_id(1)
    segment, start, count_rows = _push_tile(plan, row_tile, window, T, M, W, ROWS, BLOCK_T)
    if segment < T:
        first = tl.load(plan + 2 * T + segment + window * W)
        count = tl.load(plan + 2 * T + segment + window * W + W) - first  # tokens kept in the piece
        tiles = tl.cdiv(count, COLS)
        if col_tile < tiles:
            local_rows = tl.arange(0, ROWS)
            cols = col_tile * COLS + tl.arange(0, COLS)
            row_ok, col_ok = local_rows < count_rows, cols < count
            rows = start + local_rows
            kept = tl.load(guide + segment * M + first + cols, mask=col_ok, other=0)
            dots = _tile_products(tokens, rows, row_ok, kept.to(tl.int64), col_ok, D, ROWS, COLS, BLOCK_D, IEEE)
            region = transposed + (col_tile * tl.num_programs(0) + row_tile).to(tl.int64) * (COLS * ROWS)
            _merge_tile(dots, rows, row_ok, kept, col_ok, count, tiles, region, inv_norms, nearest, partial,
                        arrivals + row_tile, col_tile, T, M, SAME, KNN, ROWS, COLS)


class _Workspace:
    """Every buffer of one run for one shape, and the launches that fill them.

    ``prune(tokens, keep, options)`` copies the tokens and the request's parameters in and
    queues the whole of MMG-Vid (``run_all``): the tokens' inverse norms, the frame-mean Gram
    matrix and its integral image, stages 1 and 2 (``plan_triton``: the plan), then stage 3
    (``run``): the piece-distance launch, and per window a selection launch and (but for the
    last window) a push launch. Everything reads device memory only (its few temporaries come
    from the graph's pool), so on CUDA it is captured in one CUDA graph per shape and
    replayed: one host call per video, no wait for the device. Stage 3 runs every window a
    video of ``T`` frames can have (``ceil(T / W)``): the longest segment is known on the
    device only, and a window no segment reaches costs two empty launches.
    """

    def __init__(self, num_frames: int, per_frame: int, dim: int, dtype: torch.dtype, knn: int,
                 device: torch.device) -> None:
        self.shape = (num_frames, per_frame, dim)
        self.knn = knn
        piece_tokens = _WINDOW * per_frame
        self.tokens = torch.empty(num_frames, per_frame, dim, dtype=dtype, device=device)
        self.params = torch.zeros(4, dtype=torch.float64, device=device)  # tau, lambda, R_min, keep
        self.gram = torch.empty(num_frames, num_frames, dtype=torch.float64, device=device)
        self.integral = torch.zeros(num_frames + 1, num_frames + 1, dtype=torch.float64, device=device)
        self.plan = torch.zeros(4, num_frames, dtype=torch.int32, device=device)
        self.outcome = torch.zeros(2, dtype=torch.int32, device=device)  # segments, failed
        self.plan_scratch = torch.zeros(3 * (block_frames(num_frames) + 1), dtype=torch.int32, device=device)
        self.inv_norms = torch.empty(num_frames, per_frame, device=device)
        self.distances = torch.empty(num_frames * per_frame, piece_tokens, device=device)
        self.nearest = torch.empty(num_frames * per_frame, knn, device=device)
        self.guide = torch.empty(num_frames * per_frame, dtype=torch.int32, device=device)
        self.density = torch.empty(num_frames, per_frame, device=device)
        self.score = torch.empty(num_frames, per_frame, device=device)
        self.phases = torch.zeros(num_frames, 2, dtype=torch.int32, device=device)  # selection barriers
        self.keep = torch.zeros(num_frames, per_frame, dtype=torch.int8, device=device)
        # Under Triton's interpreter programs run one after another, so a frame's programs could
        # not wait for each other: one program selects a whole frame there.
        self.block_m = max(16, triton.next_power_of_2(per_frame))
        self.select_rows = self.block_m if _interpreted() else min(self.block_m, _SELECT_ROWS)
        # A piece keeps at most all its tokens: that many column tiles per push at most.
        self.push_cols = triton.cdiv(piece_tokens, _PUSH_COLS)
        most_rows = self.push_rows(0)
        self.transposed = torch.empty(self.push_cols, most_rows, _PUSH_COLS * _PUSH_ROWS, device=device)
        self.partial = torch.empty(self.push_cols, num_frames * per_frame, knn, device=device)
        self.arrivals = torch.zeros(most_rows, dtype=torch.int32, device=device)  # 0 after every push
        self.graph: torch.cuda.CUDAGraph | None = None  # of run_all (CUDA only)
        self.uniform: dict[int, torch.Tensor] = {}  # the uniform selection of each kept count (the fallback)

    def prune(self, tokens: torch.Tensor, keep: int, options: tuple[float, float, float]
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MMG-Vid for ``(T, M, D)`` tokens of this workspace's shape, ``options`` =
        ``(tau, lambda, R_min)``: the ``(T, M)`` bool mask of the ``keep`` kept tokens (the
        uniform selection if a token is inf or NaN), the segment count (0-dim int32) and that
        failure (0-dim bool), all on the device. Queues device work only."""
        num_frames, per_frame, _ = self.shape
        on_cuda = self.tokens.is_cuda
        self.tokens.copy_(tokens)
        parameters = torch.tensor([*options, keep], dtype=torch.float64, pin_memory=on_cuda)
        self.params.copy_(parameters, non_blocking=True)  # (from the pinned pool: nothing waits)
        if on_cuda:
            _run_as_graph(self)
        else:
            self.run_all()
        failed = self.outcome[1] > 0
        if keep not in self.uniform:
            self.uniform[keep] = uniform_keep_mask(num_frames, per_frame, keep, self.tokens.device)
        return torch.where(failed, self.uniform[keep], self.keep.view(torch.bool)), self.outcome[0].clone(), failed

    def run_all(self) -> None:
        """Everything after the copies: norms, Gram matrix, plan (stages 1-2), stage 3."""
        num_frames, per_frame, _ = self.shape
        _inverse_norms(self.tokens, out=self.inv_norms)
        self.gram.copy_(frame_mean_gram(self.tokens))
        torch.cumsum(torch.cumsum(self.gram, 0), 1, out=self.integral[1:, 1:])
        plan_on_device(self.gram, self.integral, self.params, per_frame, self.plan, self.outcome, self.plan_scratch)
        self.run(triton.cdiv(num_frames, _WINDOW))

    def run(self, windows: int) -> None:
        """Stage 3 of the staged tokens (inverse norms computed) under ``self.plan``, for
        segments of at most ``windows * W`` frames."""
        num_frames, per_frame, dim = self.shape
        ieee = self.tokens.dtype == torch.float32
        piece_tokens = _WINDOW * per_frame
        self.keep.zero_()
        self.phases.zero_()
        self.nearest.fill_(float("inf"))  # the guide sets start empty
        tiles = triton.cdiv(piece_tokens, _TILE)
        _piece_distances_kernel[(num_frames, tiles, tiles)](
            self.tokens, self.inv_norms, self.plan, self.distances, num_frames, per_frame, dim, piece_tokens,
            W=_WINDOW, SAME=SAME_TOKEN, TILE=_TILE, BLOCK_D=_BLOCK_D, IEEE=ieee, num_stages=_STAGES)
        for window in range(windows):
            # Frames at positions window * W .. come at least that far into the video. (The
            # window number is never compiled in as a constant, even when it is 1.)
            _select_kernel[(num_frames - window * _WINDOW, triton.cdiv(per_frame, self.select_rows))](
                self.distances, self.plan, self.nearest, self.guide, self.density, self.score, self.phases, self.keep,
                window, num_frames, per_frame, W=_WINDOW, KNN=self.knn, ROWS=self.select_rows, BLOCK_M=self.block_m,
                G=_GROUPS, UNROLL=_UNROLL, CHUNK=min(_CHUNK, self.block_m), num_warps=_SELECT_WARPS)
            if window < windows - 1:
                _push_kernel[(self.push_rows(window), self.push_cols)](
                    self.tokens, self.inv_norms, self.plan, self.guide, self.nearest, self.transposed, self.partial,
                    self.arrivals, window, num_frames, per_frame, dim, W=_WINDOW, SAME=SAME_TOKEN, KNN=self.knn,
                    ROWS=_PUSH_ROWS, COLS=_PUSH_COLS, BLOCK_D=_BLOCK_D, BLOCK_T=triton.next_power_of_2(num_frames),
                    IEEE=ieee, num_warps=_PUSH_WARPS, num_stages=_STAGES)

    def push_rows(self, window: int) -> int:
        """Row tiles of window ``window``'s push, at most (the plan is on the device): the tokens
        after the window fill whole tiles, plus one partial tile per segment that has any, and a
        segment with frames after the window is longer than ``(window + 1) * W`` frames."""
        num_frames, per_frame, _ = self.shape
        after = max(num_frames - (window + 1) * _WINDOW, 0)
        return triton.cdiv(after * per_frame, _PUSH_ROWS) + num_frames // ((window + 1) * _WINDOW + 1)


_WORKSPACES: OrderedDict[tuple, _Workspace] = OrderedDict()
_MAX_WORKSPACES = 4  # shapes kept (a 32-frame bf16 7B-shape video: ~100 MB of buffers)


def workspace_for(tokens: torch.Tensor, knn: int) -> _Workspace:
    """The workspace of the tokens' shape: on CUDA one of the last ``_MAX_WORKSPACES`` used
    (with their CUDA graphs), elsewhere (the interpreter) a new one."""
    if not tokens.is_cuda:
        return _Workspace(*tokens.shape, tokens.dtype, knn, tokens.device)
    key = (tokens.device, tokens.dtype, tuple(tokens.shape), knn)
    if key in _WORKSPACES:
        _WORKSPACES.move_to_end(key)
    else:
        _WORKSPACES[key] = _Workspace(*tokens.shape, tokens.dtype, knn, tokens.device)
        if len(_WORKSPACES) > _MAX_WORKSPACES:
            _WORKSPACES.popitem(last=False)
    return _WORKSPACES[key]


def _run_as_graph(workspace: _Workspace) -> None:
    """``workspace.run_all()`` through a CUDA graph: the first time it runs directly (compiling
    the kernels if needed) and is then captured; afterwards the graph is replayed."""
    if workspace.graph is not None:
        workspace.graph.replay()
        return
    workspace.run_all()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        workspace.run_all()  # recorded, not executed
    workspace.graph = graph


