"""lmms-eval's ``--model mmgvid`` end to end against the tiny CPU server with the plugin.

A local task (videos made here, a JSON dataset, a task YAML through ``--include_path``), run by
lmms-eval 0.7.3 from its own environment (``.venv-eval``, made by ``scripts/setup-cpu.sh``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers.plugin import plugin_server_args

from mmgvid_vllm.client import metric_sum, metrics_text
from mmgvid_vllm.launcher import VllmServer
from mmgvid_vllm.media import make_video_bytes
from mmgvid_vllm.pruning import num_kept
from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model

pytestmark = pytest.mark.server

LMMS_EVAL_PYTHON = Path(__file__).resolve().parents[1] / ".venv-eval" / "bin" / "python"
NUM_SAMPLES = 3
SOURCE_FRAMES = 40  # more than the 32 the model samples: a cut video would show in the token count

TASK_YAML = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: video
doc_to_text: "{{{{question}}}}\\nAnswer with the option's letter from the given choices directly."
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 2
  temperature: 0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def write_task(root: Path, task: str, videos: list[Path]) -> None:
    data = root / f"{task}.json"
    data.write_text(json.dumps([
        {"video": str(v), "question": "Which shape moves?\nA. red\nB. green\nC. blue", "answer": "ABC"[i % 3]}
        for i, v in enumerate(videos)]))
    (root / "tasks" / f"{task}.yaml").write_text(TASK_YAML.format(task=task, data=data))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    if not LMMS_EVAL_PYTHON.exists():
        pytest.skip(f"no {LMMS_EVAL_PYTHON}: bash scripts/setup-cpu.sh makes it")
    root = tmp_path_factory.mktemp("lmms-eval")
    (root / "media").mkdir()
    (root / "tasks").mkdir()
    videos = []
    for i in range(NUM_SAMPLES + 1):
        videos.append(root / "media" / f"v{i}.mp4")
        videos[-1].write_bytes(make_video_bytes(SOURCE_FRAMES, 96, 96, seed=i))
    write_task(root, "mmgvid_local", videos[:NUM_SAMPLES])
    outside = root / "outside.mp4"  # not under the server's --allowed-local-media-path
    outside.write_bytes(videos[-1].read_bytes())
    write_task(root, "mmgvid_local_outside", [outside])
    return root


@pytest.fixture(scope="module")
def server(workdir):
    args = plugin_server_args("--allowed-local-media-path", str(workdir / "media"))
    with VllmServer(ensure_tiny_model(), extra_args=args, env={"VLLM_PLUGINS": "mmgvid"}) as srv:
        yield srv


def lmms_eval(workdir: Path, task: str, model_args: str) -> subprocess.CompletedProcess:
    cmd = [str(LMMS_EVAL_PYTHON), "-m", "lmms_eval", "--model", "mmgvid", "--model_args", model_args,
           "--tasks", task, "--include_path", str(workdir / "tasks"), "--batch_size", "1",
           "--output_path", str(workdir / "out" / task)]
    env = {**os.environ, "HF_HOME": str(workdir / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=workdir)


def test_lmms_eval_one_video_per_sample_all_frames_per_run_retention(server, workdir):
    before = metrics_text(server.url)
    run = lmms_eval(workdir, "mmgvid_local", f"base_url={server.base_url},retention=0.25,num_concurrent=2")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:] + server.log_tail(30)
    assert "exact_match" in run.stdout  # lmms-eval's results table
    after = metrics_text(server.url)

    def added(name: str) -> float:
        return metric_sum(after, name) - metric_sum(before, name)

    assert added("mmgvid_api_processed_videos_total") == NUM_SAMPLES  # one video per sample
    assert added("mmgvid_video_original_tokens_total") == NUM_SAMPLES * 32 * FRAME_TOKENS  # all 32 frames
    assert added("mmgvid_video_kept_tokens_total") == NUM_SAMPLES * num_kept(32, FRAME_TOKENS, 0.25)


def test_lmms_eval_stops_on_an_http_error(server, workdir):
    run = lmms_eval(workdir, "mmgvid_local_outside", f"base_url={server.base_url}")
    assert run.returncode != 0, run.stdout[-3000:]
    assert "lmms-eval --model mmgvid: HTTP 400" in run.stderr, run.stderr[-5000:]
    assert "exact_match" not in run.stdout  # no accuracy table
