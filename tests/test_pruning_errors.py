"""Bad arguments raise ValueError with a message that says what is wrong."""

import pytest
import torch

from mmgvid_vllm.pruning import num_kept, prune

GOOD = torch.randn(4, 9, 8)


@pytest.mark.parametrize("retention", [0, 0.0, -1, 1.5, float("nan"), float("inf"), "0.5", None, True])
def test_bad_retention(retention):
    with pytest.raises(ValueError, match="retention"):
        prune(GOOD, retention)
    with pytest.raises(ValueError, match="retention"):
        num_kept(4, 9, retention)


@pytest.mark.parametrize(
    "tokens, message",
    [
        (torch.randn(9, 8), "rank 2"),
        (torch.randn(2, 4, 9, 8), "rank 4"),
        (torch.randn(0, 9, 8), "empty"),
        (torch.randn(4, 0, 8), "empty"),
        (torch.ones(4, 9, 8, dtype=torch.long), "floating"),
        ([[[1.0]]], "torch.Tensor"),
    ],
)
def test_bad_tokens(tokens, message):
    with pytest.raises(ValueError, match=message):
        prune(tokens, 0.5)


@pytest.mark.parametrize("method", ["mmgvid", "uniform", "random", "evs", "vidcom2"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_tokens(method, bad):
    tokens = GOOD.clone()
    tokens[2, 3, 1] = bad
    with pytest.raises(ValueError, match="finite"):
        prune(tokens, 0.5, method=method)


@pytest.mark.parametrize("method", ["mmgvid", "uniform", "random", "evs", "vidcom2"])
def test_non_finite_tokens_with_on_report_keep_the_uniform_selection(method):
    tokens = GOOD.clone()
    tokens[2, 3, 1] = float("nan")
    reports = []
    kept = prune(tokens, 0.5, method=method, on_report=reports.append)
    assert kept.tolist() == prune(GOOD, 0.5, method="uniform").tolist()
    reported = prune(GOOD, 0.5, method=method, on_report=reports.append)
    assert reported.tolist() == prune(GOOD, 0.5, method=method).tolist()
    assert [bool(r.failed) for r in reports] == [True, False]
    assert int(reports[0].segments) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "fastv"}, "unknown pruning method"),
        ({"tau": 2.0}, "tau"),
        ({"lam": -0.1}, "lam"),
        ({"r_min": 1.5}, "r_min"),
        ({"knn": 0}, "knn"),
        ({"seed": 1}, "no option"),
        ({"method": "uniform", "tau": 0.9}, "no option"),
        ({"method": "random", "seed": "x"}, "seed"),
    ],
)
def test_bad_method_or_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prune(GOOD, 0.5, **kwargs)


@pytest.mark.parametrize("frames, per_frame", [(0, 196), (32, 0), (2.5, 196), (True, 196)])
def test_num_kept_bad_shape(frames, per_frame):
    with pytest.raises(ValueError):
        num_kept(frames, per_frame, 0.25)
