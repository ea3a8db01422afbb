"""The per-rank kept-indices log (mmgvid_vllm/kept_log.py) and its checker
(benchmarks/gpu/check_tp_ranks.py): what the tensor-parallel check on the GPU relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from mmgvid_vllm.kept_log import KeptLog, kept_log_from_env
from mmgvid_vllm.pruning import prune

CHECK = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu" / "check_tp_ranks.py"


def log_videos(directory: Path, rank: int, seeds: list[int], retention: float = 0.25) -> None:
    log = KeptLog(directory)
    log.path = directory / f"rank{rank}.jsonl"  # as if torch.distributed said so
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        tokens = torch.randn(4, 16, 8, generator=torch.Generator().manual_seed(seed))
        log.write(tokens, prune(tokens, retention), retention, "mmgvid")


def check(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(directory), "--out", str(directory / "report.json"), *args],
                          capture_output=True, text=True)


def test_off_unless_the_environment_names_a_directory(tmp_path):
    assert kept_log_from_env({}) is None
    assert kept_log_from_env({"MMGVID_KEPT_LOG_DIR": ""}) is None
    assert kept_log_from_env({"MMGVID_KEPT_LOG_DIR": str(tmp_path)}).directory == tmp_path


def test_one_line_per_video_with_the_kept_indices_hash(tmp_path):
    log = KeptLog(tmp_path / "kept")
    tokens = torch.randn(4, 16, 8, generator=torch.Generator().manual_seed(0))
    keep = prune(tokens, 0.25)
    log.write(tokens, keep, 0.25, "mmgvid")
    log.write(tokens, keep, 0.25, "mmgvid")
    lines = [json.loads(line) for line in (tmp_path / "kept" / "rank0.jsonl").read_text().splitlines()]
    assert [line["seq"] for line in lines] == [0, 1]
    assert lines[0]["frames"] == 4 and lines[0]["kept"] == keep.numel() and lines[0]["method"] == "mmgvid"
    assert lines[0]["kept_sha"] == lines[1]["kept_sha"] and lines[0]["features"] == lines[1]["features"]
    other = prune(tokens, 0.5)
    log.write(tokens, other, 0.5, "mmgvid")
    third = json.loads((tmp_path / "kept" / "rank0.jsonl").read_text().splitlines()[2])
    assert third["kept_sha"] != lines[0]["kept_sha"]


def test_checker_passes_identical_ranks(tmp_path):
    for rank in (0, 1):
        log_videos(tmp_path, rank, list(range(6)))
    result = check(tmp_path, "--min-videos", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: every rank kept the same tokens" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["distinct_videos_per_retention"] == {"0.25": 6}


def test_checker_fails_on_a_differing_rank_too_few_videos_or_a_missing_rank(tmp_path):
    log_videos(tmp_path / "a", 0, [0, 1, 2])
    log_videos(tmp_path / "a", 1, [0, 5, 2])  # rank 1 saw other features for video 1
    result = check(tmp_path / "a", "--min-videos", "3")
    assert result.returncode == 1 and "1 video(s) differ" in result.stdout
    assert json.loads((tmp_path / "a" / "report.json").read_text())["mismatches"][0]["seq"] == 1

    log_videos(tmp_path / "b", 0, [0, 0, 1])
    log_videos(tmp_path / "b", 1, [0, 0, 1])
    result = check(tmp_path / "b", "--min-videos", "3")
    assert result.returncode == 1 and "only 2 distinct videos" in result.stdout

    log_videos(tmp_path / "c", 0, [0, 1])
    result = check(tmp_path / "c", "--min-videos", "2")
    assert result.returncode == 1 and "1 rank file(s)" in result.stdout
