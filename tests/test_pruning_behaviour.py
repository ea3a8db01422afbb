"""What the paper claims MMG-Vid does, checked on constructed videos."""

import torch

from mmgvid_vllm.pruning import num_kept, prune
from mmgvid_vllm.pruning.counts import split_evenly
from mmgvid_vllm.pruning.mmgvid import MMGVidOptions, mmgvid_keep_mask
from mmgvid_vllm.pruning.segmentation import segment_frames
from mmgvid_vllm.pruning.token_selection import select_tokens

M, D = 196, 64


def scene(seed: int) -> torch.Tensor:
    return torch.randn(1, M, D, generator=torch.Generator().manual_seed(seed))


def shot(base: torch.Tensor, frames: int, seed: int, noise: float = 0.02) -> torch.Tensor:
    return base + noise * torch.randn(frames, M, D, generator=torch.Generator().manual_seed(seed))


def kept_per_frame(tokens: torch.Tensor, retention: float, **options) -> torch.Tensor:
    """(T,) kept token count per frame."""
    return torch.bincount(prune(tokens, retention, **options) // M, minlength=tokens.shape[0])


def frame_gram(tokens: torch.Tensor):
    means = tokens.double().mean(1)
    return (means @ means.T).numpy()


def test_three_distinct_scenes_give_three_segments_each_above_r_min():
    video = torch.cat([shot(scene(1), 8, 11), shot(scene(2), 6, 12), shot(scene(3), 10, 13)])
    assert segment_frames(frame_gram(video), 0.95) == [range(0, 8), range(8, 14), range(14, 24)]
    retention, r_min = 0.25, 0.1
    kept = kept_per_frame(video, retention, r_min=r_min)
    for seg in (range(0, 8), range(8, 14), range(14, 24)):
        assert int(kept[seg.start : seg.stop].sum()) >= r_min * len(seg) * M
    assert int(kept.sum()) == num_kept(24, M, retention)
    reported = []
    prune(video, retention, on_report=reported.append)
    assert [(int(r.segments), bool(r.failed)) for r in reported] == [(3, False)]


def test_single_frame_segments_merge_into_the_more_similar_neighbour():
    a, b = scene(1), scene(2)
    flash = 0.8 * b + 0.2 * scene(3)  # one odd frame, closer to b than to a
    video = torch.cat([shot(a, 4, 1), shot(flash, 1, 2), shot(b, 4, 3)])
    assert segment_frames(frame_gram(video), 0.95) == [range(0, 4), range(4, 9)]


def test_a_repeated_scene_gets_a_smaller_budget_than_a_novel_one():
    a, b = scene(1), scene(2)
    video = torch.cat([shot(a, 6, 1), shot(b, 6, 2), shot(a, 6, 1)])  # the third shot repeats the first
    kept = kept_per_frame(video, 0.25)
    first, novel, repeat = (int(kept[s : s + 6].sum()) for s in (0, 6, 12))
    assert repeat < novel and repeat < first
    # With independent noise the repeat still gets less than the novel scene.
    noisy = torch.cat([shot(a, 6, 1), shot(b, 6, 2), shot(a, 6, 3)])
    kept = kept_per_frame(noisy, 0.25)
    assert min(int(kept[0:6].sum()), int(kept[12:18].sum())) < int(kept[6:12].sum())


def test_moving_object_is_kept_in_later_frames_instead_of_the_static_background():
    """A deforming object moves over a near-uniform static wall (one segment)."""
    frames, side = 8, 14
    gen = torch.Generator().manual_seed(0)
    wall = torch.randn(1, 1, D, generator=gen) + 0.05 * torch.randn(1, M, D, generator=gen)
    video = wall.expand(frames, M, D).clone()
    object_cells = []
    for t in range(frames):
        cells = [(3 + r) * side + (1 + t + c) for r in range(2) for c in range(2)]  # 2x2 patch moving right
        video[t, cells] = 3 * torch.randn(4, D, generator=gen)  # new pose every frame
        object_cells.append(cells)
    keep, _, _ = mmgvid_keep_mask(video.float(), num_kept(frames, M, 0.1), 0.1, MMGVidOptions())
    assert len(segment_frames(frame_gram(video), 0.95)) == 1
    for t in range(1, frames):
        assert bool(keep[t, object_cells[t]].all()), f"frame {t} lost the moving object"

    def background_repeats(mask):
        """Kept wall positions that an earlier frame already kept."""
        seen, repeats = set(), 0
        for t in range(frames):
            wall_kept = set(mask[t].nonzero().flatten().tolist()) - set(object_cells[t])
            repeats += len(wall_kept & seen)
            seen |= wall_kept
        return repeats

    # Plain DPC-KNN on every frame (no temporal guide) keeps re-selecting the same wall tokens.
    per_frame = select_tokens(video, [range(t, t + 1) for t in range(frames)], split_evenly(int(keep.sum()), frames), 5)
    assert background_repeats(keep) * 4 < background_repeats(per_frame)
