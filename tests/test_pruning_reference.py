"""The fast MMG-Vid must keep exactly the tokens the plain reference (tests/reference_mmgvid.py) keeps."""

import numpy as np
import pytest
import torch
from reference_mmgvid import reference_prune

from mmgvid_vllm.pruning import prune


def _random_video(rng: np.random.Generator) -> np.ndarray:
    """Random (T, M, D) tokens with scene structure, so segments of several lengths appear."""
    T, M, D = int(rng.integers(1, 10)), int(rng.choice([1, 2, 4, 9, 16])), int(rng.integers(2, 9))
    scenes = rng.normal(size=(int(rng.integers(1, 4)), M, D))
    scene_of_frame = rng.integers(0, len(scenes), size=T)
    if rng.random() < 0.5:  # contiguous scenes; otherwise scenes recur
        scene_of_frame = np.sort(scene_of_frame)
    noise = rng.uniform(0.01, 0.6)
    return scenes[scene_of_frame] + noise * rng.normal(size=(T, M, D))


@pytest.mark.parametrize("case", range(240))
def test_fast_matches_reference(case):
    rng = np.random.default_rng(case)
    video = _random_video(rng)
    retention = float(rng.choice([0.05, 0.1, 0.15, 0.25, 0.5, 0.8, 1.0, rng.uniform(0.01, 1.0)]))
    options = {"tau": float(rng.choice([0.95, 0.8, 0.5])), "lam": float(rng.choice([0.0, 0.5, 1.0])),
               "knn": int(rng.choice([1, 3, 5]))}
    fast = prune(torch.from_numpy(video), retention, **options).tolist()
    assert fast == reference_prune(video, retention, **options)
