"""The GPU benchmark clients (benchmarks/gpu/ttft.py, max_concurrency.py) end to end against one
tiny CPU server, at tiny sizes, so that they work the first time on the scarce GPU machine; the
GPU run's offline scripts (benchmarks/prune_speed.py, benchmarks/gpu/check_prune_cuda.py,
check_raw_pixels.py) on the CPU.

The server is shaped like run_serving.sh's (plugin by entry point, caches off, per-request
retention, VLLM_SERVER_DEV_MODE=1 for /pause and /resume) with a small KV cache (16,384 tokens)
that a few dozen 4-frame requests fill.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from mmgvid_vllm.launcher import VllmServer
from mmgvid_vllm.pruning import num_kept
from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
ARGS = [
    "--enforce-eager", "--max-model-len", "4096", "--max-num-batched-tokens", "4096",
    "--limit-mm-per-prompt", '{"video": 1, "image": 0}', "--kv-cache-memory-bytes", "8M",
    "--trust-request-mm-kwargs", "--no-enable-prefix-caching", "--mm-processor-cache-gb", "0",
    "--uvicorn-log-level", "warning",
]


@pytest.fixture(scope="module")
def server():
    env = {"VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": None, "VLLM_SERVER_DEV_MODE": "1"}
    with VllmServer(ensure_tiny_model(), extra_args=ARGS, env=env) as srv:
        yield srv


def run(script: str, *args: str, timeout: float = 180) -> str:
    """Runs ``benchmarks/<script>`` and returns its stdout."""
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.server
def test_ttft_with_llm_prefill(server, tmp_path):
    out = tmp_path / "ttft.json"
    stdout = run("gpu/ttft.py", "--url", server.url, "--retentions", "1.0", "0.25", "--frames", "4", "--size", "64",
                 "--repeats", "2", "--warmup", "1", "--out", str(out))
    assert "LLM prefill ms" in stdout and "vision+pruning ms" in stdout
    report = json.loads(out.read_text())
    full, pruned = report["summary"]["1.0"], report["summary"]["0.25"]
    assert full["prompt_tokens"] - pruned["prompt_tokens"] == 4 * FRAME_TOKENS - num_kept(4, FRAME_TOKENS, 0.25)
    for s in (full, pruned):
        assert s["llm_prompt_tokens"] == s["prompt_tokens"]
        assert s["llm_prefill_ms"] > 0 and s["prefill_s"] > 0
        assert s["vision_pruning_ms"] == pytest.approx((s["prefill_s"] - s["llm_prefill_s"]) * 1e3)
    assert full["llm_prefill_speedup"] == 1.0 and pruned["llm_prefill_speedup"] > 0
    for rows in report["llm_samples"].values():
        assert len(rows) == 2 and all(row["stats_seen"] for row in rows)


@pytest.mark.server
def test_max_concurrency(server, tmp_path):
    out = tmp_path / "mc.json"
    stdout = run("gpu/max_concurrency.py", "--url", server.url, "--retentions", "1.0", "0.25", "--frames", "4",
                 "--size", "64", "--max-tokens", "512", "--plateau", "4", "--time-limit", "30", "--no-progress",
                 "--out", str(out))
    assert "| retention | prompt tokens |" in stdout
    report = json.loads(out.read_text())
    full, pruned = report["results"]
    assert report["kv_cache_tokens"] == 16384
    assert full["hold"] and pruned["hold"]  # /pause was there and used
    for r in (full, pruned):
        assert r["errors"] == 0 and r["idle_after"] and r["saturated"]
        assert r["requests"] > r["computed_capacity"]
        assert 0 < r["peak_decoding"] <= r["computed_capacity"] + 2
    # The unpruned configuration fills the KV cache; how far the pruned one gets within the time
    # limit depends on the CPU (on 2 busy cores the encoder, not the KV cache, limits it): the
    # capacity figures themselves are the GPU benchmark's, not this test's.
    assert full["max_kv_usage"] > 0.9
    assert requests.get(server.url + "/is_paused", timeout=10).json() == {"is_paused": False}


def test_prune_speed(tmp_path):
    out = tmp_path / "prune_speed.json"
    stdout = run("prune_speed.py", "--frames", "4", "--dims", "32", "--retentions", "0.25", "--methods", "mmgvid",
                 "uniform", "--content", "shots", "static", "--repeats", "2", "--warmup", "0", "--out", str(out))
    assert "| content | D | T | retention | mmgvid ms | uniform ms |" in stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["content"], r["frames"]) for r in rows] == [("shots", 4), ("static", 4)]
    assert all(r["mmgvid_ms"] > 0 and r["uniform_ms"] > 0 for r in rows)


def test_check_prune_cuda_runs_on_any_device():
    stdout = run("gpu/check_prune_cuda.py", "--device", "cpu", "--cases", "4")
    assert "cpu vs cpu: 4/4 identical; mismatching cases: []" in stdout
    assert "under use_deterministic_algorithms: identical" in stdout


def test_check_raw_pixels():
    stdout = run("gpu/check_raw_pixels.py", str(ensure_tiny_model()))
    assert "DIFFERENT" not in stdout and stdout.count("on cpu: raw torch.uint8, identical") == 5


def test_vs_vanilla_headline(tmp_path):
    """gpu.json's headline from one lease's files: speedups = vanilla's median / ours."""
    from benchmarks.gpu.vs_vanilla import headline, table, updated

    def ttft(**configs):
        return {"summary": {r: {"ttft_s": t, "prefill_s": t / 2, "llm_prefill_s": t / 4, "prompt_tokens": 100}
                            for r, t in configs.items()}}

    files = {
        "vanilla.json": {"ttft_ms": {"v": {"None": 900.0}}, "rps": {"clip": {"64": {"None": 5.0}}},
                         "decode": {"1": {"None": {"rps": 1.0, "latency_ms": 400.0, "ttft_ms": 100.0, "tpot_ms": 2.0}}},
                         "decode_video": "clip"},
        "mmgvid.json": {"ttft_ms": {"v": {"1.0": 1000.0, "0.25": 300.0}},
                        "rps": {"clip": {"64": {"1.0": 5.0, "0.25": 12.5}}},
                        "decode": {"1": {r: {"rps": 1.0, "latency_ms": 200.0, "ttft_ms": 50.0, "tpot_ms": 1.0}
                                         for r in ("1.0", "0.25")}}},
        "ttft_vanilla_32.json": ttft(null=0.3), "ttft_mmgvid_32.json": ttft(**{"1.0": 0.303, "0.25": 0.1}),
        "ttft_vanilla_64.json": ttft(null=0.6), "ttft_mmgvid_64.json": ttft(**{"1.0": 0.6, "0.25": 0.15}),
        "prune_idle.json": {"pruning_gpu_idle_ms": {"32": {"0.25": 0.4}}},
    }
    for name, doc in files.items():
        (tmp_path / name).write_text(json.dumps(doc))
    doc = headline(tmp_path, "test card", "0.26.0")
    assert doc["baseline"] == "vanilla vLLM 0.26.0" and doc["device"] == "test card"
    assert doc["vs_vanilla"]["ttft_speedup"] == {"1.0": 0.99, "0.25": 3.0}
    assert doc["vs_vanilla"]["retention_1_overhead_pct"] == 1.0
    assert doc["vs_vanilla"]["throughput_ratio"] == {"64": {"1.0": 1.0, "0.25": 2.5}}
    assert doc["llava_video_64"]["llm_prefill_speedup"] == {"1.0": 1.0, "0.25": 4.0}
    assert doc["long_video"]["v"]["ttft_speedup"] == {"1.0": 0.9, "0.25": 3.0}
    assert doc["decode"]["by_concurrency"]["1"]["tpot_speedup"] == {"1.0": 2.0, "0.25": 2.0}
    assert doc["pruning_gpu_idle_ms"] == {"32": {"0.25": 0.4}}
    assert "| concurrency 64 | 1.00x | 2.50x |" in table(doc)
    assert doc["long_video"]["v"]["run"] == tmp_path.as_posix()
    earlier = {"long_video": {"v": {"old": 1}, "w": {"old": 2}}, "long_video_throughput": {}, "device": "old card"}
    merged = updated(earlier, doc)
    assert merged["long_video"]["w"] == {"old": 2} and merged["long_video"]["v"] == doc["long_video"]["v"]
    assert merged["device"] == "test card"


def test_steady_rps_leaves_out_the_ramp_up_and_the_drain():
    from benchmarks.gpu.long_video import steady_rps

    # concurrency 2, 7 requests: the 2nd completion at 1.0 s, the 5th at 4.0 s -> 3 completions in 3 s
    done = [0.5, 1.0, 2.0, 3.0, 4.0, 9.0, 9.5]
    assert steady_rps(done[::-1], 2) == 1.0
    assert steady_rps(done[:5], 2) is None  # under 3 x concurrency: no steady window
