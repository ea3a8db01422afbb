"""benchmarks/gpu/profile_load.py's trace arithmetic (the GPU run itself needs CUDA)."""

from __future__ import annotations

import ast
from pathlib import Path

from benchmarks.gpu import profile_load

ROOT = Path(__file__).resolve().parents[1]


def _event(name: str, ts: float, dur: float, cat: str = "kernel") -> dict:
    return {"name": name, "ts": ts, "dur": dur, "cat": cat, "ph": "X"}


def test_steps_split_at_the_first_llm_kernel_and_count_videos_by_their_pooling():
    events = [
        _event("execute_context_2(3000)_generation_5(5)", 0, 10_000, "gpu_user_annotation"),
        _event("vision_gemm", 0, 3000), _event("upsample_bilinear2d_nhwc_out_frame", 3000, 500),
        _event("_select_kernel", 3500, 400), _event("vision_gemm", 4000, 1000),
        _event("upsample_bilinear2d_nhwc_out_frame", 5000, 500),
        _event("triton_red_fused_rms_norm_0", 6000, 1000), _event("llm_gemm", 6500, 3000),  # overlap counted once
        _event("execute_context_0(0)_generation_7(7)", 20_000, 2000, "gpu_user_annotation"),
        _event("reshape_and_cache_flash_kernel", 20_000, 1000),
    ]
    result = profile_load.analyze(events)
    first, second = result["steps"]
    assert (first["context_requests"], first["context_tokens"], first["decode_requests"]) == (2, 3000, 5)
    assert (first["videos"], first["encoder_busy_ms"], first["prune_ms"], first["llm_busy_ms"]) == (2, 5.4, 0.4, 3.5)
    assert (second["videos"], second["encoder_busy_ms"], second["llm_busy_ms"]) == (0, 0.0, 1.0)
    assert result["videos"] == 2 and result["window_ms"] == 21.0
    assert result["per_video_ms"] == {"busy_ms": 4.95, "encoder_busy_ms": 2.7, "prune_ms": 0.2, "llm_busy_ms": 2.25}
    assert result["gpu_busy_pct"] == round(100 * 9.9 / 21, 1)


def test_prune_kernels_are_the_triton_kernels_mmgvid_launches():
    launched = set()
    for module in ("token_selection_triton.py", "plan_triton.py"):
        tree = ast.parse((ROOT / "mmgvid_vllm" / "pruning" / module).read_text())
        launched |= {f.name for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.endswith("_kernel")}
    assert launched == set(profile_load.PRUNE_KERNELS)


def test_engine_queue_reads_running_and_waiting_not_the_waiting_by_reason():
    text = "\n".join([
        '# TYPE vllm:num_requests_running gauge',
        'vllm:num_requests_running{engine="0",model_name="m"} 64.0',
        'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0',
        'vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 3.0',
        'vllm:num_requests_running{engine="1",model_name="m"} 2.0',
    ])
    assert profile_load.engine_queue(text) == {"running": 66.0, "waiting": 3.0}
