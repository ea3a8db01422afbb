"""``mmgvid bench``: what ``vllm bench serve`` / ``vllm bench sweep serve`` need from us, and the
one check they cannot make.

    mmgvid bench dataset OUT.json [--videos NAME ...] [--repeat N]   # ShareGPT file of corpus videos
    mmgvid bench sweep-params OUT.json --retentions 1.0 0.25 --max-concurrency 1 4 16
    mmgvid bench check-caches URL                           # after a run: were the caches off?

``dataset`` writes the real-length corpus videos (``mmgvid_vllm.corpus``, built on first use) as
a ShareGPT JSON file, whose loader (``--dataset-name sharegpt``) sends each entry's ``video`` as a
``file://`` URL: the server needs ``--allowed-local-media-path`` on the corpus directory, printed
by the command; GuideLLM reads the same file (its ``prompt`` and ``video`` columns) and sends the
videos inline. ``sweep-params`` writes ``vllm bench sweep serve --bench-params``: every retention
(sent as ``--extra-body`` ``mm_processor_kwargs``, recorded as ``--metadata retention=R`` so that
``vllm bench sweep plot --curve-by retention`` can group by it) times every concurrency.

Pruned against unpruned is only a fair comparison with vLLM's caches off
(``--no-enable-prefix-caching --mm-processor-cache-gb 0``): a hit skips exactly the work pruning
shortens, and a dataset of a few videos repeats them. ``check-caches`` reads ``/metrics``:
prefix caching on (``vllm:cache_config_info``), or the multimodal processor cache queried
(``vllm:mm_cache_queries`` grows only while it is on), exits 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .client import PROMPT, metric_samples, metric_sum, metrics_text
from .corpus import CORPUS, corpus_dir, corpus_path

__all__ = ["cache_problems", "main", "sharegpt_entries", "sweep_params"]

DEFAULT_VIDEOS = ("h264_480p_10s", "h264_480p_1min", "h264_480p_5min")
ANSWER = "The camera pans over a textured background while a few boxes move and bounce off the borders."


def sharegpt_entries(videos: Sequence[str], repeat: int = 1, prompt: str = PROMPT) -> list[dict]:
    """ShareGPT entries, the corpus videos ``repeat`` times over: the prompt, an answer (its length is
    the default output length; ``--sharegpt-output-len`` overrides it) and the video's absolute path.
    ``vllm bench serve`` repeats entries by itself; GuideLLM sends each entry once."""
    paths = {name: str(corpus_path(name)) for name in videos}
    return [{"id": f"{name}-{i}", "prompt": prompt,  # `prompt` + `video`: the columns GuideLLM reads
             "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": ANSWER}],
             "video": paths[name]} for i in range(repeat) for name in videos]


def sweep_params(retentions: Sequence[float], concurrencies: Sequence[int]) -> list[dict]:
    """``--bench-params`` records: every retention x every ``--max-concurrency``."""
    return [{"_benchmark_name": f"retention={r:g}-concurrency={c}",
             "extra_body": {"mm_processor_kwargs": {"mmgvid_retention": r}},
             "metadata": f"retention={r:g}", "max_concurrency": c}
            for r, c in itertools.product(retentions, concurrencies)]


def cache_problems(text: str) -> list[str]:
    """What ``/metrics`` text says about caches that were on."""
    problems = []
    if any(name == "vllm:cache_config_info" and labels.get("enable_prefix_caching", "").lower() == "true"
           for name, labels, _ in metric_samples(text)):
        problems.append("prefix caching is on: start the server with --no-enable-prefix-caching")
    if metric_sum(text, "vllm:mm_cache_queries_total"):
        problems.append("the multimodal processor cache is on: start the server with --mm-processor-cache-gb 0")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmgvid bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dataset", help="ShareGPT file of corpus videos for vllm bench serve")
    p.add_argument("out", type=Path)
    p.add_argument("--videos", nargs="+", default=list(DEFAULT_VIDEOS), choices=sorted(CORPUS), metavar="NAME",
                   help=f"corpus videos (default: {' '.join(DEFAULT_VIDEOS)}; all: {' '.join(CORPUS)})")
    p.add_argument("--repeat", type=int, default=1, help="entries per video (GuideLLM: one request each)")
    p.add_argument("--prompt", default=PROMPT)
    p = sub.add_parser("sweep-params", help="--bench-params file for vllm bench sweep serve")
    p.add_argument("out", type=Path)
    p.add_argument("--retentions", type=float, nargs="+", default=[1.0, 0.25])
    p.add_argument("--max-concurrency", type=int, nargs="+", default=[1, 4, 16])
    p = sub.add_parser("check-caches", help="exit 1 if the server's prefix or multimodal processor cache was on")
    p.add_argument("url", help="server root, e.g. http://127.0.0.1:8000")
    args = parser.parse_args(argv)

    if args.command == "dataset":
        args.out.write_text(json.dumps(sharegpt_entries(args.videos, args.repeat, args.prompt), indent=1) + "\n")
        print(f"wrote {args.out}; serve with --allowed-local-media-path {corpus_dir()}")
    elif args.command == "sweep-params":
        args.out.write_text(json.dumps(sweep_params(args.retentions, args.max_concurrency), indent=1) + "\n")
        print(f"wrote {args.out}")
    else:
        problems = cache_problems(metrics_text(args.url.rstrip("/")))
        for problem in problems:
            print(f"{args.url}: {problem}", file=sys.stderr)
        return 1 if problems else 0
    return 0
