"""Stage 3 of MMG-Vid: token pruning with DPC-KNN and temporal-guided DPC (paper eq. 7-10).

Within a segment the first frame is pruned with DPC-KNN (eq. 7-8) and every later frame
with TG-DPC (eq. 9-10), whose density is measured against the growing set of tokens
already kept in the segment (the guide set). Segments are independent, so step ``p``
processes frame ``p`` of every segment at once: the loop runs over frame positions
(the longest segment's length), never over tokens or segments.

Choices where the paper is silent:
- Distances are squared Euclidean between L2-normalised tokens (``2 - 2 cos``, in [0, 4];
  an all-zero token stays zero).
  On raw projector outputs ``exp(-||t_i - t_j||^2)`` underflows to 0 for every token (norms
  are in the tens), which makes every score 0 and the choice arbitrary; on unit vectors the
  densities stay informative whatever the feature scale.
- ``k`` nearest neighbours (default 5, the usual DPC-KNN choice): in eq. 7 they are the
  other tokens of the frame (not the token itself) and the mean is over ``k``
  (``k = min(k, M - 1)``; with one token per frame the density is 1); in eq. 9 they are the
  nearest guide tokens (``k = min(k, guide size)``).
- Repeated content must not be ranked by rounding noise: squared distances below
  ``SAME_TOKEN`` (1e-4, i.e. cos > 0.99995) are exactly 0, so a token that is already in the
  guide set (a static background) gets exactly the same density on every device, and its
  ties go to the lower index everywhere. Without it, long static videos kept different
  tokens on CPU and GPU.
- "Higher density" in eq. 8/10 is strictly higher; the token(s) of highest density take
  the largest distance in their own row, as written.
- The top ``b`` scores are taken with a stable sort, so equal scores go to the lower index.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .segmentation import Segment

__all__ = ["select_tokens"]

# Squared distances (between unit vectors, so in [0, 4]) below this are 0: the same token up
# to rounding (cos > 0.99995; fp32 dot products over D = 3584 carry errors near 1e-5).
SAME_TOKEN = 1e-4


def _inverse_norms(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``(..., D) -> (...)``: ``1 / |x|``, and 0 for an all-zero token (which stays zero).
    In fp32 at least (bf16/fp16 tokens are summed in fp32, without a copy), fp64 for fp64;
    written into ``out`` if given. Three device ops (the reciprocal of 0 is inf, set to 0)."""
    norms = torch.linalg.vector_norm(x, dim=-1, dtype=torch.promote_types(x.dtype, torch.float32), out=out)
    return norms.reciprocal_().nan_to_num_(posinf=0.0)


def _unit_distances(a: torch.Tensor, a_inv: torch.Tensor, b: torch.Tensor, b_inv: torch.Tensor) -> torch.Tensor:
    """``(B, P, D), (B, P), (B, Q, D), (B, Q) -> (B, P, Q)`` squared distances between the
    L2-normalised rows of ``a`` and ``b`` (``|a^|^2 + |b^|^2 - 2 a^.b^``).

    The rows are normalised through the small ``(P, Q)`` product, not the ``(P, D)`` inputs:
    the tokens are read once, by the matmul.
    """
    cos = torch.bmm(a, b.transpose(-1, -2)).mul_(a_inv.unsqueeze(-1)).mul_(b_inv.unsqueeze(-2))
    a_sq, b_sq = (a_inv > 0).to(cos.dtype), (b_inv > 0).to(cos.dtype)
    dist = (a_sq.unsqueeze(-1) + b_sq.unsqueeze(-2)).sub_(cos, alpha=2.0)
    return dist.masked_fill_(dist < SAME_TOKEN, 0.0)


def _mean_of_k_smallest(dist: torch.Tensor, k: torch.Tensor, k_max: int) -> torch.Tensor:
    """``(B, P, Q) -> (B, P)``: mean of the ``k[b]`` smallest finite entries of each row.

    ``dist`` holds ``inf`` where a column does not count; ``k`` is ``(B,)`` with
    ``k[b] <= k_max <= Q`` finite entries per row.
    """
    smallest = dist.topk(k_max, dim=-1, largest=False).values
    smallest = torch.where(torch.isinf(smallest), torch.zeros_like(smallest), smallest)
    return smallest.sum(-1) / k.clamp_min(1).unsqueeze(-1)


def _separation(dist: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """Eq. 8 / 10: ``(B, M, M), (B, M) -> (B, M)`` distance to the nearest denser token of the frame."""
    denser = density.unsqueeze(-2) > density.unsqueeze(-1)  # [b, i, m]: token m denser than token i
    nearest_denser = dist.masked_fill(~denser, float("inf")).amin(-1)
    return torch.where(denser.any(-1), nearest_denser, dist.amax(-1))


@dataclass(frozen=True)
class _Plan:
    """Host-side schedule of the per-position loop, segments sorted longest first.

    ``frames[s][p]`` is the frame at position ``p`` of segment ``s`` (-1 past its end),
    ``budgets[s][p]`` its token budget and ``offsets[s][p]`` the guide size before it.
    """

    frames: list[list[int]]
    budgets: list[list[int]]
    offsets: list[list[int]]

    @classmethod
    def build(cls, segments: list[Segment], frame_budgets: list[int]) -> _Plan:
        ordered = sorted(segments, key=len, reverse=True)
        length = len(ordered[0])
        frames = [list(seg) + [-1] * (length - len(seg)) for seg in ordered]
        budgets = [[frame_budgets[f] if f >= 0 else 0 for f in row] for row in frames]
        offsets = [[sum(row[:p]) for p in range(length)] for row in budgets]
        return cls(frames, budgets, offsets)

    def active(self, position: int) -> int:
        """Number of segments (a prefix, as they are sorted) that have a frame at ``position``."""
        return sum(1 for row in self.frames if row[position] >= 0)

    def column(self, table: list[list[int]], position: int, active: int) -> list[int]:
        return [row[position] for row in table[:active]]


def _first_frame_density(in_frame: torch.Tensor, knn: int) -> torch.Tensor:
    """Eq. 7: ``(B, M, M)`` in-frame distances -> ``(B, M)`` DPC-KNN densities."""
    k = min(knn, in_frame.shape[-1] - 1)
    if k == 0:
        return in_frame.new_ones(in_frame.shape[:-1])
    others = in_frame.clone()
    others.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    return torch.exp(-others.topk(k, dim=-1, largest=False).values.mean(-1))


def select_tokens(
    tokens: torch.Tensor, segments: list[Segment], frame_budgets: list[int], knn: int
) -> torch.Tensor:
    """Choose ``frame_budgets[t]`` tokens of every frame t.

    Args:
        tokens: ``(T, M, D)`` token features, already in the compute dtype.
        segments: consecutive frame ranges covering ``0..T-1`` (stage 1).
        frame_budgets: ``T`` ints, ``0 <= b_t <= M``, front-loaded within each segment (stage 2).
        knn: neighbours ``k`` of eq. 7 and 9.

    Returns:
        ``(T, M)`` bool mask of the kept tokens, ``frame_budgets[t]`` True in row t.

    Everything that does not depend on the guide set is computed for all frames before the
    loop, in a few large batched operations: the in-frame distances ``(T, M, M)`` and the
    first frames' densities.
    """
    num_frames, per_frame, _ = tokens.shape
    device = tokens.device
    inverse_norms = _inverse_norms(tokens)  # (T, M)
    in_frame = _unit_distances(tokens, inverse_norms, tokens, inverse_norms)  # (T, M, M)
    # Exactly symmetric, so mutual neighbours get exactly equal densities (a true tie).
    in_frame = (in_frame + in_frame.transpose(-1, -2)).mul_(0.5)
    in_frame.diagonal(dim1=-2, dim2=-1).zero_()
    plan = _Plan.build(segments, frame_budgets)
    tables = torch.tensor([plan.frames, plan.budgets, plan.offsets], dtype=torch.long).to(device)
    guide_capacity = max(sum(row) for row in plan.budgets)
    # The guide set of each segment; row `guide_capacity` is a sink for unused writes.
    guide = tokens.new_zeros(len(plan.frames), guide_capacity + 1, tokens.shape[-1])
    guide_inv = tokens.new_zeros(len(plan.frames), guide_capacity + 1)
    keep = torch.zeros(num_frames, per_frame, dtype=torch.bool, device=device)

    for position in range(len(plan.frames[0])):
        active = plan.active(position)
        budget_max = max(plan.column(plan.budgets, position, active))
        if budget_max == 0:
            continue
        frames, budgets, offsets = tables[:, :active, position]
        x, x_inv, distances = tokens[frames], inverse_norms[frames], in_frame[frames]  # (A, M, D), (A, M), (A, M, M)
        if position == 0:
            density = _first_frame_density(distances, knn)
        else:  # eq. 9: temporal relevance density against the guide set
            guide_max = max(plan.column(plan.offsets, position, active))
            to_guide = _unit_distances(x, x_inv, guide[:active, :guide_max], guide_inv[:active, :guide_max])
            beyond = torch.arange(guide_max, device=device) >= offsets.unsqueeze(-1)  # (A, G)
            to_guide.masked_fill_(beyond.unsqueeze(1), float("inf"))
            k_max = min(knn, guide_max)
            density = 1.0 - torch.exp(-_mean_of_k_smallest(to_guide, offsets.clamp_max(knn), k_max))

        score = density * _separation(distances, density)  # gamma of eq. 8 / 10
        ranked = torch.sort(score, dim=-1, descending=True, stable=True).indices[:, :budget_max]  # (A, b)
        rank = torch.arange(budget_max, device=device)
        chosen = rank < budgets.unsqueeze(-1)  # (A, b)
        keep[frames.unsqueeze(-1), ranked] = chosen
        slots = torch.where(chosen, offsets.unsqueeze(-1) + rank, guide_capacity)
        segment_rows = torch.arange(active, device=device).unsqueeze(-1)
        guide[segment_rows, slots] = x[segment_rows, ranked]
        guide_inv[segment_rows, slots] = x_inv[segment_rows, ranked]
    return keep
