"""Fast unit tests of ``mmgvid eval``: answer parsing, converters, task loading, frame sampling, summary."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from helpers.video import make_video_bytes, make_video_frames
from mmgvid_vllm.cli import main as cli_main
from mmgvid_vllm.eval import (
    build_prompt,
    from_longvideobench,
    from_mlvu,
    from_mvbench,
    from_videomme,
    load_task,
    markdown_table,
    parse_answer,
    request_body,
    sample_indices,
    sample_video,
    summarize,
)


@pytest.mark.parametrize(
    "text,want",
    [
        ("B", "B"),
        ("b", "B"),
        ("B.", "B"),
        ("(C)", "C"),
        ("C) cooking", "C"),
        ("D. reading a book", "D"),
        ("Answer: B", "B"),
        ("The answer is (C).", "C"),
        ("The best answer is D", "D"),
        ("A", "A"),
        ("A.", "A"),
        ("A man is cooking, so B", "B"),
        ("Because of the dog", None),
        ("", None),
        (None, None),
        ("E", None),  # only 4 options
        ("nothing here", None),
    ],
)
def test_parse_answer(text, want):
    assert parse_answer(text, 4) == want


def test_prompt_has_lmms_eval_post_prompt():
    p = build_prompt("What happens?", ["A. x", "B. y"])
    assert p.splitlines()[1:] == ["What happens?", "A. x", "B. y",
                                  "Answer with the option's letter from the given choices directly."]


def test_request_body_is_one_video_url_with_retention():
    body = request_body("m", "data:video/mp4;base64,AA", "q", 0.25, 8)
    content = body["messages"][0]["content"]
    assert [c["type"] for c in content] == ["video_url", "text"]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 8
    assert body["mm_processor_kwargs"] == {"mmgvid_retention": 0.25}


def test_converters():
    s = from_videomme(
        {"videoID": "fFjv93ACGo8", "question": "Q?", "options": ["A. a", "B. b", "C. c", "D. d"], "answer": "C",
         "question_id": "001-1", "duration": "short"},
        "/data/videomme",
    )
    assert (s.video, s.options[2], s.answer, s.id, s.category) == ("/data/videomme/fFjv93ACGo8.mp4", "C. c", "C", "001-1", "short")

    s = from_mvbench({"video": "x.mp4", "question": "Q?", "candidates": ["up", "down", "left"], "answer": "down"},
                     "/mv/star", category="action_sequence")
    assert (s.video, s.options, s.answer, s.category) == ("/mv/star/x.mp4", ["A. up", "B. down", "C. left"], "B", "action_sequence")
    with pytest.raises(ValueError):
        from_mvbench({"video": "x.mp4", "question": "Q?", "candidates": ["up"], "answer": "sideways"})

    s = from_mlvu({"video_name": "1.mp4", "question": "Q?", "candidates": ["a", "b"], "answer": "b", "task_type": "plotQA"}, "v")
    assert (s.video, s.answer, s.category) == ("v/1.mp4", "B", "plotQA")

    s = from_longvideobench({"video_path": "k.mp4", "question": "Q?", "candidates": ["a", "b", "c", "d", "e"],
                             "correct_choice": 4, "id": "k_0"})
    assert (s.video, s.options[4], s.answer, s.id) == ("k.mp4", "E. e", "E", "k_0")


def test_load_task_resolves_paths_and_checks_answers(tmp_path):
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"video": "v/a.mp4", "question": "Q", "options": ["A. x", "B. y"], "answer": "b"}) + "\n\n"
        + json.dumps({"video": "/abs/b.mp4", "question": "Q", "options": ["A. x", "B. y"], "answer": "A", "id": "b"}) + "\n"
    )
    s = load_task(tmp_path / "t.jsonl")
    assert [x.video for x in s] == [str(tmp_path / "v/a.mp4"), "/abs/b.mp4"]
    assert [x.answer for x in s] == ["B", "A"] and s[1].id == "b"
    assert load_task(tmp_path)[0].video == s[0].video  # directory
    (tmp_path / "bad.jsonl").write_text(json.dumps({"video": "a", "question": "Q", "options": ["A. x"], "answer": "C"}))
    with pytest.raises(ValueError):
        load_task(tmp_path / "bad.jsonl")


def test_sample_indices_like_llava_onevision():
    assert sample_indices(40).tolist() == np.linspace(0, 39, 32, dtype=int).tolist()
    assert sample_indices(40)[[0, -1]].tolist() == [0, 39]
    assert len(sample_indices(10)) == 32  # shorter videos repeat frames


def _decode(mp4: bytes) -> np.ndarray:
    import io

    with av.open(io.BytesIO(mp4)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_sample_video_reencodes_exactly_the_sampled_frames(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(make_video_bytes(40, 96, 96, seed=3))
    sv = sample_video(str(path))
    assert sv.source_frames == 40 and sv.num_frames == 32
    assert sv.indices == np.linspace(0, 39, 32, dtype=int).tolist()
    got = _decode(sv.mp4)
    assert got.shape == (32, 96, 96, 3)
    src = make_video_frames(40, 96, 96, seed=3)[sv.indices].astype(np.float32)
    err = np.abs(got.astype(np.float32) - src).mean(axis=(1, 2, 3))
    assert err.max() < 12  # lossy twice, but frame by frame the same images (wrong frames differ far more)
    wrong = np.abs(got[1:].astype(np.float32) - src[:-1]).mean(axis=(1, 2, 3))
    assert (wrong > err[1:]).all()


def test_summary_and_markdown():
    recs = [
        {"retention": r, "correct": c, "pred": "A", "error": None, "prompt_tokens": t, "category": ""}
        for r, c, t in [(1.0, True, 100), (1.0, True, 100), (0.25, True, 40), (0.25, False, 40)]
    ]
    rows = summarize(recs, [1.0, 0.25])
    assert [x["accuracy"] for x in rows] == [1.0, 0.5]
    assert [x["relative_to_unpruned"] for x in rows] == [1.0, 0.5]
    md = markdown_table(rows)
    assert "| 0.25 | 50.0 | 50.0 | 40 |" in md


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["eval", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--retention" in out and "mmgvid_retention" in out and "linspace" in out


def test_convert_cli(tmp_path):
    from mmgvid_vllm.eval.convert import main as convert_main

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"videoID": "abc", "question": "Q?", "options": ["A. a", "B. b"], "answer": "B"}) + "\n")
    assert convert_main(["videomme", str(rows), str(tmp_path / "t.jsonl"), "--video-root", "/d"]) == 0
    (s,) = load_task(tmp_path / "t.jsonl")
    assert (s.video, s.options, s.answer) == ("/d/abc.mp4", ["A. a", "B. b"], "B")
