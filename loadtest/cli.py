"""``python -m loadtest``: command line for sweeps and for merging shards."""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path

EXAMPLES = """\
how to run a sweep
------------------
1. Start the server with caches off (else the comparison is unfair; the tool warns):
     VLLM_PLUGINS=mmgvid vllm serve llava-hf/llava-onevision-qwen2-7b-ov-hf \\
       --no-enable-prefix-caching --mm-processor-cache-gb 0 [--trust-request-mm-kwargs]
2. Sweep retentions per request (1.0 = pruning off = vanilla; the first config is the baseline):
     python -m loadtest --url http://127.0.0.1:8000 --retentions 1.0 0.25 0.15 0.10 \\
       --concurrency 1 2 4 8 16 --max-requests 100 --frames 32 --out-dir results/sweep
   or Poisson arrivals:       --request-rate 0.5 1 2 4 inf [--max-concurrency 64]
   or one server per config:  --targets vanilla=http://127.0.0.1:8000 pruned=http://127.0.0.1:8001
3. Read results/sweep/results.md, ttft.png, throughput.png (results.json has every request).

several client machines
-----------------------
Run the same command on each of n machines with --shard k/n (distinct videos per shard) and the
same --start-at (UNIX time) and --slot (seconds per point, > each point's run time; use --duration
to bound it), then merge:  python -m loadtest --merge a/results.json b/results.json --out-dir merged
Every point always stops by itself: after --max-requests requests or --duration seconds.
"""


def _config(spec: str) -> tuple[str, str]:
    name, sep, url = spec.partition("=")
    if not sep or not name or not url:
        raise argparse.ArgumentTypeError(f"expected NAME=URL, got {spec!r}")
    return name, url


def _shard(spec: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, got {spec!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError("need 0 <= K < N")
    return k, n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest",
        description=textwrap.fill(
            "Load generator for OpenAI-compatible video chat endpoints (vLLM): streams requests with synthetic "
            "videos (a distinct one per request) and measures TTFT, TPOT/ITL, E2E latency, req/s, output tok/s "
            "and errors per configuration and load level. Writes results.json, results.md, ttft.png and "
            "throughput.png into --out-dir. Examples below.", 95),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("targets and configurations")
    g.add_argument("--url", default="http://127.0.0.1:8000", help="server root for --retentions (default: %(default)s)")
    g.add_argument("--retentions", type=float, nargs="+", metavar="R",
                   help="one configuration per MMG-Vid retention, sent as mm_processor_kwargs.mmgvid_retention "
                        "(default: 1.0 0.25)")
    g.add_argument("--targets", type=_config, nargs="+", metavar="NAME=URL",
                   help="one configuration per server instead (no mm_processor_kwargs sent)")
    g.add_argument("--model", help="served model name (default: each server's first /v1/models entry)")
    g = p.add_argument_group("load (one point per value; each point bounded)")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--concurrency", type=int, nargs="+", metavar="N", help="closed loop: N requests in flight (default: 1 2 4)")
    m.add_argument("--request-rate", type=float, nargs="+", metavar="RPS", help="open loop: Poisson arrivals at RPS req/s; inf = all at once")
    g.add_argument("--max-concurrency", type=int, help="cap on in-flight requests with --request-rate")
    g.add_argument("--max-requests", type=int, default=100, help="requests per point (default: %(default)s)")
    g.add_argument("--duration", type=float, help="seconds per point after which no new request starts")
    g.add_argument("--warmup", type=int, default=2, help="untimed requests per configuration first (default: %(default)s)")
    g.add_argument("--timeout", type=float, default=600, help="per-request timeout in seconds (default: %(default)s)")
    g = p.add_argument_group("requests")
    g.add_argument("--max-tokens", type=int, default=64, help="output tokens per request (default: %(default)s)")
    g.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                   help="let requests stop at EOS (default: ignore_eos, fixed output length)")
    g.add_argument("--prompt", default="Describe what happens in this video.")
    g = p.add_argument_group("synthetic videos (PyAV, seeded, cached on disk by parameters)")
    g.add_argument("--frames", type=int, default=32)
    g.add_argument("--width", type=int, default=384)
    g.add_argument("--height", type=int, default=384)
    g.add_argument("--fps", type=int, default=8, help="8 fps: 32 frames = 4 s, all kept by vLLM's 32-frame sampling")
    g.add_argument("--scenes", type=int, default=1, help="number of scenes (hard cuts = scenes - 1)")
    g.add_argument("--motion", type=float, default=4.0, help="pan / object speed in pixels per frame; 0 = static")
    g.add_argument("--bitrate", type=int, default=1_000_000)
    g.add_argument("--seed", type=int, default=0, help="first video seed; every request gets its own video")
    g.add_argument("--cache-dir", type=Path, help="corpus cache (default: $MMGVID_LOADTEST_CACHE or ~/.cache/mmgvid-vllm/loadtest-corpus)")
    g = p.add_argument_group("several machines")
    g.add_argument("--shard", type=_shard, default=(0, 1), metavar="K/N", help="this is client K of N (default: 0/1)")
    g.add_argument("--start-at", type=float, help="UNIX time at which the first point starts")
    g.add_argument("--slot", type=float, help="seconds between point starts (with --start-at)")
    g.add_argument("--merge", type=Path, nargs="+", metavar="JSON", help="merge shards' results.json instead of running")
    g = p.add_argument_group("output")
    g.add_argument("--out-dir", type=Path, default=Path("loadtest-results"), help="default: %(default)s")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    from .report import write_outputs

    args = build_parser().parse_args(argv)
    if args.merge:
        from .merge import load_results, merge_results

        paths = write_outputs(merge_results(load_results(args.merge)), args.out_dir)
        print("\n".join(map(str, paths)))
        return 0

    from .client import Target
    from .corpus import Corpus, VideoSpec
    from .runner import Load
    from .server_checks import check_url, served_model
    from .sweep import SweepPlan, run_sweep

    if args.targets and args.retentions:
        sys.exit("use --retentions (one server) or --targets (one server per config), not both")
    if args.max_requests < 1 or (args.duration is not None and args.duration <= 0):
        sys.exit("--max-requests must be >= 1 and --duration > 0")
    if (args.start_at is None) != (args.slot is None):
        sys.exit("--start-at and --slot go together")
    if args.targets:
        pairs = [(name, check_url(url), None) for name, url in args.targets]
    else:
        url = check_url(args.url)
        pairs = [(f"r={r:g}" + (" (baseline)" if r == 1.0 else ""), url, {"mmgvid_retention": r})
                 for r in (args.retentions or [1.0, 0.25])]
    models = {url: args.model or served_model(url) for _, url, _ in pairs}
    targets = [Target(name, url, models[url], kw) for name, url, kw in pairs]
    if args.request_rate:
        loads = [Load(rate=r if math.isfinite(r) else math.inf, max_concurrency=args.max_concurrency)
                 for r in args.request_rate]
    else:
        loads = [Load(concurrency=c) for c in (args.concurrency or [1, 2, 4])]
    spec = VideoSpec(frames=args.frames, width=args.width, height=args.height, fps=args.fps,
                     scenes=args.scenes, motion=args.motion, bitrate=args.bitrate)
    plan = SweepPlan(targets=targets, loads=loads, max_requests=args.max_requests, duration=args.duration,
                     warmup=args.warmup, prompt=args.prompt, max_tokens=args.max_tokens,
                     ignore_eos=args.ignore_eos, timeout=args.timeout, seed=args.seed,
                     shard_index=args.shard[0], shard_count=args.shard[1], start_at=args.start_at,
                     slot=args.slot, progress=args.progress)
    result = run_sweep(plan, Corpus(spec, args.cache_dir))
    paths = write_outputs(result, args.out_dir)
    print(Path(paths[1]).read_text())
    print("wrote " + ", ".join(map(str, paths)))
    failed = sum(p["summary"]["failed"] for p in result["points"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
