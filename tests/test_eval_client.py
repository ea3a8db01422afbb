"""``mmgvid eval`` end to end against the tiny CPU server with the MMG-Vid plugin."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.plugin import expected_prompt_tokens, jpeg_frames_url, plugin_server_args, post_chat
from helpers.server import VllmServer
from helpers.video import make_video_bytes
from mmgvid_vllm.eval import build_prompt, request_body
from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model

pytestmark = pytest.mark.server

QUESTION = "Which shape moves the most in this video?"
OPTIONS = ["A. the red box", "B. the green box", "C. the blue box", "D. nothing moves"]
NUM_SAMPLES = 4
SOURCE_FRAMES = 40


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-task")
    (root / "videos").mkdir()
    with open(root / "synthetic.jsonl", "w") as f:
        for i in range(NUM_SAMPLES):
            (root / "videos" / f"v{i}.mp4").write_bytes(make_video_bytes(SOURCE_FRAMES, 96, 96, seed=i))
            f.write(json.dumps({"video": f"videos/v{i}.mp4", "question": QUESTION, "options": OPTIONS,
                                "answer": "ABCD"[i], "id": f"s{i}"}) + "\n")
    return root


@pytest.fixture(scope="module")
def server():
    with VllmServer(ensure_tiny_model(), extra_args=plugin_server_args(), env={"VLLM_PLUGINS": "mmgvid"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def text_tokens(server) -> int:
    """Prompt tokens of the eval prompt besides one video's placeholders (from a 1-frame video)."""
    body = request_body(server.model, jpeg_frames_url(1, 96, 96), build_prompt(QUESTION, OPTIONS), 1.0, 1)
    r = post_chat(server, body)
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens"] - (FRAME_TOKENS + 1)


def test_eval_end_to_end(server, task, text_tokens, tmp_path):
    out = tmp_path / "res.json"
    cmd = [sys.executable, "-m", "mmgvid_vllm.cli", "eval", str(task), "--server", server.url,
           "--retention", "1.0", "0.25", "--concurrency", "2", "--max-tokens", "4", "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr + server.log_tail(30)
    assert "| Retention |" in p.stdout and "| 0.25 |" in p.stdout
    assert out.with_suffix(".md").read_text() in p.stdout

    res = json.loads(out.read_text())
    assert res["num_frames"] == 32 and res["num_samples"] == NUM_SAMPLES
    recs = res["samples"]
    assert len(recs) == 2 * NUM_SAMPLES
    unpruned = text_tokens + 32 * FRAME_TOKENS + 1
    for rec in recs:
        assert rec["error"] is None, rec
        assert isinstance(rec["response"], str)
        assert rec["pred"] is None or rec["pred"] in "ABCD"
        assert rec["correct"] == (rec["pred"] == rec["answer"])
        assert rec["frames_sent"] == 32 and rec["source_frames"] == SOURCE_FRAMES
        if rec["retention"] == 1.0:
            assert rec["prompt_tokens"] == unpruned, rec
        else:
            assert rec["prompt_tokens"] == expected_prompt_tokens(unpruned, 32, 0.25) < unpruned, rec
    assert {(r["id"], r["retention"]) for r in recs} == {(f"s{i}", r) for i in range(NUM_SAMPLES) for r in (1.0, 0.25)}

    summary = {row["retention"]: row for row in res["summary"]}
    assert set(summary) == {1.0, 0.25}
    for row in summary.values():
        assert row["n"] == NUM_SAMPLES and row["errors"] == 0
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["relative_to_unpruned"] is None or row["relative_to_unpruned"] >= 0.0
    assert summary[1.0]["mean_prompt_tokens"] == unpruned
