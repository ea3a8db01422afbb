"""A short load-test sweep against the tiny CPU server (caches off), through the CLI.

Baseline (retention 1.0) vs 0.25 per request, concurrency 1 and 2, 4 requests each,
8-frame 384x384 videos: every request succeeds, the pruned configuration sends fewer
prompt tokens, the cache checks stay quiet, and JSON, Markdown and plots are written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.server import CPU_DEFAULT_ARGS, VllmServer
from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 8
CACHES_OFF = ("--no-enable-prefix-caching", "--mm-processor-cache-gb", "0")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("loadtest")
    env = {"VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": "0.25"}
    with VllmServer(ensure_tiny_model(), extra_args=[*CPU_DEFAULT_ARGS, *CACHES_OFF], env=env) as srv:
        cmd = [sys.executable, "-m", "loadtest", "--url", srv.url, "--retentions", "1.0", "0.25",
               "--concurrency", "1", "2", "--max-requests", "4", "--duration", "120", "--warmup", "1",
               "--frames", str(FRAMES), "--width", "384", "--height", "384", "--max-tokens", "8",
               "--cache-dir", str(out / "corpus"), "--out-dir", str(out / "results"), "--no-progress"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr + "\n--- server ---\n" + srv.log_tail(40)
    return out / "results", proc


def test_outputs_written(sweep):
    results, proc = sweep
    for name in ("results.json", "results.md", "ttft.png", "throughput.png"):
        assert (results / name).stat().st_size > 0, name
    assert (results / "ttft.png").read_bytes()[:4] == b"\x89PNG"
    assert "| r=0.25 | 2 |" in (results / "results.md").read_text()
    assert "wrote" in proc.stdout


def test_json_fields_and_no_errors(sweep):
    result = json.loads((sweep[0] / "results.json").read_text())
    for key in ("format_version", "configs", "video", "plan", "shards", "cache_checks", "warnings", "points"):
        assert key in result
    assert [(p["config"], p["level"]) for p in result["points"]] == [
        ("r=1 (baseline)", 1), ("r=0.25", 1), ("r=1 (baseline)", 2), ("r=0.25", 2)]
    for p in result["points"]:
        s = p["summary"]
        assert (s["completed"], s["failed"], s["errors"]) == (4, 0, {})
        for key in ("median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "median_itl_ms", "p99_e2el_ms",
                    "request_throughput", "output_throughput", "total_token_throughput", "duration_s"):
            assert s[key] is not None and s[key] > 0, key
        assert s["total_output_tokens"] == 4 * 8  # ignore_eos: exactly max_tokens each
        assert len(p["requests"]) == 4 and all(r["ok"] and r["ttft"] <= r["latency"] for r in p["requests"])
    seeds = [r["seed"] for p in result["points"] for r in p["requests"]]
    assert len(seeds) == len(set(seeds)) == 16  # a distinct video per request


def test_pruned_prompts_are_shorter(sweep):
    result = json.loads((sweep[0] / "results.json").read_text())
    tokens = {(p["config"], p["level"]): p["summary"]["mean_prompt_tokens"] for p in result["points"]}
    for level in (1, 2):
        base, pruned = tokens[("r=1 (baseline)", level)], tokens[("r=0.25", level)]
        assert base - pruned == FRAMES * FRAME_TOKENS - round(0.25 * FRAMES * FRAME_TOKENS)


def test_caches_reported_off(sweep):
    result = json.loads((sweep[0] / "results.json").read_text())
    (check,) = result["cache_checks"].values()
    assert check["snapshots"]["start"]["prefix_caching"] is False
    assert check["snapshots"]["end"]["mm_cache_queries"] == 0
    assert result["warnings"] == []
