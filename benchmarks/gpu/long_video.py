"""Real-length videos against one running server: TTFT per corpus video, requests/s under load.

Run once against vanilla vLLM (``VLLM_PLUGINS=""``, its own OpenCV loader) and once against the
plugin (``mmgvid_pyav`` loader), same flags, same lease (``run_long_video.sh`` does both), then
``vs_vanilla.py`` merges the two JSON files (``merge``) into ``benchmarks/results/gpu.json``
(keys ``long_video``, ``long_video_throughput``, ``decode``). Videos go as ``file://`` URLs (the server needs
``--allowed-local-media-path``), each request with its own multimodal ``uuid`` so no cache
(processor, encoder, prefix) ever answers: every request decodes and encodes its video.

TTFT: request sent -> first streamed token, one request at a time, configurations interleaved,
median of ``--repeats`` after one warm-up per configuration. Throughput (``--load-videos``):
``--requests`` requests with ``--max-tokens`` output tokens each, ``c`` in flight at a time,
requests/s = requests / wall time; with at least ``3 c`` requests also the steady state's
(``steady_rps``: the completions between the c-th and the (N - c)-th, over that time, so the
ramp-up, while the first c requests are in flight, and the drain, once the last request is
sent, are left out, as GuideLLM's warm-up and cool-down do). Decode (``--decode-concurrency``): requests of
``--decode-tokens`` output tokens (EOS ignored) at concurrency c: median end-to-end latency and
TPOT ((last token - first token) / (tokens - 1)). ``clip`` is the short-clip benchmarks' 4-s
384x384 video (sent as a data URL).

    python benchmarks/gpu/long_video.py --label vanilla --retentions none --out vanilla.json
    python benchmarks/gpu/long_video.py --label mmgvid --retentions 1.0 0.25 --out mmgvid.json
    python -m benchmarks.gpu.vs_vanilla DIR --device "..." --into benchmarks/results/gpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from tqdm import tqdm

from mmgvid_vllm.client import chat_body, stream_chat
from mmgvid_vllm.corpus import corpus_path
from mmgvid_vllm.media import data_url, make_video_bytes

TTFT_VIDEOS = ("h264_480p_10s", "h264_480p_5min", "h264_480p_10min", "h264_480p_60min", "h264_1080p_5min")
LOAD_VIDEO = "h264_480p_5min"
CLIP = "clip"  # the short-clip benchmarks' video: 4 s, 384x384, 8 fps, MPEG-4, all 32 frames sampled


def video_url(name: str) -> str:
    """A corpus video's ``file://`` URL, or the short clip's data URL for ``CLIP``."""
    if name == CLIP:
        return data_url(make_video_bytes(32, 384, 384))
    return corpus_path(name).as_uri()


def streamed(url: str, model: str, video: str, retention: float | None, max_tokens: int) -> dict:
    """One streamed request, its video with its own multimodal ``uuid`` (no cache answers):
    ``ttft_s``, ``latency_s`` and ``tpot_s`` (the time per output token after the first)."""
    body = chat_body(model, video, retention=retention, max_tokens=max_tokens, video_uuid=uuid.uuid4().hex,
                     ignore_eos=True)
    result = stream_chat(url, body, timeout=900)
    tokens = result.usage["completion_tokens"]
    return {"ttft_s": result.ttft, "latency_s": result.latency,
            "tpot_s": (result.latency - result.ttft) / max(tokens - 1, 1), "done_s": time.perf_counter()}


def steady_rps(done_s: list[float], concurrency: int) -> float | None:
    """Completions per second between the ``concurrency``-th and the (N - ``concurrency``)-th
    completion of N (``None`` under ``3 * concurrency`` requests: no steady window)."""
    done = sorted(done_s)
    if len(done) < 3 * concurrency:
        return None
    first, last = done[concurrency - 1], done[len(done) - concurrency - 1]
    return (len(done) - 2 * concurrency) / (last - first)


def load(url: str, model: str, video: str, retention: float | None, concurrency: int, total: int,
         max_tokens: int) -> dict:
    """``total`` streamed requests, ``concurrency`` in flight: requests/s and the medians of
    their latency, TTFT and TPOT."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        rows = list(pool.map(lambda _: streamed(url, model, video, retention, max_tokens), range(total)))
    result = {"rps": round(total / (time.perf_counter() - t0), 2)}
    steady = steady_rps([row["done_s"] for row in rows], concurrency)
    if steady is not None:
        result["steady_rps"] = round(steady, 2)
    for key in ("latency_s", "ttft_s", "tpot_s"):
        result[key.replace("_s", "_ms")] = round(1000 * statistics.median(row[key] for row in rows), 1)
    return result


def measure(args, save=lambda result: None) -> dict:
    """Every figure of the run; ``save(result)`` after each one (what a run cut short had measured)."""
    model = requests.get(f"{args.url}/v1/models", timeout=30).json()["data"][0]["id"]
    retentions = [None if r == "none" else float(r) for r in args.retentions]
    result = {"label": args.label, "ttft_ms": {}, "rps": {}, "decode": {}}
    for name in args.videos:
        video = video_url(name)
        times = {r: [] for r in retentions}
        for r in retentions:
            streamed(args.url, model, video, r, 1)  # warm-up
        for _ in tqdm(range(args.repeats), desc=f"TTFT {name}"):
            for r in retentions:
                times[r].append(streamed(args.url, model, video, r, 1)["ttft_s"])
        result["ttft_ms"][name] = {str(r): round(1000 * statistics.median(t), 1) for r, t in times.items()}
        print(name, result["ttft_ms"][name], flush=True)
        save(result)
    for name in args.load_videos:
        video = video_url(name)
        for c in args.concurrency:
            for r in retentions:
                point = load(args.url, model, video, r, c, args.requests or 4 * c, args.max_tokens)
                for key in ("rps", "steady_rps"):  # steady_rps: with >= 3 c requests only
                    if key in point:
                        result.setdefault(key, {}).setdefault(name, {}).setdefault(str(c), {})[str(r)] = point[key]
                print(f"{name} c={c} retention={r}: {point}", flush=True)
                save(result)
    video = video_url(args.decode_video)
    for c in args.decode_concurrency:
        for r in retentions:
            point = load(args.url, model, video, r, c, max(8, 4 * c), args.decode_tokens)
            result["decode"].setdefault(str(c), {})[str(r)] = point
            result["decode_video"] = args.decode_video
            print(f"decode {args.decode_video} c={c} retention={r}: {point}", flush=True)
            save(result)
    return result


def merge(vanilla: dict, ours: dict, device: str, vllm_version: str) -> dict:
    """The ``long_video``, ``long_video_throughput`` and ``decode`` entries of gpu.json: the
    figures both runs have (a run cut short by a time limit has the first ones)."""
    long_video = {}
    for name, base in vanilla["ttft_ms"].items():
        if name not in ours["ttft_ms"]:
            continue
        van = base["None"]
        mine = {r: ms for r, ms in ours["ttft_ms"][name].items()}
        long_video[name] = {"vanilla_ttft_ms": van, "ttft_ms": mine,
                            "ttft_speedup": {r: round(van / ms, 2) for r, ms in mine.items()}}
    load = {}
    for name, points in vanilla["rps"].items():
        for c, base in points.items():
            if c not in ours["rps"].get(name, {}):
                continue
            van = base["None"]
            mine = ours["rps"][name][c]
            load.setdefault(name, {})[c] = {"vanilla_rps": van, "rps": mine,
                                           "ratio": {r: round(v / van, 2) for r, v in mine.items()}}
    decode = {}
    for c, base in vanilla["decode"].items():
        if c not in ours["decode"]:
            continue
        van = base["None"]
        decode[c] = {"vanilla": van, **ours["decode"][c],
                     "tpot_speedup": {r: round(van["tpot_ms"] / p["tpot_ms"], 2) for r, p in ours["decode"][c].items()},
                     "latency_speedup": {r: round(van["latency_ms"] / p["latency_ms"], 2)
                                         for r, p in ours["decode"][c].items()}}
    return {"long_video": long_video,
            "long_video_throughput": load,
            "decode": {"video": vanilla.get("decode_video"), "by_concurrency": decode},
            "long_video_setup": {"device": device, "baseline": f"vanilla vLLM {vllm_version}",
                                 "loader": {"vanilla": "vLLM's default (OpenCV)", "mmgvid": "mmgvid_pyav"}}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--label", default="server")
    p.add_argument("--retentions", nargs="+", default=["none"], help='"none" = no mm_processor_kwargs (vanilla)')
    p.add_argument("--videos", nargs="+", default=list(TTFT_VIDEOS), help="corpus names (mmgvid_vllm.corpus)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--load-videos", nargs="*", default=[LOAD_VIDEO],
                   help=f"videos of the requests/s points ({CLIP!r}: the short clip)")
    p.add_argument("--concurrency", type=int, nargs="*", default=[16, 64])
    p.add_argument("--requests", type=int, default=0, help="per load point (default 4 x concurrency)")
    p.add_argument("--max-tokens", type=int, default=32, help="output tokens of the requests/s points")
    p.add_argument("--decode-video", default=CLIP, help="video of the decode points")
    p.add_argument("--decode-concurrency", type=int, nargs="*", default=[1, 16],
                   help="decode points: end-to-end latency and TPOT of --decode-tokens output tokens")
    p.add_argument("--decode-tokens", type=int, default=128)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    measure(args, lambda result: args.out and args.out.write_text(json.dumps(result, indent=1) + "\n"))


if __name__ == "__main__":
    main()
