"""Task format of ``mmgvid eval`` and converters from lmms-eval's dataset rows.

A task is a JSONL file (or a directory of ``*.jsonl`` files) with one
multiple-choice sample per line::

    {"video": "videos/abc.mp4", "question": "What is the man doing?",
     "options": ["A. running", "B. cooking", "C. sleeping", "D. reading"],
     "answer": "B", "id": "abc-1", "category": "action"}

``video`` is resolved against ``--video-root`` or, by default, the JSONL
file's directory. ``id`` and ``category`` are optional (a directory of several
files uses each file's stem as the default category).

Mapping from the lmms-eval datasets (HF rows -> this format):

============== ====================================== ==================================== ===================================
lmms-eval task video                                  options                              answer
============== ====================================== ==================================== ===================================
videomme       ``{videoID}.mp4`` (lmms-eval: data/)   ``options`` (already "A. ...")       ``answer`` (a letter)
mvbench_*      ``{subtask video dir}/{video}``        ``candidates`` -> "A. cand", ...     ``answer`` is the candidate's text
mlvu_dev       ``{video_name}`` (under video/)        ``candidates`` -> letters            ``answer`` is the candidate's text
longvideobench ``{video_path}`` (under videos/)       ``candidates`` -> letters            ``correct_choice`` (index)
============== ====================================== ==================================== ===================================
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    "Sample",
    "load_task",
    "write_jsonl",
    "lettered",
    "from_videomme",
    "from_mvbench",
    "from_mlvu",
    "from_longvideobench",
    "CONVERTERS",
]

LETTERS = string.ascii_uppercase


@dataclass
class Sample:
    video: str
    question: str
    options: list[str]
    answer: str
    id: str = ""
    category: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return d


def lettered(candidates: Iterable[str]) -> list[str]:
    """``["x", "y"]`` -> ``["A. x", "B. y"]``."""
    return [f"{LETTERS[i]}. {str(c).strip()}" for i, c in enumerate(candidates)]


def _letter_of(candidates: list[str], answer: Any) -> str:
    if isinstance(answer, int) and not isinstance(answer, bool):
        return LETTERS[answer]
    text = str(answer).strip()
    stripped = [str(c).strip() for c in candidates]
    if text in stripped:
        return LETTERS[stripped.index(text)]
    if len(text) == 1 and text.upper() in LETTERS[: len(candidates)]:
        return text.upper()
    raise ValueError(f"answer {answer!r} is not one of the candidates {candidates!r}")


def _join(root: str | Path | None, name: str) -> str:
    return str(Path(root) / name) if root else str(name)


def from_videomme(row: Mapping[str, Any], video_root: str | Path | None = None, ext: str = ".mp4") -> Sample:
    """lmms-eval ``videomme`` (lmms-lab/Video-MME): ``videoID``, ``question``, ``options``, ``answer``."""
    options = [str(o).strip() for o in row["options"]]
    if options and not (len(options[0]) > 1 and options[0][0] in LETTERS and options[0][1] in ".)"):
        options = lettered(options)
    return Sample(
        video=_join(video_root, f"{row['videoID']}{ext}"),
        question=str(row["question"]).strip(),
        options=options,
        answer=str(row["answer"]).strip().upper()[:1],
        id=str(row.get("question_id", row["videoID"])),
        category=str(row.get("duration", "") or row.get("task_type", "")),
    )


def from_mvbench(row: Mapping[str, Any], video_root: str | Path | None = None, category: str = "") -> Sample:
    """lmms-eval ``mvbench_<subtask>`` (OpenGVLab/MVBench): ``video``, ``question``, ``candidates``, ``answer`` (text).

    ``video_root`` is the subtask's video directory (lmms-eval's per-subtask
    ``data_prefix``, e.g. ``video/star/Charades_v1_480``). Frame-folder subtasks
    (e.g. ``fine_grained_action``) must be turned into video files first.
    """
    return _from_candidates(row, _join(video_root, str(row["video"])), str(row.get("id", row["video"])), category)


def from_mlvu(row: Mapping[str, Any], video_root: str | Path | None = None) -> Sample:
    """lmms-eval ``mlvu_dev`` (sy1998/MLVU_dev): ``video_name``, ``question``, ``candidates``, ``answer`` (text), ``task_type``."""
    sample_id = str(row.get("question_id", row["video_name"]))
    return _from_candidates(row, _join(video_root, str(row["video_name"])), sample_id, str(row.get("task_type", "")))


def _from_candidates(row: Mapping[str, Any], video: str, sample_id: str, category: str) -> Sample:
    """A sample from a row with ``question``, ``candidates`` and ``answer`` (the answer's text)."""
    candidates = list(row["candidates"])
    return Sample(
        video=video,
        question=str(row["question"]).strip(),
        options=lettered(candidates),
        answer=_letter_of(candidates, row["answer"]),
        id=sample_id,
        category=category,
    )


def from_longvideobench(row: Mapping[str, Any], video_root: str | Path | None = None) -> Sample:
    """lmms-eval ``longvideobench_val_v`` (longvideobench/LongVideoBench): ``video_path``, ``question``,
    ``candidates``, ``correct_choice`` (index). Subtitles (the ``_i`` variant) are not used."""
    candidates = list(row["candidates"])
    return Sample(
        video=_join(video_root, str(row["video_path"])),
        question=str(row["question"]).strip(),
        options=lettered(candidates),
        answer=_letter_of(candidates, int(row["correct_choice"])),
        id=str(row.get("id", row["video_path"])),
        category=str(row.get("duration_group", "") or row.get("question_category", "")),
    )


CONVERTERS = {
    "videomme": from_videomme,
    "mvbench": from_mvbench,
    "mlvu": from_mlvu,
    "longvideobench": from_longvideobench,
}


def _check(sample: Sample, where: str) -> Sample:
    if not sample.options:
        raise ValueError(f"{where}: no options")
    letters = LETTERS[: len(sample.options)]
    if sample.answer not in letters:
        raise ValueError(f"{where}: answer {sample.answer!r} not among option letters {letters}")
    return sample


def _read_jsonl(path: Path, video_root: str | Path | None, category: str) -> list[Sample]:
    root = Path(video_root) if video_root else path.parent
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            known = {"video", "question", "options", "answer", "id", "category"}
            video = Path(str(d["video"]))
            s = Sample(
                video=str(video if video.is_absolute() else root / video),
                question=str(d["question"]),
                options=[str(o) for o in d["options"]],
                answer=str(d["answer"]).strip().upper(),
                id=str(d.get("id") or f"{path.stem}-{lineno}"),
                category=str(d.get("category") or category),
                extra={k: v for k, v in d.items() if k not in known},
            )
            out.append(_check(s, f"{path}:{lineno}"))
    return out


def load_task(path: str | Path, video_root: str | Path | None = None) -> list[Sample]:
    """Samples of a JSONL file, or of every ``*.jsonl`` in a directory (sorted; category = file stem)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"no *.jsonl files in {path}")
        samples: list[Sample] = []
        for f in files:
            samples.extend(_read_jsonl(f, video_root, f.stem if len(files) > 1 else ""))
        return samples
    return _read_jsonl(path, video_root, "")


def write_jsonl(samples: Iterable[Sample], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s.to_json(), ensure_ascii=False) + "\n")
