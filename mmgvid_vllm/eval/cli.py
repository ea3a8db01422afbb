"""``mmgvid eval``: multiple-choice video accuracy of a running server at several retentions."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..cli import retention_arg

__all__ = ["eval_main"]

EPILOG = """\
Each sample's video is sampled like LLaVA-OneVision's reference (lmms-eval):
np.linspace(0, n-1, NUM_FRAMES, dtype=int) over all n frames; those frames are
re-encoded into one mp4 and sent as ONE base64 `video_url` part, so the server
runs its video path (and MMG-Vid pruning) on exactly those frames. Decoding is
greedy (temperature 0). Each --retention value is sent per request as
  "mm_processor_kwargs": {"mmgvid_retention": R}
(1.0 = unpruned); the server needs --trust-request-mm-kwargs on vLLM >= 0.30
(`mmgvid serve` adds it). The first option letter of each answer is parsed
(lmms-eval style); no answer counts as wrong.

task format (JSONL, one sample per line; a directory = all its *.jsonl):
  {"video": "v/abc.mp4", "question": "...", "options": ["A. ...", "B. ..."], "answer": "B"}
  optional "id", "category"; relative paths are resolved against --video-root
  or the JSONL's directory. Converters from lmms-eval dataset rows (VideoMME,
  MVBench, MLVU, LongVideoBench): python -m mmgvid_vllm.eval.convert --help

output: a Markdown table (stdout and OUT with .md) and JSON (--out) with the
summary per retention (accuracy, %% of the unpruned accuracy, mean prompt
tokens) and every request (response, parsed letter, prompt_tokens, frames).

examples:
  mmgvid serve llava-onevision &            # on a GPU
  mmgvid eval videomme.jsonl --retention 1.0 0.25 0.15 --out results/videomme.json
  mmgvid eval tasks/mvbench/ --max-samples 200 --concurrency 16 --server http://gpu:8000
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmgvid eval",
        description="Evaluate an OpenAI-compatible vLLM server (LLaVA-OneVision + MMG-Vid) on a "
        "multiple-choice video task at one or more token retentions (the paper's Table 3).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", help="task JSONL file or directory of *.jsonl files")
    p.add_argument("--server", default=os.environ.get("MMGVID_EVAL_SERVER", "http://127.0.0.1:8000"),
                   help="server URL, with or without /v1 (default: %(default)s)")
    p.add_argument("--model", help="model name in requests (default: the server's first model)")
    p.add_argument("--retention", type=retention_arg, nargs="+", default=[1.0], metavar="R",
                   help="retention(s) to evaluate, each a full run (default: 1.0)")
    p.add_argument("--num-frames", type=int, default=32, help="frames sampled per video (default: 32)")
    p.add_argument("--max-tokens", type=int, default=8, help="max generated tokens (default: 8)")
    p.add_argument("--max-samples", type=int, help="evaluate only the first N samples")
    p.add_argument("--concurrency", "-c", type=int, default=4, help="requests in flight (default: 4)")
    p.add_argument("--video-root", help="directory that relative video paths are resolved against")
    p.add_argument("--max-side", type=int,
                   help="downscale sampled frames so the longer side is at most this (smaller uploads; "
                   "default: keep the source size)")
    p.add_argument("--timeout", type=float, default=600.0, help="per-request timeout in s (default: 600)")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="bearer token (default: $OPENAI_API_KEY)")
    p.add_argument("--out", "-o", help="write the JSON here (and the Markdown next to it, .md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def eval_main(argv: Sequence[str]) -> int:
    ns = build_parser().parse_args(list(argv))
    from .runner import EvalConfig, run_eval
    from .tasks import load_task

    samples = load_task(ns.task, ns.video_root)
    if ns.max_samples is not None:
        samples = samples[: ns.max_samples]
    if not samples:
        print("mmgvid eval: no samples", file=sys.stderr)
        return 2
    cfg = EvalConfig(
        server=ns.server,
        model=ns.model,
        retentions=list(dict.fromkeys(ns.retention)),
        num_frames=ns.num_frames,
        max_tokens=ns.max_tokens,
        concurrency=ns.concurrency,
        max_side=ns.max_side,
        timeout=ns.timeout,
        api_key=ns.api_key,
        progress=not ns.no_progress,
    )
    result = run_eval(samples, cfg, ns.out, task_name=Path(ns.task).stem)
    print(result["markdown"], end="")
    if ns.out:
        print(f"\nwrote {ns.out} and {Path(ns.out).with_suffix('.md')}", file=sys.stderr)
    errors = sum(x["errors"] for x in result["summary"])
    if errors == len(result["samples"]):
        print("mmgvid eval: every request failed", file=sys.stderr)
        return 1
    return 0
