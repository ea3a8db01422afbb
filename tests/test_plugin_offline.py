"""Plugin configuration, startup validation and offline ``vllm.LLM`` use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers.plugin import plugin_server_args

from mmgvid_vllm.config import PruningConfig, config_from_env, resolve_request, strip_request_keys
from mmgvid_vllm.launcher import ServerStartError, VllmServer
from mmgvid_vllm.pruning import num_kept
from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model


def test_env_defaults_and_values():
    assert config_from_env({}) == PruningConfig(1.0, "mmgvid", {})
    assert not config_from_env({"MMGVID_RETENTION": ""}).enabled
    cfg = config_from_env({"MMGVID_RETENTION": "0.25", "MMGVID_METHOD": "evs", "MMGVID_TAU": "0.9",
                           "MMGVID_LAMBDA": "0.3", "MMGVID_R_MIN": "0.05"})
    assert cfg == PruningConfig(0.25, "evs", {"tau": 0.9, "lam": 0.3, "r_min": 0.05})
    assert cfg.prune_options("evs") == {} and cfg.prune_options("mmgvid") == {"tau": 0.9, "lam": 0.3, "r_min": 0.05}


@pytest.mark.parametrize("name, value", [
    ("MMGVID_RETENTION", "abc"), ("MMGVID_RETENTION", "0"), ("MMGVID_RETENTION", "1.5"), ("MMGVID_RETENTION", "nan"),
    ("MMGVID_METHOD", "best"), ("MMGVID_TAU", "2"), ("MMGVID_LAMBDA", "-0.1"), ("MMGVID_R_MIN", "x"),
])
def test_bad_env_names_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        config_from_env({name: value})


def test_request_overrides():
    default = PruningConfig(0.25, "mmgvid", {"tau": 0.9})
    assert resolve_request({}, default) == default
    assert resolve_request({"mmgvid_retention": 1, "do_resize": True}, default) == PruningConfig(
        1.0, "mmgvid", {"tau": 0.9}
    )
    assert resolve_request({"mmgvid_method": "uniform"}, default).method == "uniform"
    for bad in ({"mmgvid_retention": 0}, {"mmgvid_retention": "0.5"}, {"mmgvid_retention": None},
                {"mmgvid_method": 3}, {"mmgvid_foo": 1}):
        with pytest.raises(ValueError, match="mmgvid_"):
            resolve_request(bad, default)
    assert strip_request_keys({"mmgvid_retention": 0.1, "mmgvid_x": 1, "num_frames": 8}) == {"num_frames": 8}


@pytest.mark.server
def test_bad_env_stops_server_at_startup():
    env = {"VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": "abc"}
    with pytest.raises(ServerStartError, match="MMGVID_RETENTION='abc' is not a number"):
        VllmServer(ensure_tiny_model(), extra_args=plugin_server_args(), env=env, startup_timeout=180).start()


# Run in a child process: vLLM's engine processes are spawned, and the plugin must be
# loaded by vLLM itself (VLLM_PLUGINS), not imported by the test.
OFFLINE_SCRIPT = """
import json, sys
import numpy as np
from vllm import LLM, SamplingParams

llm = LLM(model=sys.argv[1], enforce_eager=True, max_model_len=8192, max_num_batched_tokens=8192,
          kv_cache_memory_bytes=256 * 2**20, limit_mm_per_prompt={"video": 1, "image": 0}, seed=0)
video = np.random.default_rng(0).integers(0, 256, size=(12, 90, 160, 3), dtype=np.uint8)
prompt = "<|im_start|>user\\n<video>\\nWhat happens?<|im_end|>\\n<|im_start|>assistant\\n"
requests = [{"prompt": prompt, "multi_modal_data": {"video": video}},
            {"prompt": prompt, "multi_modal_data": {"video": video}, "mm_processor_kwargs": {"mmgvid_retention": 0.1}}]
outputs = llm.generate(requests, SamplingParams(max_tokens=4, temperature=0.0))
text_tokens = len(llm.get_tokenizer().encode(prompt)) - 1
print("RESULT", json.dumps({"text_tokens": text_tokens,
                            "prompt_tokens": [len(o.prompt_token_ids) for o in outputs],
                            "outputs": [len(o.outputs[0].token_ids) for o in outputs]}))
"""


@pytest.mark.server
def test_offline_llm_generate_numpy_video():
    env = {**os.environ, "VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": "0.25"}
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, str(ensure_tiny_model())], env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(lines[0][len("RESULT "):])
    assert result["prompt_tokens"] == [result["text_tokens"] + num_kept(12, FRAME_TOKENS, r) + 1 for r in (0.25, 0.1)]
    assert all(n >= 1 for n in result["outputs"])
