"""mmgvid_vllm.metrics without a vLLM server: files written per process, merged as /metrics shows them."""

from __future__ import annotations

import multiprocessing
import os

import pytest
import torch
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from mmgvid_vllm import metrics
from mmgvid_vllm.pruning import PruneReport


@pytest.fixture
def metrics_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv(metrics.DIR_ENV, str(tmp_path))
    return tmp_path


def scrape(path) -> dict[tuple[str, frozenset], float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples, name, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls and "le" not in dict(ls))


def test_record_video_counters_and_retention(metrics_dir):
    metrics.record_video("m", "mmgvid", 6272, 1568, 0.25)
    metrics.record_video("m", "none", 392, 392, 0.25)
    s = scrape(metrics_dir)
    assert total(s, "mmgvid_video_original_tokens_total") == 6272 + 392
    assert total(s, "mmgvid_video_kept_tokens_total") == 1568 + 392
    assert total(s, "mmgvid_kv_cache_tokens_avoided_total", method="mmgvid") == 6272 - 1568
    assert total(s, "mmgvid_video_retention_ratio_count") == 2
    assert total(s, "mmgvid_video_retention_ratio_sum") == pytest.approx(1.25)
    not_pruned = {("model_name", "m"), ("method", "none")}
    assert s[("mmgvid_video_retention_ratio_bucket", frozenset(not_pruned | {("le", "0.99")}))] == 0
    assert s[("mmgvid_video_retention_ratio_bucket", frozenset(not_pruned | {("le", "1.0")}))] == 1
    assert s[("mmgvid_retention_target_ratio", frozenset({("model_name", "m")}))] == 0.25


def test_time_pruning_records_time_and_segments(metrics_dir):
    import torch

    from mmgvid_vllm.pruning import prune

    tokens = torch.randn(8, 16, 4)
    tokens[4:] += 10  # two scenes
    with metrics.time_pruning("m", "mmgvid", tokens.device) as seen:
        prune(tokens, 0.25, "mmgvid", on_report=seen.set_report)
    with metrics.time_pruning("m", "none", tokens.device):
        pass
    s = scrape(metrics_dir)
    assert total(s, "mmgvid_pruning_duration_seconds_count") == 2
    assert total(s, "mmgvid_pruning_duration_seconds_sum", method="mmgvid") > 0
    assert total(s, "mmgvid_video_segments_count") == 2
    assert total(s, "mmgvid_video_segments_sum", method="none") == 1
    assert total(s, "mmgvid_video_segments_sum", method="mmgvid") >= 2


FAILED = PruneReport(torch.tensor(1), torch.tensor(True))  # a prune that met inf or NaN features


def test_dummy_runs_are_not_recorded(metrics_dir):
    def get_dummy_mm_inputs():  # the name vLLM's profiling goes through
        metrics.record_video("m", "mmgvid", 100, 25, 0.25)
        with metrics.time_pruning("m", "mmgvid") as seen:
            seen.set_report(FAILED)

    get_dummy_mm_inputs()
    assert scrape(metrics_dir) == {}


def _child(n: int) -> None:
    metrics.record_video("m", "mmgvid", 100, 10 * n, 0.25)
    with metrics.time_pruning("m", "mmgvid") as seen:
        seen.set_report(FAILED)


def test_processes_add_up(metrics_dir):
    metrics.record_video("m", "mmgvid", 100, 50, 0.25)  # opens this process's files before the fork
    for start_method in ("fork", "spawn"):
        p = multiprocessing.get_context(start_method).Process(target=_child, args=(3,))
        p.start()
        p.join()
        assert p.exitcode == 0
    s = scrape(metrics_dir)
    assert total(s, "mmgvid_video_kept_tokens_total") == 50 + 30 + 30
    assert total(s, "mmgvid_pruning_errors_total") == 2
    assert total(s, "mmgvid_video_retention_ratio_count") == 3
    assert len(os.listdir(metrics_dir)) == 3 * 3  # (counter, histogram, gauge) x 3 processes


def test_setup_prefers_vllm_multiproc_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "vllm"))
    monkeypatch.setenv(metrics.DIR_ENV, str(tmp_path / "ours"))
    metrics.setup()  # vLLM exports PROMETHEUS_MULTIPROC_DIR itself: nothing to add
    assert metrics.metrics_dir() == str(tmp_path / "vllm")


def test_setup_creates_and_collects_a_dir(monkeypatch):
    from prometheus_client import REGISTRY

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv(metrics.DIR_ENV, "")  # unset for setup(), and restored (removed) afterwards
    monkeypatch.setattr(metrics, "_collected_dir", None)
    before = set(REGISTRY._collector_to_names)
    metrics.setup()
    path = os.environ[metrics.DIR_ENV]
    try:
        assert os.path.isdir(path)
        metrics.record_video("unit", "mmgvid", 8, 2, 0.25)
        assert REGISTRY.get_sample_value(
            "mmgvid_video_kept_tokens_total", {"model_name": "unit", "method": "mmgvid"}
        ) == 2
    finally:
        for collector in set(REGISTRY._collector_to_names) - before:
            REGISTRY.unregister(collector)
