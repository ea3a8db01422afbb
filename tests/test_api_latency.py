"""benchmarks/api_latency.py offline mode: real vLLM processors for the tiny model, short video."""

import json
import subprocess
import sys
from pathlib import Path

from mmgvid_vllm.pruning import num_kept
from mmgvid_vllm.tiny_model import ensure_tiny_model

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 4


def test_offline_mode_times_vanilla_and_plugin(tmp_path):
    ensure_tiny_model()
    out = tmp_path / "latency.json"
    cmd = [sys.executable, "-m", "benchmarks.api_latency", "--frames", str(FRAMES), "--repeats", "1", "--warmup", "0",
           "--retentions", "1.0", "0.25", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| vanilla |" in proc.stdout

    result = json.loads(out.read_text())["offline"]
    tokens = result["prompt_tokens"]
    assert tokens["plugin r=1"] == tokens["vanilla"]  # pruning off = vanilla prompt
    pruned_away = FRAMES * 196 - num_kept(FRAMES, 196, 0.25)
    assert tokens["plugin r=0.25"] == tokens["vanilla"] - pruned_away
    for stages in result["summary_ms"].values():
        assert {"decode", "hf_call", "apply", "apply:apply_hf_processor"} <= stages.keys()
        assert all(ms >= 0 for key, ms in stages.items() if key != "apply-hf_call")
