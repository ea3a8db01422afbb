"""Single-request TTFT and LLM prefill time, unpruned vs pruned, against one running server.

The server runs with the mmgvid plugin; each request sets its own retention through
`mm_processor_kwargs` (1.0 = pruning off, exactly vanilla vLLM), so baseline and pruned
requests share one server, one warm-up and one run. Requests go one at a time, configurations
interleaved round-robin (drift hits all alike), every request with a distinct video (no
cache hits; start the server with prefix caching and the multimodal cache off).

Per request: TTFT = request sent -> first streamed token; prefill = the change of vLLM's
`vllm:request_prefill_time_seconds_sum` across the request (scraped from /metrics before and
after; requests are sequential). Medians are reported.

    python benchmarks/gpu/ttft.py --url http://127.0.0.1:8000 --retentions 1.0 0.25 0.15 0.10 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import requests
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.helpers.video import data_url, make_video_bytes  # noqa: E402

PREFILL_SUM = re.compile(r"^vllm:request_prefill_time_seconds_sum\{[^}]*\}\s+(\S+)", re.M)


def prefill_seconds_total(url: str) -> float:
    return sum(float(v) for v in PREFILL_SUM.findall(requests.get(f"{url}/metrics", timeout=30).text))


def one_request(url: str, model: str, video: str, retention: float, max_tokens: int) -> dict:
    """Stream one chat completion; returns ttft_s, prefill_s, prompt_tokens."""
    body = {
        "model": model, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": video}},
            {"type": "text", "text": "Describe the video."}]}],
        "mm_processor_kwargs": {"mmgvid_retention": retention},
    }
    before = prefill_seconds_total(url)
    start = time.perf_counter()
    ttft, usage = None, None
    with requests.post(f"{url}/v1/chat/completions", json=body, stream=True, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if ttft is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content") is not None:
                ttft = time.perf_counter() - start
            usage = chunk.get("usage") or usage
    time.sleep(0.05)  # let the engine publish the finished request's stats
    return {"ttft_s": ttft, "prefill_s": prefill_seconds_total(url) - before, "prompt_tokens": usage["prompt_tokens"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default=None, help="served model name (default: the server's first)")
    parser.add_argument("--retentions", type=float, nargs="+", default=[1.0, 0.25, 0.15, 0.10])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=384, help="video width and height in pixels")
    parser.add_argument("--repeats", type=int, default=10, help="timed requests per configuration")
    parser.add_argument("--warmup", type=int, default=4, help="untimed requests per configuration")
    parser.add_argument("--max-tokens", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ttft.json"))
    args = parser.parse_args()
    model = args.model or requests.get(f"{args.url}/v1/models", timeout=30).json()["data"][0]["id"]

    rounds = args.warmup + args.repeats
    videos = [data_url(make_video_bytes(args.frames, args.size, args.size, seed=seed))
              for seed in tqdm(range(rounds * len(args.retentions)), desc="encoding videos")]
    samples: dict[float, list[dict]] = {r: [] for r in args.retentions}
    with tqdm(total=len(videos), desc="requests") as bar:
        for i in range(rounds):
            for j, retention in enumerate(args.retentions):
                result = one_request(args.url, model, videos[i * len(args.retentions) + j], retention, args.max_tokens)
                if i >= args.warmup:
                    samples[retention].append(result)
                bar.update()

    base = args.retentions[0]
    summary = {}
    for retention, rows in samples.items():
        summary[retention] = {key: statistics.median(row[key] for row in rows) for key in ("ttft_s", "prefill_s", "prompt_tokens")}
    print(f"| retention | prompt tokens | TTFT ms (median) | prefill ms (median) | TTFT speedup | prefill speedup |")
    print("|---|---|---|---|---|---|")
    for retention, s in summary.items():
        print(f"| {retention} | {s['prompt_tokens']:.0f} | {s['ttft_s'] * 1e3:.1f} | {s['prefill_s'] * 1e3:.1f} | "
              f"{summary[base]['ttft_s'] / s['ttft_s']:.2f}x | {summary[base]['prefill_s'] / s['prefill_s']:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"frames": args.frames, "size": args.size, "repeats": args.repeats,
                                    "summary": summary, "samples": samples}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
