"""Tensor parallelism on the CPU: a real vLLM server with ``--tensor-parallel-size 2`` (two CPU
worker processes, one core each) and the plugin at 0.25. Every rank runs the vision tower and the
pruning on its own copy of the features; they must keep the same tokens (checked with the per-rank
log, ``MMGVID_KEPT_LOG_DIR``, and benchmarks/gpu/check_tp_ranks.py, which the GPU run uses too), and
the pruning metrics must count each video once, not once per rank.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers.plugin import plugin_server_args, post_chat, video_body
from prometheus_client.parser import text_string_to_metric_families

from mmgvid_vllm.launcher import VllmServer
from mmgvid_vllm.media import data_url, make_video_bytes
from mmgvid_vllm.pruning import num_kept
from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model

pytestmark = pytest.mark.server

CHECK = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu" / "check_tp_ranks.py"
# (frames, retention, method) per request; distinct seeded videos, some sent twice at once
REQUESTS = [(4, 0.25, "mmgvid"), (8, 0.25, "mmgvid"), (4, 0.25, "mmgvid"), (6, 0.15, "mmgvid"),
            (4, 0.25, "evs"), (5, 0.25, "uniform"), (8, 0.25, "mmgvid"), (3, 0.5, "mmgvid")]


@pytest.fixture(scope="module")
def tp_server(tmp_path_factory):
    kept = tmp_path_factory.mktemp("kept")
    # vLLM's CPU workers bind their threads per NUMA node; a one-node machine needs them named.
    # Its memory check wants 92% of the node free per worker: a small share and a fixed KV cache.
    args = plugin_server_args("--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.3")
    args[args.index("--kv-cache-memory-bytes") + 1] = "64M"
    env = {"VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": "0.25", "MMGVID_KEPT_LOG_DIR": str(kept),
           "VLLM_CPU_OMP_THREADS_BIND": "0|1"}
    with VllmServer(ensure_tiny_model(), extra_args=args, env=env) as server:
        yield server, kept


def send(server, seed: int, frames: int, retention: float, method: str) -> requests.Response:
    url = data_url(make_video_bytes(frames, 64, 64, seed=seed))
    return post_chat(server, video_body(url, {"mmgvid_retention": retention, "mmgvid_method": method}, max_tokens=3))


def test_every_rank_keeps_the_same_tokens_and_each_video_counts_once(tp_server, tmp_path):
    server, kept = tp_server
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda job: send(server, *job), [(i, *r) for i, r in enumerate(REQUESTS)]))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    text_tokens = {r.json()["usage"]["prompt_tokens"] - num_kept(frames, FRAME_TOKENS, retention)
                   for (frames, retention, _), r in zip(REQUESTS, answers)}
    assert len(text_tokens) == 1, text_tokens  # every prompt = the same text + its pruned video

    result = subprocess.run([sys.executable, str(CHECK), str(kept), "--ranks", "2", "--retention", "0.25",
                             "--min-videos", "6", "--out", str(tmp_path / "ranks.json")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "ranks.json").read_text())
    assert report["lines"] == {"rank0": len(REQUESTS), "rank1": len(REQUESTS)} and not report["mismatches"]

    text = requests.get(server.url + "/metrics", timeout=30).text
    counts = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "mmgvid_pruning_duration_seconds_count":
                counts[s.labels["method"]] = counts.get(s.labels["method"], 0) + s.value
    assert counts == {"mmgvid": 6, "evs": 1, "uniform": 1}, counts  # once per video, not once per rank
