"""Request latency (``max_tokens=1``, i.e. TTFT) of corpus videos: vanilla vLLM vs ``mmgvid serve``.

Starts two real CPU servers with the tiny model, one after the other, both with
``--no-enable-prefix-caching --mm-processor-cache-gb 0`` (so repeating a video is no cache hit):

* ``vanilla``: ``VLLM_PLUGINS=""``, vLLM's own loader (``opencv``);
* ``mmgvid``: the environment ``mmgvid serve`` sets on a CPU for the tiny model
  (``cli.build_serve_command("tiny")``: the plugin, retention 0.25,
  ``VLLM_VIDEO_LOADER_BACKEND=mmgvid_pyav``, ...); each video is also sent with per-request
  ``media_io_kwargs {"video": {"video_backend": "opencv"}}`` (pruning with vLLM's loader) and
  with ``mm_processor_kwargs {"mmgvid_retention": 1.0}`` (our loader, no pruning), which split
  the gain between pruning and loading.

Per video and configuration: one warm-up request, then the median of ``--repeats`` latencies.
Prints a table, writes JSON.

    .venv/bin/python -m benchmarks.video_ttft_cpu --videos h264_480p_10s h264_480p_5min
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks/results/video_ttft_cpu.json"
NO_CACHE = ("--no-enable-prefix-caching", "--mm-processor-cache-gb", "0")


def _latency(server, body: dict) -> float:
    """Seconds from sending to the end of the (one-token) answer."""
    from mmgvid_vllm.client import stream_chat

    try:
        return stream_chat(server.url, body).latency
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{server.log_tail(20)}") from exc


def _measure(server, bodies: dict[str, dict], repeats: int) -> dict[str, float]:
    out = {}
    for key, body in tqdm(bodies.items(), desc="requests", leave=False):
        _latency(server, body)  # warm-up
        out[key] = round(statistics.median(_latency(server, body) for _ in range(repeats)), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    from mmgvid_vllm.cli import build_serve_command
    from mmgvid_vllm.client import chat_body
    from mmgvid_vllm.corpus import CORPUS, corpus_path
    from mmgvid_vllm.launcher import CPU_DEFAULT_ARGS, VllmServer
    from mmgvid_vllm.media import data_url
    from mmgvid_vllm.tiny_model import ensure_tiny_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", nargs="+", default=["h264_480p_10s", "h264_480p_5min"], choices=sorted(CORPUS),
                   metavar="NAME", help="corpus videos (default: h264_480p_10s h264_480p_5min)")
    p.add_argument("--repeats", type=int, default=3, help="timed requests per video and configuration (median)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    args = p.parse_args(argv)

    model = ensure_tiny_model()
    bodies = {}
    for name in args.videos:
        url = data_url(corpus_path(name).read_bytes(), CORPUS[name].mime)
        bodies[name] = chat_body(str(model), url, max_tokens=1)
    server_args = [*CPU_DEFAULT_ARGS, *NO_CACHE]

    results = {"device": "2-core CPU machine", "date": datetime.date.today().isoformat(),
               "command": " ".join(sys.argv), "repeats": args.repeats, "videos": {n: {} for n in args.videos}}
    vanilla_env = {"VLLM_PLUGINS": "", "VLLM_VIDEO_LOADER_BACKEND": None, "MMGVID_RETENTION": None}
    with VllmServer(model, extra_args=server_args, env=vanilla_env) as server:
        for name, s in _measure(server, bodies, args.repeats).items():
            results["videos"][name]["vanilla_s"] = s

    _, serve_env = build_serve_command("tiny", [], environ={}, cuda=False)  # `mmgvid serve` on a CPU
    results["mmgvid_serve_env"] = serve_env
    with VllmServer(model, extra_args=server_args, env=serve_env) as server:
        for name, s in _measure(server, bodies, args.repeats).items():
            results["videos"][name]["mmgvid_s"] = s
        opencv = {n: {**b, "media_io_kwargs": {"video": {"video_backend": "opencv"}}} for n, b in bodies.items()}
        for name, s in _measure(server, opencv, args.repeats).items():
            results["videos"][name]["mmgvid_with_opencv_loader_s"] = s
        unpruned = {n: {**b, "mm_processor_kwargs": {"mmgvid_retention": 1.0}} for n, b in bodies.items()}
        for name, s in _measure(server, unpruned, args.repeats).items():
            results["videos"][name]["mmgvid_retention_1_s"] = s

    print("| video | vanilla s | mmgvid serve s | speedup | mmgvid serve, vLLM's loader s | "
          "mmgvid serve, retention 1.0 s |"
          "\n|---|---|---|---|---|---|")
    for name, r in results["videos"].items():
        r["speedup"] = round(r["vanilla_s"] / r["mmgvid_s"], 2)
        print(f"| {name} | {r['vanilla_s']:.3f} | {r['mmgvid_s']:.3f} | {r['speedup']:.2f}x | "
              f"{r['mmgvid_with_opencv_loader_s']:.3f} | {r['mmgvid_retention_1_s']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
