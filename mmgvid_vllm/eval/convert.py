"""Convert lmms-eval dataset rows to the ``mmgvid eval`` JSONL task format.

    python -m mmgvid_vllm.eval.convert videomme rows.parquet videomme.jsonl --video-root /data/videomme/data

ROWS is a .jsonl, .json (list) or .parquet (needs pandas) export of the HF
dataset split, e.g. ``datasets.load_dataset("lmms-lab/Video-MME", split="test").to_json("rows.jsonl")``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .tasks import CONVERTERS, write_jsonl


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict(orient="records")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmgvid_vllm.eval.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("format", choices=sorted(CONVERTERS))
    p.add_argument("rows", help="dataset rows: .jsonl, .json or .parquet")
    p.add_argument("out", help="output task JSONL")
    p.add_argument("--video-root", help="directory holding the videos (prefixed to each row's video name)")
    p.add_argument("--category", default="", help="category for every sample (MVBench: the subtask)")
    ns = p.parse_args(argv)
    conv = CONVERTERS[ns.format]
    kw = {"category": ns.category} if ns.format == "mvbench" else {}
    samples = [conv(row, ns.video_root, **kw) for row in read_rows(ns.rows)]
    if ns.category and ns.format != "mvbench":
        for s in samples:
            s.category = ns.category
    write_jsonl(samples, ns.out)
    print(f"wrote {len(samples)} samples to {ns.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
