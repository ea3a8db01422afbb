"""Measured KV-cache capacity: how many video requests run at once, unpruned vs pruned.

For each configuration (retention, sent as `mm_processor_kwargs.mmgvid_retention`; 1.0 = pruning
off) N streaming chat requests with the same video (one data URL, built once: the server's
caches must be off, `--mm-processor-cache-gb 0 --no-enable-prefix-caching`, so every request is
decoded, preprocessed, encoded and prefilled on its own) and long outputs (`--max-tokens`,
`ignore_eos`) are sent at once. /metrics is polled every `--poll` s for
`vllm:num_requests_running`, `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc` (older
vLLM: `vllm:gpu_cache_usage_perc`) and `vllm:num_preemptions_total`.

Two peaks are reported. `peak running` is vLLM's gauge; it also counts requests admitted but
still being prefilled, so right after a burst it can exceed what fits (the preemptions then show
it). `peak decoding` is measured on the client: the most requests streaming tokens at the same
moment, from each stream's decoding intervals (runs of tokens with no pause over `--gap` s; a
preempted request pauses), i.e. requests whose whole prompt is in the KV cache. Either is a
capacity only if the KV cache was the limit (`saturated`).

A configuration stops once for `--plateau` s with requests waiting neither running nor the
streaming count has risen and no new request has finished its prefill (`vllm:prompt_tokens_total`
counts a request once, at its first prefill; slow engine steps, e.g. on a CPU, then do not end a
configuration early with the cache half empty), when
all requests are done, or after `--time-limit` s; then every request is cancelled (the
connections close, vLLM aborts them) and the next configuration starts once running and waiting
are back to 0.

Hold (`--hold auto`, the default): the API server decodes and preprocesses each video on the CPU
(~190 ms for 32 frames at 384 px), so requests reach the engine a few per second and the first
ones would be thousands of tokens into their outputs before the last arrives. Where the server has
vLLM's dev endpoints (`VLLM_SERVER_DEV_MODE=1`: `/pause`, `/resume`), the engine is paused with
`mode=keep` while the N requests are preprocessed and queued (counted by the plugin's
`mmgvid_api_processed_videos_total`, one per processed video), then resumed: the scheduler then
admits requests until the KV cache is full, with only a few output tokens each. The engine is
always resumed on exit. Without those endpoints (or `--hold off`) requests simply flow in.

N (`--requests auto`, the default) = `--overcommit` (1.15) x the computed capacity + 8, from one
probe request per configuration (its prompt tokens) and the KV cache size in
`vllm:cache_config_info` (kv_cache_size_tokens, else num_gpu_blocks x block_size; computed
capacity = blocks // blocks per prompt + 1 token), at most `--max-requests`. Memory: queued
requests hold their preprocessed frames (32 x 3 x 384 x 384 float32 = 57 MB per video) in the
engine process until scheduled.

`saturated`: the KV cache was the limit (a plateau with requests waiting, preemptions, or >= 95%
usage).

    python benchmarks/gpu/max_concurrency.py --url http://127.0.0.1:8000 --retentions 1.0 0.25 --max-tokens 1024
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path

import aiohttp
from tqdm import tqdm

from mmgvid_vllm.client import chat_body, metric_samples
from mmgvid_vllm.media import data_url, make_video_bytes

GAUGES = {
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
    "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "preemptions": ("vllm:num_preemptions_total",),
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "processed_videos": ("mmgvid_api_processed_videos_total",),
}


def parse_metrics(text: str) -> dict:
    """The values this script needs from one /metrics scrape (summed over label sets; kv_usage
    averaged over engines; None where the server has no such series)."""
    values: dict[str, list[float]] = {}
    info: dict[str, str] = {}
    for name, labels, value in metric_samples(text):
        values.setdefault(name, []).append(value)
        if name == "vllm:cache_config_info" and not info:
            info = labels
    out: dict = {}
    for key, names in GAUGES.items():
        found = next((values[n] for n in names if n in values), None)
        if found is None:
            out[key] = None
        elif key == "kv_usage":
            out[key] = sum(found) / len(found)
        else:
            out[key] = sum(found)
    out["kv_tokens"] = out["block_size"] = None
    try:
        out["block_size"] = int(info["block_size"])
        out["kv_tokens"] = int(info["num_gpu_blocks"]) * out["block_size"]
        out["kv_tokens"] = int(info["kv_cache_size_tokens"])  # vLLM's own figure where it has one
    except (KeyError, ValueError):
        pass
    return out


async def scrape(session: aiohttp.ClientSession, url: str) -> dict:
    # A new connection each time: with several API servers any of them may answer (the values are
    # shared through prometheus' multiprocess files).
    async with session.get(f"{url}/metrics", headers={"Connection": "close"}) as r:
        r.raise_for_status()
        return parse_metrics(await r.text())


def max_overlap(intervals: list[list[float]]) -> tuple[int, float | None]:
    """The most closed intervals [start, end] that share one moment, and that moment."""
    events = sorted([(a, 0) for a, _ in intervals] + [(b, 1) for _, b in intervals])  # starts before ends
    best, when, count = 0, None, 0
    for t, kind in events:
        count += 1 if kind == 0 else -1
        if count > best:
            best, when = count, t
    return best, when


def _body(model: str, video: str, retention: float, max_tokens: int, **params) -> dict:
    return chat_body(model, video, retention=retention, max_tokens=max_tokens, prompt="Describe the video in detail.",
                     ignore_eos=True, **params)


async def probe(session: aiohttp.ClientSession, url: str, model: str, video: str, retention: float) -> int:
    """One short request: the prompt length of this configuration (also a warm-up)."""
    async with session.post(f"{url}/v1/chat/completions", json=_body(model, video, retention, 1)) as r:
        text = await r.text()
        if r.status != 200:
            raise RuntimeError(f"probe request answered {r.status}: {text[:1000]}")
        return json.loads(text)["usage"]["prompt_tokens"]


async def long_request(session: aiohttp.ClientSession, url: str, body: dict, t0: float, gap: float,
                       state: dict) -> None:
    """Stream one request until it ends or is cancelled; records when its first chunk came, how
    many chunks (about one per token) arrived, and its decoding intervals: runs of chunks (relative
    to t0) with no pause longer than `gap` s (a preempted request pauses)."""
    state.update(first_chunk_s=None, last_chunk=None, chunks=0, status=None, error=None, done=False, runs=[])
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body) as r:
            state["status"] = r.status
            if r.status != 200:
                state["error"] = (await r.text())[:500]
                return
            async for data in r.content.iter_any():
                now = time.monotonic()
                if state["first_chunk_s"] is None:
                    state["first_chunk_s"] = now - t0
                state["last_chunk"] = now
                runs, rel = state["runs"], now - t0
                if runs and rel - runs[-1][1] <= gap:
                    runs[-1][1] = rel
                else:
                    runs.append([rel, rel])
                state["chunks"] += data.count(b"data: ")
        state["done"] = True
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, reported in the summary
        state["error"] = repr(exc)[:500]


async def set_paused(session: aiohttp.ClientSession, url: str, paused: bool) -> None:
    path = "/pause?mode=keep&clear_cache=false" if paused else "/resume"
    async with session.post(url + path) as r:
        if r.status != 200:
            raise RuntimeError(f"{path} answered {r.status}: {(await r.text())[:500]}")


async def has_pause(session: aiohttp.ClientSession, url: str) -> bool:
    async with session.get(f"{url}/is_paused") as r:
        return r.status == 200


async def wait_idle(session: aiohttp.ClientSession, url: str, poll: float, timeout: float) -> dict:
    """Wait until vLLM reports nothing running or waiting (True) or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        m = await scrape(session, url)
        if (m["running"] or 0) == 0 and (m["waiting"] or 0) == 0:
            return m
        if time.monotonic() > deadline:
            print(f"warning: still {m['running']} running, {m['waiting']} waiting after {timeout:.0f} s", flush=True)
            return m
        await asyncio.sleep(poll)


async def run_config(session, args, model: str, video: str, retention: float, dev: bool, progress: bool) -> dict:
    """One configuration; `dev`: the server has /pause and /resume. Holding also needs the plugin's
    per-video counter, which exists once a video was processed (the probe request here)."""
    url = args.url
    await wait_idle(session, url, args.poll, 120)
    prompt_tokens = await probe(session, url, model, video, retention)
    m0 = await wait_idle(session, url, args.poll, 60)
    hold = dev and m0["processed_videos"] is not None
    if not hold and args.hold == "on":
        raise SystemExit("--hold on needs the server's /pause (VLLM_SERVER_DEV_MODE=1) and the mmgvid plugin's metrics")
    if not hold and args.hold == "auto":
        tqdm.write("note: no /pause endpoint (start the server with VLLM_SERVER_DEV_MODE=1) or no mmgvid metrics: "
                   "requests flow in as the API server preprocesses them")
    kv_tokens, block = m0["kv_tokens"], m0["block_size"]
    computed = None
    if kv_tokens and block:
        # vLLM's own estimate: whole blocks per request of prompt + one output token
        computed = (kv_tokens // block) // math.ceil((prompt_tokens + 1) / block)
    if args.requests == "auto":
        if computed is None:
            tqdm.write("warning: no KV cache size in vllm:cache_config_info; "
                       f"sending --max-requests ({args.max_requests})")
            n = args.max_requests
        else:
            n = min(args.max_requests, math.ceil(args.overcommit * computed) + 8)
    else:
        n = int(args.requests)
    result = {"retention": retention, "prompt_tokens": prompt_tokens, "requests": n, "hold": hold,
              "kv_cache_tokens": kv_tokens, "computed_capacity": computed}
    tqdm.write(f"retention {retention}: prompt {prompt_tokens} tokens, computed capacity {computed}, "
               f"sending {n} requests" + (" (engine paused until all are queued)" if hold else ""))

    body = _body(model, video, retention, args.max_tokens, stream=True)
    preempt0 = m0["preemptions"] or 0
    processed0 = m0["processed_videos"] or 0
    states = [dict() for _ in range(n)]
    timeline: list[dict] = []
    peak = {"running": -1}
    peak_streaming = -1
    prefilled = m0["prompt_tokens"] or 0
    t0 = time.monotonic()
    tasks = []
    paused = False
    try:
        if hold:
            await set_paused(session, url, True)
            paused = True
        tasks = [asyncio.create_task(long_request(session, url, body, t0, args.gap, s)) for s in states]
        last_log = t0
        if hold:
            hold_deadline = time.monotonic() + args.hold_timeout
            with tqdm(total=n, desc=f"r={retention} queued (paused)", disable=not progress) as bar:
                while True:
                    m = await scrape(session, url)
                    queued = int((m["processed_videos"] or 0) - processed0)
                    failed = sum(1 for s in states if s.get("error") or (s.get("status") not in (None, 200)))
                    bar.update(max(0, min(queued, n) - bar.n))
                    if not progress and time.monotonic() - last_log >= args.log_every:
                        last_log = time.monotonic()
                        print(f"  [{last_log - t0:6.1f} s] r={retention} paused, {queued}/{n} queued, "
                              f"{failed} failed", flush=True)
                    if queued + failed >= n:
                        break
                    if time.monotonic() > hold_deadline:
                        tqdm.write(f"warning: only {queued} of {n} requests preprocessed after "
                                   f"{args.hold_timeout:.0f} s; resuming")
                        break
                    await asyncio.sleep(args.poll)
            await asyncio.sleep(1.0)  # the last processed requests reach the engine's queue
            result["queue_s"] = time.monotonic() - t0
            await set_paused(session, url, False)
            paused = False
        t_run = time.monotonic()
        last_rise = t_run
        stop = "time limit"
        with tqdm(desc=f"r={retention} running", disable=not progress,
                  bar_format="{desc}: {postfix} [{elapsed}]") as bar:
            while True:
                m = await scrape(session, url)
                now = time.monotonic()
                decoding = sum(1 for s in states if s.get("last_chunk") and s["last_chunk"] >= now - args.gap
                               and not s.get("done"))
                point = {"t": round(now - t0, 3), "running": m["running"], "waiting": m["waiting"],
                         "kv_usage": m["kv_usage"], "preemptions": (m["preemptions"] or 0) - preempt0,
                         "streaming": decoding}  # streams with a token in the last --gap s
                timeline.append(point)
                if (m["running"] or 0) > peak["running"]:
                    peak = dict(point)
                    last_rise = now
                if decoding > peak_streaming:
                    peak_streaming = decoding
                    last_rise = now
                if (m["prompt_tokens"] or 0) > prefilled:  # a new request finished its prefill: still admitting
                    prefilled = m["prompt_tokens"]
                    last_rise = now
                bar.set_postfix_str(f"running {m['running']:.0f} waiting {m['waiting']:.0f} "
                                    f"kv {100 * (m['kv_usage'] or 0):.1f}% peak {peak['running']:.0f} "
                                    f"streaming {decoding} (peak {peak_streaming}) "
                                    f"preempted {point['preemptions']:.0f}")
                if not progress and now - last_log >= args.log_every:
                    last_log = now
                    print(f"  [{now - t0:6.1f} s] r={retention} running {m['running']:.0f} "
                          f"waiting {m['waiting']:.0f} kv {100 * (m['kv_usage'] or 0):.1f}% "
                          f"streaming {decoding} preempted {point['preemptions']:.0f}", flush=True)
                if (m["waiting"] or 0) > 0 and peak["running"] > 0 and now - last_rise >= args.plateau:
                    stop = "plateau with requests waiting"
                    break
                if all(t.done() for t in tasks):
                    stop = "all requests finished"
                    break
                if now - t_run > args.time_limit:
                    break
                await asyncio.sleep(args.poll)
    finally:
        if paused:
            await set_paused(session, url, False)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    end = await wait_idle(session, url, args.poll, args.drain_timeout)
    peak_dec, peak_dec_t = max_overlap([run for st in states for run in st.get("runs", [])])
    at = min(timeline, key=lambda p: abs(p["t"] - peak_dec_t)) if timeline and peak_dec_t is not None else {}
    errors = [s["error"] for s in states if s.get("error")]
    kv_at_peak = peak.get("kv_usage")
    max_kv = max((p["kv_usage"] or 0) for p in timeline) if timeline else None
    preempted = max((p["preemptions"] for p in timeline), default=0)
    # Evidence that the KV cache was the limit: a plateau with requests waiting, preemptions (vLLM
    # ran out of blocks), or a full cache.
    saturated = stop == "plateau with requests waiting" or preempted > 0 or (max_kv or 0) >= 0.95
    result.update(
        stop=stop,
        saturated=saturated,
        peak_running=peak["running"],
        kv_usage_at_peak=kv_at_peak,
        waiting_at_peak=peak.get("waiting"),
        time_to_peak_s=peak.get("t"),
        peak_decoding=peak_dec,
        time_to_peak_decoding_s=peak_dec_t,
        kv_usage_at_peak_decoding=at.get("kv_usage"),  # the nearest scrape
        preemptions_at_peak_decoding=at.get("preemptions"),
        max_kv_usage=max_kv,
        preemptions=preempted,
        # KV tokens held per running request at the peak (prompt + outputs so far + block rounding)
        kv_tokens_per_running_request=(kv_at_peak * kv_tokens / peak["running"])
        if kv_tokens and kv_at_peak is not None and peak["running"] > 0 else None,
        started_requests=sum(1 for s in states if s.get("first_chunk_s") is not None),
        errors=len(errors),
        first_errors=errors[:3],
        idle_after=(end["running"] or 0) == 0 and (end["waiting"] or 0) == 0,
        timeline=timeline,
    )
    return result


async def main_async(args) -> dict:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        async with session.get(f"{args.url}/v1/models") as r:
            model = args.model or (await r.json())["data"][0]["id"]
        m = await scrape(session, args.url)
        dev = False
        if args.hold != "off":
            dev = await has_pause(session, args.url)
            if dev:
                await set_paused(session, args.url, False)  # a server left paused by an earlier run
        video = data_url(make_video_bytes(args.frames, args.size, args.size, seed=0))
        results = []
        for retention in args.retentions:
            results.append(await run_config(session, args, model, video, retention, dev, not args.no_progress))
        return {"model": model, "frames": args.frames, "size": args.size, "max_tokens": args.max_tokens,
                "kv_cache_tokens": m["kv_tokens"], "results": results}


def requests_arg(value: str) -> str:
    if value != "auto" and not (value.isdigit() and int(value) > 0):
        raise argparse.ArgumentTypeError("a positive integer or 'auto'")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default=None, help="served model name (default: the server's first)")
    parser.add_argument("--retentions", type=float, nargs="+", default=[1.0, 0.25],
                        help="one configuration each; the first is the baseline of the ratio (default: 1.0 0.25)")
    parser.add_argument("--requests", type=requests_arg, default="auto",
                        help="requests per configuration, or auto (--overcommit x computed capacity + 8; default)")
    parser.add_argument("--overcommit", type=float, default=1.15,
                        help="--requests auto sends this x the computed capacity + 8 (default: 1.15)")
    parser.add_argument("--max-requests", type=int, default=1000,
                        help="cap for --requests auto, and its value without a known KV size (default: 1000)")
    parser.add_argument("--max-tokens", type=int, default=1024,
                        help="output tokens per request, ignore_eos (default: 1024)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=384, help="video width and height in pixels (default: 384)")
    parser.add_argument("--time-limit", type=float, default=120.0,
                        help="seconds per configuration after the requests are released (default: 120)")
    parser.add_argument("--plateau", type=float, default=8.0,
                        help="stop once, with requests waiting, running and streaming have not risen and no "
                        "request finished its prefill for this many seconds (default: 8)")
    parser.add_argument("--hold", choices=("auto", "on", "off"), default="auto",
                        help="pause the engine until all requests are queued (auto: where /pause exists)")
    parser.add_argument("--hold-timeout", type=float, default=300.0,
                        help="longest wait for the requests to be preprocessed while paused (default: 300)")
    parser.add_argument("--drain-timeout", type=float, default=180.0,
                        help="longest wait for running/waiting to return to 0 after cancelling (default: 180)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between /metrics scrapes (default: 0.5)")
    parser.add_argument("--gap", type=float, default=3.0,
                        help="a stream pause longer than this many seconds ends a request's decoding interval "
                        "(it was preempted); must exceed the longest engine step (default: 3)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars; a status line every --log-every s")
    parser.add_argument("--log-every", type=float, default=10.0, help="seconds between status lines with --no-progress")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/max_concurrency.json"))
    args = parser.parse_args()

    report = asyncio.run(main_async(args))
    rows = report["results"]
    base, base_dec = rows[0]["peak_running"] or 1, rows[0]["peak_decoding"] or 1

    def pct(x):
        return f"{100 * x:.1f}%" if x is not None else "n/a"

    print("| retention | prompt tokens | requests | peak running | KV usage at peak | waiting at peak | "
          "peak decoding | KV usage at peak decoding | preemptions | KV tokens / running request | "
          "computed capacity | saturated | running vs first | decoding vs first |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        per = f"{r['kv_tokens_per_running_request']:.0f}" if r["kv_tokens_per_running_request"] else "n/a"
        print(f"| {r['retention']} | {r['prompt_tokens']} | {r['requests']} | {r['peak_running']:.0f} | "
              f"{pct(r['kv_usage_at_peak'])} | {r['waiting_at_peak'] or 0:.0f} | {r['peak_decoding']} | "
              f"{pct(r['kv_usage_at_peak_decoding'])} | {r['preemptions']:.0f} | {per} | {r['computed_capacity']} | "
              f"{'yes' if r['saturated'] else 'no'} ({r['stop']}) | {r['peak_running'] / base:.2f}x | "
              f"{r['peak_decoding'] / base_dec:.2f}x |")
    for r in rows:
        if r["errors"]:
            print(f"retention {r['retention']}: {r['errors']} request errors, e.g. {r['first_errors'][0]}")
        if r["stop"] == "plateau with requests waiting" and (r["max_kv_usage"] or 0) < 0.9:
            print(f"retention {r['retention']}: KV cache at most {100 * (r['max_kv_usage'] or 0):.0f}% used: "
                  "the limit was something else (--max-num-seqs, encoder budget)")
        if r["kv_tokens_per_running_request"] and r["kv_tokens_per_running_request"] < r["prompt_tokens"]:
            print(f"retention {r['retention']}: at the running peak a request held "
                  f"{r['kv_tokens_per_running_request']:.0f} KV tokens on average, fewer than its "
                  f"{r['prompt_tokens']} prompt tokens: the peak counts requests "
                  "still being prefilled (see preemptions); peak decoding is the safer figure")
        if r["preemptions_at_peak_decoding"]:
            print(f"retention {r['retention']}: {r['preemptions_at_peak_decoding']:.0f} preemptions before "
                  "the decoding peak: a request preempted and resumed within --gap counts in between; "
                  "compare with peak running")
        if not r["idle_after"]:
            print(f"retention {r['retention']}: the server was not idle after cancelling")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
