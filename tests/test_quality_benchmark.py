"""Fast checks of the synthetic quality benchmark: ground-truth mapping, generator, metrics."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.quality import run
from benchmarks.quality.features import pixel_features
from benchmarks.quality.grid import FRAME, TOKENS, pool_matrix, token_coverage
from benchmarks.quality.metrics import METRICS, evaluate, kept_mask
from benchmarks.quality.variants import METHOD_VARIANTS, mmgvid_ablation
from benchmarks.quality.video import make_video
from mmgvid_vllm.pruning import num_kept, prune

FRAMES = 18  # the shortest video every profile supports


@pytest.fixture(scope="module")
def video():
    return make_video("recurring", seed=0, num_frames=FRAMES)


@pytest.fixture(scope="module")
def tokens(video):
    return pixel_features(video.frames)


def test_pool_matrix_is_llava_onevision_bilinear_pooling():
    patches = torch.randn(3, 27, 27, dtype=torch.float64)
    weights = torch.from_numpy(pool_matrix())
    expected = F.interpolate(patches[:, None], size=(14, 14), mode="bilinear")[:, 0]
    torch.testing.assert_close(weights @ patches @ weights.T, expected)


def test_token_coverage_of_boxes():
    mask = np.zeros((2, FRAME, FRAME), dtype=bool)
    mask[0, :28, :28] = True  # patches 0-1 x 0-1: all of token cell (0, 0), nothing else
    mask[1, 378:, :] = True  # the 6 pixel rows no patch sees
    coverage = token_coverage(mask)
    assert coverage.shape == (2, TOKENS)
    assert coverage[0, 0] == pytest.approx(1.0)
    assert coverage[0, 1:].max() < 0.05  # token (0, 1) mixes patch 2 and 3 only (patch 1 is not in it)
    assert coverage[1].max() == 0.0


def test_coverage_is_the_share_of_the_object_in_pixel_features():
    """Tokens are linear in pixels, so a two-colour frame's token is the coverage-weighted mix
    (exactly, for a mask of whole patches: patch rows 7-9, columns 4-6, spread over several tokens)."""
    mask = np.zeros((1, FRAME, FRAME), dtype=bool)
    mask[0, 98:140, 56:98] = True
    plain = np.full((1, FRAME, FRAME, 3), 40, dtype=np.uint8)
    painted = np.where(mask[..., None], np.uint8(220), plain)
    c = torch.from_numpy(token_coverage(mask)).float()[..., None]
    mixed = (1 - c) * pixel_features(plain) + c * pixel_features(np.full_like(plain, 220))
    torch.testing.assert_close(pixel_features(painted), mixed, atol=1e-4, rtol=1e-4)


def test_generator_ground_truth(video):
    assert video.frames.shape == (FRAMES, FRAME, FRAME, 3) and video.frames.dtype == np.uint8
    np.testing.assert_array_equal(make_video("recurring", seed=0, num_frames=FRAMES).frames, video.frames)
    shot_scenes = [int(video.scene_ids[video.shot_ids == s][0]) for s in np.unique(video.shot_ids)]
    assert len(shot_scenes) > len(set(shot_scenes)), "a scene recurs"
    needles = [t for t in video.tracks if t.needle]
    assert len(needles) == 3
    for needle in needles:
        assert 1 <= len(needle.frames()) <= 2 and needle.on_tokens().any(axis=1).sum() >= 1
        assert np.array_equal(needle.frames(), np.arange(needle.frames()[0], needle.frames()[-1] + 1))


def test_full_retention_is_perfect(video, tokens):
    everything = kept_mask(prune(tokens, 1.0, "uniform"), FRAMES, TOKENS)
    assert everything.all()
    m = evaluate(everything, tokens, video)
    assert set(m) == set(METRICS)
    perfect = ("needle_recall", "object_frame_recall", "scene_coverage", "min_scene_share", "min_shot_share")
    for name in (*perfect, "frame_coverage"):
        assert m[name] == 1.0, name
    assert m["coverage"] == pytest.approx(1.0, abs=1e-5)


def test_random_at_small_ratio_is_worse_than_keeping_all(video, tokens):
    everything = evaluate(kept_mask(prune(tokens, 1.0, "uniform"), FRAMES, TOKENS), tokens, video)
    few = evaluate(kept_mask(prune(tokens, 0.02, "random"), FRAMES, TOKENS), tokens, video)
    assert few["coverage"] < everything["coverage"]
    assert few["min_shot_share"] < 0.05 and few["needle_recall"] <= everything["needle_recall"]
    assert few["object_frame_recall"] < 1.0


def test_ablation_without_changes_is_mmgvid(tokens):
    for retention in (0.25, 0.1):
        plain = mmgvid_ablation(tokens, retention, per_frame_dpc=False, uniform_budget=False)
        assert torch.equal(plain, prune(tokens, retention, "mmgvid"))
        for dpc, uniform in ((True, False), (False, True)):
            ablated = mmgvid_ablation(tokens, retention, per_frame_dpc=dpc, uniform_budget=uniform)
            assert len(ablated) == num_kept(FRAMES, TOKENS, retention)


def test_run_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")  # the plot needs it; not in the package's test extra yet
    monkeypatch.setattr(run, "RETENTIONS", (0.1,))
    monkeypatch.setattr(run, "VARIANTS", {m: METHOD_VARIANTS[m] for m in ("mmgvid", "uniform", "random")})
    assert run.main(["--videos", "1", "--frames", str(FRAMES), "--features", "pixels", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "quality.md").read_text()
    assert "| 10% | mmgvid |" in table and (tmp_path / "quality.png").stat().st_size > 0
