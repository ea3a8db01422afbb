"""benchmarks/gpu/profile_prefill.py's trace arithmetic (the GPU run itself needs CUDA)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu" / "profile_prefill.py"
spec = importlib.util.spec_from_file_location("profile_prefill", SCRIPT)
profile_prefill = importlib.util.module_from_spec(spec)
spec.loader.exec_module(profile_prefill)


def _kernel(name: str, ts: float, dur: float) -> dict:
    return {"name": name, "ts": ts, "dur": dur, "cat": "kernel", "ph": "X"}


def test_bursts_split_on_long_idle_and_summary_counts_overlaps_once():
    gpu = [_kernel("a", 0, 1000), _kernel("b", 500, 1000), _kernel("c", 3000, 2000), _kernel("d", 400_000, 6000)]
    first, second = profile_prefill.bursts(gpu)
    assert [e["name"] for e in first] == ["a", "b", "c"] and [e["name"] for e in second] == ["d"]

    sync = {"name": "cudaStreamSynchronize", "ts": 1600, "dur": 1300, "cat": "cuda_runtime"}
    late = {"name": "cudaMemcpy", "ts": 9000, "dur": 50, "cat": "cuda_runtime"}  # after the burst
    summary = profile_prefill.summarize(first, [sync, late], top=5)
    assert (summary["span_ms"], summary["busy_ms"], summary["idle_ms"]) == (5.0, 3.5, 1.5)
    assert summary["largest_gaps"] == [{"at_ms": 1.5, "ms": 1.5, "after": "b", "before": "c"}]
    assert summary["blocking_calls"] == [{"at_ms": 1.6, "ms": 1.3, "call": "cudaStreamSynchronize"}]
    assert summary["top_kernels_ms"] == {"c": 2.0, "a": 1.0, "b": 1.0}
