"""Single-request TTFT, prefill and LLM-only prefill, unpruned vs pruned, against one running server.

The server runs with the mmgvid plugin; each request sets its own retention through
`mm_processor_kwargs` (1.0 = pruning off, exactly vanilla vLLM), so baseline and pruned
requests share one server, one warm-up and one run. Requests go one at a time, configurations
interleaved round-robin (drift hits all alike), every request with a distinct video (no
cache hits; start the server with prefix caching and the multimodal cache off).

Per video request: TTFT = request sent -> first streamed token; prefill = the change of vLLM's
`vllm:request_prefill_time_seconds_sum` across the request (scraped from /metrics before and
after; requests are sequential), i.e. scheduled -> first token: vision tower + pruning + LLM
prefill.

LLM prefill (the language model alone): after the video requests, text-only requests through
/v1/completions whose prompt is a list of token ids of exactly the median video prompt length
of each configuration (random ordinary-text tokens from the server's own tokenizer, different
per request; checked against `usage.prompt_tokens`), max_tokens 1, the same warm-up and
repeats, interleaved the same way; their `vllm:request_prefill_time_seconds` is the LLM's
prefill at that prompt length. vision+pruning = prefill - LLM prefill (difference of medians): an
estimate only, as a text-only request's prefill time holds host work that a video step overlaps with
its vision tower (at 6290 tokens it exceeded the video step's LLM phase by ~15 ms on an H100, so the
unpruned vision looked ~12 ms shorter than the pruned one); ``profile_prefill.py`` and
``profile_load.py`` measure the phases on the GPU.
Medians are reported; speedups are relative to the first retention.

    python benchmarks/gpu/ttft.py --url http://127.0.0.1:8000 --retentions 1.0 0.25 0.15 0.10 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import requests
from tqdm import tqdm

from mmgvid_vllm.client import chat_body, metric_sum, stream_chat
from mmgvid_vllm.media import data_url, make_video_bytes

# Ordinary text for the token pool of the LLM-only requests (tokenised by the server itself).
POOL_TEXT = " ".join(__doc__.split()) + (
    " The quick brown fox jumps over the lazy dog while a camera pans slowly across a crowded street,"
    " people walk past shops, a red car stops at the light, birds fly over the river and the sun sets.")


def prefill_totals(url: str) -> tuple[float, float]:
    """(sum of seconds, count) of vllm:request_prefill_time_seconds over all label sets."""
    text = requests.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=30).text
    return (metric_sum(text, "vllm:request_prefill_time_seconds_sum"),
            metric_sum(text, "vllm:request_prefill_time_seconds_count"))


def timed_stream(url: str, path: str, body: dict) -> dict:
    """Stream one request (``client.stream_chat``); returns ttft_s, prefill_s, prompt_tokens.

    prefill_s is the change of the prefill histogram's sum; /metrics is polled (up to 5 s) until
    its count has grown by one, so the finished request's stats are in."""
    before_sum, before_count = prefill_totals(url)
    result = stream_chat(url, body, path=path)
    deadline = time.monotonic() + 5.0
    while True:
        after_sum, after_count = prefill_totals(url)
        if after_count >= before_count + 1 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return {"ttft_s": result.ttft, "prefill_s": after_sum - before_sum, "prompt_tokens": result.usage["prompt_tokens"],
            "stats_seen": after_count >= before_count + 1}


def video_request(url: str, model: str, video: str, retention: float | None, max_tokens: int,
                  num_frames: int | None = None) -> dict:
    """Stream one chat completion with one video at the given retention (None: no
    ``mm_processor_kwargs``, what a vanilla vLLM server is sent); ``num_frames``: the frames vLLM
    samples (``media_io_kwargs``; None: the model's default, 32 for LLaVA-OneVision)."""
    body = chat_body(model, video, retention=retention, max_tokens=max_tokens, prompt="Describe the video.")
    if num_frames is not None:
        body["media_io_kwargs"] = {"video": {"num_frames": num_frames}}
    return timed_stream(url, "/v1/chat/completions", body)


def token_pool(url: str, model: str) -> list[int]:
    """Token ids of ordinary text, from the server's tokenizer (no special tokens)."""
    r = requests.post(f"{url}/tokenize", json={"model": model, "prompt": POOL_TEXT, "add_special_tokens": False},
                      timeout=60)
    r.raise_for_status()
    pool = sorted(set(r.json()["tokens"]))
    if len(pool) < 16:
        raise RuntimeError(f"token pool too small ({len(pool)} ids)")
    return pool


def text_request(url: str, model: str, pool: list[int], num_tokens: int, seed: int) -> dict:
    """Stream one completion whose prompt is exactly num_tokens token ids (random, seeded)."""
    ids = random.Random(seed).choices(pool, k=num_tokens)
    body = {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0.0}
    result = timed_stream(url, "/v1/completions", body)
    if result["prompt_tokens"] != num_tokens:
        raise RuntimeError(f"text prompt has {result['prompt_tokens']} tokens, wanted {num_tokens}")
    return result


def _retention(text: str) -> float | None:
    return None if text == "none" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default=None, help="served model name (default: the server's first)")
    parser.add_argument("--retentions", type=_retention, nargs="+", default=[1.0, 0.25, 0.15, 0.10],
                        help='one configuration each; the first is the baseline of the speedups; "none" sends no '
                             "mm_processor_kwargs (a vanilla vLLM server)")
    parser.add_argument("--frames", type=int, default=32, help="frames in each video file")
    parser.add_argument("--num-frames", type=int, default=None,
                        help="frames vLLM samples per video (media_io_kwargs; default: the model's, 32)")
    parser.add_argument("--size", type=int, default=384, help="video width and height in pixels")
    parser.add_argument("--repeats", type=int, default=10,
                        help="timed requests per configuration (video and text each)")
    parser.add_argument("--warmup", type=int, default=4,
                        help="untimed requests per configuration (video and text each)")
    parser.add_argument("--max-tokens", type=int, default=1, help="output tokens of the video requests")
    parser.add_argument("--no-llm-prefill", action="store_true", help="skip the text-only LLM prefill requests")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ttft.json"))
    args = parser.parse_args()
    model = args.model or requests.get(f"{args.url}/v1/models", timeout=30).json()["data"][0]["id"]

    rounds = args.warmup + args.repeats
    videos = [data_url(make_video_bytes(args.frames, args.size, args.size, seed=seed))
              for seed in tqdm(range(rounds * len(args.retentions)), desc="encoding videos")]
    samples: dict[float, list[dict]] = {r: [] for r in args.retentions}
    with tqdm(total=len(videos), desc="video requests") as bar:
        for i in range(rounds):
            for j, retention in enumerate(args.retentions):
                result = video_request(args.url, model, videos[i * len(args.retentions) + j], retention,
                                       args.max_tokens, args.num_frames)
                if i >= args.warmup:
                    samples[retention].append(result)
                bar.update()

    summary: dict[float, dict] = {}
    for retention, rows in samples.items():
        summary[retention] = {key: statistics.median(row[key] for row in rows)
                              for key in ("ttft_s", "prefill_s", "prompt_tokens")}

    llm_samples: dict[float, list[dict]] = {r: [] for r in args.retentions}
    if not args.no_llm_prefill:
        pool = token_pool(args.url, model)
        lengths = {r: int(statistics.median_low(row["prompt_tokens"] for row in samples[r])) for r in args.retentions}
        with tqdm(total=rounds * len(args.retentions), desc="LLM-only requests") as bar:
            for i in range(rounds):
                for j, retention in enumerate(args.retentions):
                    result = text_request(args.url, model, pool, lengths[retention], seed=i * len(args.retentions) + j)
                    if i >= args.warmup:
                        llm_samples[retention].append(result)
                    bar.update()
        for retention, rows in llm_samples.items():
            s = summary[retention]
            s["llm_prompt_tokens"] = lengths[retention]
            s["llm_ttft_s"] = statistics.median(row["ttft_s"] for row in rows)
            s["llm_prefill_s"] = statistics.median(row["prefill_s"] for row in rows)
            s["vision_pruning_s"] = s["prefill_s"] - s["llm_prefill_s"]

    base = summary[args.retentions[0]]
    for s in summary.values():
        s["ttft_speedup"] = base["ttft_s"] / s["ttft_s"]
        s["prefill_speedup"] = base["prefill_s"] / s["prefill_s"]
        if "llm_prefill_s" in s:
            s["llm_prefill_ms"] = s["llm_prefill_s"] * 1e3
            s["llm_prefill_speedup"] = base["llm_prefill_s"] / s["llm_prefill_s"]
            s["vision_pruning_ms"] = s["vision_pruning_s"] * 1e3

    llm = not args.no_llm_prefill
    print("| retention | prompt tokens | TTFT ms (median) | prefill ms (median) | TTFT speedup | prefill speedup |"
          + (" LLM prefill ms | LLM prefill speedup | vision+pruning ms |" if llm else ""))
    print("|---|---|---|---|---|---|" + ("---|---|---|" if llm else ""))
    for retention, s in summary.items():
        print(f"| {retention} | {s['prompt_tokens']:.0f} | {s['ttft_s'] * 1e3:.1f} | {s['prefill_s'] * 1e3:.1f} | "
              f"{s['ttft_speedup']:.2f}x | {s['prefill_speedup']:.2f}x |"
              + (f" {s['llm_prefill_ms']:.1f} | {s['llm_prefill_speedup']:.2f}x | {s['vision_pruning_ms']:.1f} |"
                 if llm else ""))
    missing = sum(not row["stats_seen"] for rows in (*samples.values(), *llm_samples.values()) for row in rows)
    if missing:
        print(f"warning: {missing} timed requests finished before their prefill time reached /metrics "
              "(prefill read as 0 or low)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"frames": args.frames, "num_frames": args.num_frames, "size": args.size,
                                    "repeats": args.repeats, "warmup": args.warmup, "summary": summary,
                                    "samples": samples, "llm_samples": llm_samples}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
