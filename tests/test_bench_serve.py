"""``vllm bench serve`` against ``mmgvid serve`` on the CPU, with our inputs (``mmgvid bench``).

One server with ``mmgvid serve``'s environment for the tiny model, caches off and
``--allowed-local-media-path`` on the corpus; ``vllm bench serve`` (through ``mmgvid vllm-cli``)
sends the ShareGPT file of a corpus video at retention 1.0 and 0.25 (``--extra-body``): every
request succeeds and the pruned prompts are shorter by exactly the pruned tokens. The sweep's
parameters are checked through ``vllm bench sweep serve --dry-run`` (no server).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmgvid_vllm.bench import cache_problems
from mmgvid_vllm.cli import build_serve_command
from mmgvid_vllm.corpus import corpus_dir
from mmgvid_vllm.launcher import CPU_DEFAULT_ARGS, VllmServer
from mmgvid_vllm.pruning import num_kept
from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model

VIDEO = "h264_480p_10s"  # 10 s at 30 fps: vLLM samples 32 frames
PROMPTS = 2
CACHES_OFF = ("--no-enable-prefix-caching", "--mm-processor-cache-gb", "0")


def mmgvid(*args: str, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mmgvid_vllm.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "videos.json"
    mmgvid("bench", "dataset", str(path), "--videos", VIDEO)
    return path


@pytest.fixture(scope="module")
def server(dataset):
    _, env = build_serve_command("tiny", [], environ={}, cuda=False)  # `mmgvid serve`'s environment
    args = [*CPU_DEFAULT_ARGS, *CACHES_OFF, "--allowed-local-media-path", str(corpus_dir())]
    with VllmServer(ensure_tiny_model(), extra_args=args, env=env) as srv:
        yield srv


def bench_serve(server, dataset, retention: float) -> dict:
    out = dataset.parent / f"r{retention}.json"
    mmgvid("vllm-cli", "bench", "serve", "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
           "--base-url", server.url, "--model", server.model, "--dataset-name", "sharegpt",
           "--dataset-path", str(dataset), "--num-prompts", str(PROMPTS), "--sharegpt-output-len", "4",
           "--extra-body", json.dumps({"mm_processor_kwargs": {"mmgvid_retention": retention}}),
           "--metadata", f"retention={retention}", "--save-result", "--result-dir", str(out.parent),
           "--result-filename", out.name)
    return json.loads(out.read_text())


@pytest.mark.server
def test_bench_serve_sends_corpus_videos_per_retention(server, dataset):
    full, pruned = (bench_serve(server, dataset, r) for r in (1.0, 0.25))
    for result in (full, pruned):
        assert (result["completed"], result["failed"]) == (PROMPTS, 0), result.get("errors")
        assert result["mean_ttft_ms"] > 0
    assert pruned["retention"] == "0.25"  # --metadata, what a sweep's plot groups by
    per_video = 32 * FRAME_TOKENS - num_kept(32, FRAME_TOKENS, 0.25)
    assert full["total_input_tokens"] - pruned["total_input_tokens"] == PROMPTS * per_video
    assert mmgvid("bench", "check-caches", server.url).stderr == ""


def test_cache_problems_named():
    on = ('vllm:cache_config_info{enable_prefix_caching="True",engine="0"} 1.0\n'
          'vllm:mm_cache_queries_total{engine="0"} 3.0\n')
    off = ('vllm:cache_config_info{enable_prefix_caching="False",engine="0"} 1.0\n'
           'vllm:mm_cache_queries_total{engine="0"} 0.0\n')
    assert [p.split(":")[0] for p in cache_problems(on)] == [
        "prefix caching is on", "the multimodal processor cache is on"]
    assert cache_problems(off) == []


def test_sweep_params_reach_the_bench_commands(tmp_path):
    mmgvid("bench", "sweep-params", "params.json", "--retentions", "1.0", "0.25", "--max-concurrency", "1", "4",
           cwd=tmp_path)
    proc = mmgvid("vllm-cli", "bench", "sweep", "serve", "--serve-cmd", "mmgvid serve", "--bench-cmd",
                  "vllm bench serve --dataset-name sharegpt --dataset-path videos.json", "--after-bench-cmd", "true",
                  "--bench-params", "params.json", "--num-runs", "1", "--dry-run", "-o", "out", cwd=tmp_path)
    commands = [line for line in proc.stdout.splitlines() if line.startswith("Benchmark command:")]
    assert len(commands) == 4
    assert ("'--extra-body', '{\"mm_processor_kwargs\": {\"mmgvid_retention\": 0.25}}', '--metadata', "
            "'retention=0.25', '--max-concurrency', '4'") in commands[-1]
