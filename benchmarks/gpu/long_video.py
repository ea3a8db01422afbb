"""Real-length videos against one running server: TTFT per corpus video, requests/s under load.

Run once against vanilla vLLM (``VLLM_PLUGINS=""``, its own OpenCV loader) and once against the
plugin (``mmgvid_pyav`` loader), same flags, same lease (``run_long_video.sh`` does both), then
``--merge`` the two JSON files into ``benchmarks/results/gpu.json`` (keys ``long_video`` and
``long_video_throughput``). Videos go as ``file://`` URLs (the server needs
``--allowed-local-media-path``), each request with its own multimodal ``uuid`` so no cache
(processor, encoder, prefix) ever answers: every request decodes and encodes its video.

TTFT: request sent -> first streamed token, one request at a time, configurations interleaved,
median of ``--repeats`` after one warm-up per configuration. Throughput: ``--requests`` requests
with ``--max-tokens`` output tokens each, ``c`` in flight at a time, requests/s = requests / wall time.

    python benchmarks/gpu/long_video.py --label vanilla --retentions none --out vanilla.json
    python benchmarks/gpu/long_video.py --label mmgvid --retentions 1.0 0.25 --out mmgvid.json
    python benchmarks/gpu/long_video.py --merge vanilla.json mmgvid.json --into benchmarks/results/gpu.json
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

TTFT_VIDEOS = ("h264_480p_10s", "h264_480p_5min", "h264_480p_10min", "h264_480p_60min", "h264_1080p_5min")
LOAD_VIDEO = "h264_480p_5min"


def _body(model: str, path: Path, retention: float | None, max_tokens: int, stream: bool) -> dict:
    part = {"type": "video_url", "video_url": {"url": path.as_uri()}, "uuid": uuid.uuid4().hex}
    body = {
        "model": model,
        "messages": [{"role": "user", "content": [part, {"type": "text", "text": "What happens in this video?"}]}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
    }
    if retention is not None:
        body["mm_processor_kwargs"] = {"mmgvid_retention": retention}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def ttft(url: str, model: str, path: Path, retention: float | None) -> float:
    """Seconds from sending to the first streamed chunk with a token."""
    t0 = time.perf_counter()
    with requests.post(f"{url}/v1/chat/completions", json=_body(model, path, retention, 1, True),
                       stream=True, timeout=600) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{path.name} at {retention}: HTTP {r.status_code} {r.text[:300]}")
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data: ") and '"choices":[{' in line.replace(" ", ""):
                return time.perf_counter() - t0
    raise RuntimeError(f"{path.name}: no token streamed")


def throughput(url: str, model: str, path: Path, retention: float | None, concurrency: int, total: int,
               max_tokens: int) -> float:
    def one(_: int) -> None:
        r = requests.post(f"{url}/v1/chat/completions", json=_body(model, path, retention, max_tokens, False),
                          timeout=900)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code} {r.text[:300]}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(total)))
    return total / (time.perf_counter() - t0)


def measure(args) -> dict:
    from mmgvid_vllm.corpus import corpus_path

    model = requests.get(f"{args.url}/v1/models", timeout=30).json()["data"][0]["id"]
    retentions = [None if r == "none" else float(r) for r in args.retentions]
    result = {"label": args.label, "ttft_ms": {}, "rps": {}}
    for name in args.videos:
        path = corpus_path(name)
        times = {r: [] for r in retentions}
        for r in retentions:
            ttft(args.url, model, path, r)  # warm-up
        for _ in tqdm(range(args.repeats), desc=f"TTFT {name}"):
            for r in retentions:
                times[r].append(ttft(args.url, model, path, r))
        result["ttft_ms"][name] = {str(r): round(1000 * statistics.median(t), 1) for r, t in times.items()}
        print(name, result["ttft_ms"][name], flush=True)
    path = corpus_path(args.load_video)
    for c in args.concurrency:
        for r in retentions:
            rps = throughput(args.url, model, path, r, c, args.requests or 4 * c, args.max_tokens)
            result["rps"].setdefault(str(c), {})[str(r)] = round(rps, 2)
            print(f"{args.load_video} c={c} retention={r}: {rps:.2f} req/s", flush=True)
    result["load_video"] = args.load_video
    return result


def merge(vanilla: dict, ours: dict, device: str, vllm_version: str) -> dict:
    """The ``long_video`` and ``long_video_throughput`` entries of gpu.json."""
    long_video = {}
    for name, base in vanilla["ttft_ms"].items():
        van = base["None"]
        mine = {r: ms for r, ms in ours["ttft_ms"][name].items()}
        long_video[name] = {"vanilla_ttft_ms": van, "ttft_ms": mine,
                            "ttft_speedup": {r: round(van / ms, 2) for r, ms in mine.items()}}
    load = {}
    for c, base in vanilla["rps"].items():
        van = base["None"]
        mine = ours["rps"][c]
        load[c] = {"vanilla_rps": van, "rps": mine, "ratio": {r: round(v / van, 2) for r, v in mine.items()}}
    return {"long_video": long_video,
            "long_video_throughput": {vanilla["load_video"]: load},
            "long_video_setup": {"device": device, "baseline": f"vanilla vLLM {vllm_version}",
                                 "loader": {"vanilla": "vLLM's default (OpenCV)", "mmgvid": "mmgvid_pyav"}}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--label", default="server")
    p.add_argument("--retentions", nargs="+", default=["none"], help='"none" = no mm_processor_kwargs (vanilla)')
    p.add_argument("--videos", nargs="+", default=list(TTFT_VIDEOS), help="corpus names (mmgvid_vllm.corpus)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--load-video", default=LOAD_VIDEO)
    p.add_argument("--concurrency", type=int, nargs="*", default=[16, 64])
    p.add_argument("--requests", type=int, default=0, help="per load point (default 4 x concurrency)")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--out", type=Path)
    p.add_argument("--merge", nargs=2, type=Path, metavar=("VANILLA", "MMGVID"))
    p.add_argument("--into", type=Path, help="with --merge: gpu.json to update")
    p.add_argument("--device", default="")
    p.add_argument("--vllm-version", default="0.26.0")
    args = p.parse_args()
    if args.merge:
        merged = merge(*(json.loads(f.read_text()) for f in args.merge), args.device, args.vllm_version)
        print(json.dumps(merged, indent=1))
        if args.into:
            doc = json.loads(args.into.read_text()) if args.into.exists() else {}
            doc.update(merged)
            args.into.write_text(json.dumps(doc, indent=1) + "\n")
        return
    result = measure(args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
