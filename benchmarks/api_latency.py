"""Where a video request's API-server time goes (before the engine schedules it).

Two modes.

``offline`` (default; no server): builds vLLM's multimodal processor for a model the way the
API server does (``EngineArgs`` -> ``ModelConfig`` -> the model class's registered processor
factory -> ``apply``), once for vanilla vLLM's ``LlavaOnevisionMultiModalProcessor`` and once
for the plugin's ``MMGVidMultiModalProcessor``, and times, per request, with a fresh video each
time (no cache hits):

* ``decode``: vLLM's ``MediaConnector.fetch_video`` on the base64 data URL (base64 + container
  decode + frame sampling, vLLM's default OpenCV loader unless ``--video-backend``);
* ``hf_call``: the HF ``LlavaOnevisionProcessor`` alone on the decoded frames (what vLLM calls
  once per video: text ``<video>``, the video, ``return_tensors="pt"``), plus vLLM's dtype cast;
* ``apply``: the whole ``processor.apply`` the renderer runs (HF call, field configs, hashing,
  prompt updates), under vLLM's ``set_default_torch_num_threads()`` like the server, with
  vLLM's own ``TimingContext`` stage split; ``apply - hf_call`` is the rest of vLLM's (and the
  plugin's) processor work;
* ``apply`` for the plugin at each ``--retentions`` value, sent as per-request
  ``mm_processor_kwargs`` as the server receives it.

``server``: against a running OpenAI-compatible server (start it with
``--no-enable-prefix-caching --mm-processor-cache-gb 0`` so no request is a cache hit), one
streamed request at a time, distinct videos: TTFT, vLLM's ``vllm:request_prefill_time_seconds``,
``vllm:request_queue_time_seconds`` and TTFT - prefill - queue (= the API-side time, plus
transfer to the engine and the first token's way back). Pass ``--retentions`` only with the
plugin loaded (vanilla vLLM has no use for ``mmgvid_*`` keys); ``--no-kwargs`` sends none; ``--same-video``
repeats one video (with vLLM's default caches on, what a benchmark that reuses its video measures).

Medians over ``--repeats`` (after ``--warmup``); a table on stdout, JSON to ``--out``.

    .venv/bin/python -m benchmarks.api_latency                          # offline, tiny model
    .venv/bin/python -m benchmarks.api_latency server --url http://127.0.0.1:8000 --retentions 1.0 0.25
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks/results/api_latency_cpu.json"
PROMPT = "Describe the video."


def _videos(count: int, frames: int, size: int, first_seed: int = 1000) -> list[str]:
    from mmgvid_vllm.media import data_url, make_video_bytes

    return [data_url(make_video_bytes(frames, size, size, seed=first_seed + i)) for i in range(count)]


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


# -- offline ---------------------------------------------------------------------------------
def build_processors(model: str, server_mm_kwargs: dict | None):
    """(vanilla, plugin) processors of ``model``, built as the API server builds its own."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.models.llava_onevision import LlavaOnevisionForConditionalGeneration
    from vllm.multimodal import MULTIMODAL_REGISTRY

    from mmgvid_vllm.llava_onevision import MMGVidLlavaOnevisionForConditionalGeneration

    engine_args = EngineArgs(
        model=model, max_model_len=8192, limit_mm_per_prompt={"video": 1, "image": 1},
        mm_processor_kwargs=server_mm_kwargs, enforce_eager=True,
    )
    model_config = engine_args.create_model_config()
    ctx = MULTIMODAL_REGISTRY._create_processing_ctx(model_config)
    return tuple(
        cls._processor_factory.build_processor(ctx)
        for cls in (LlavaOnevisionForConditionalGeneration, MMGVidLlavaOnevisionForConditionalGeneration)
    )


def video_prompt_ids(processor) -> list[int]:
    tokenizer = processor.info.get_tokenizer()
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": PROMPT}]}]
    hf = processor.info.get_hf_processor()
    text = hf.apply_chat_template(messages, add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False)


def run_offline(args) -> dict:
    from vllm.multimodal.media.connector import MediaConnector
    from vllm.multimodal.processing import ProcessorInputs
    from vllm.multimodal.processing.context import TimingContext
    from vllm.utils.torch_utils import set_default_torch_num_threads

    from mmgvid_vllm.tiny_model import ensure_tiny_model

    model = args.model or str(ensure_tiny_model())
    vanilla, plugin = build_processors(model, json.loads(args.server_mm_kwargs) if args.server_mm_kwargs else None)
    prompt = video_prompt_ids(vanilla)
    media_io_kwargs = {"video": {"video_backend": args.video_backend}} if args.video_backend else {}
    connector = MediaConnector(media_io_kwargs=media_io_kwargs)
    ctx = vanilla.info.ctx

    configs = [("vanilla", vanilla, None)] + [(f"plugin r={r:g}", plugin, r) for r in args.retentions]
    rounds = args.warmup + args.repeats
    print(f"encoding {rounds * len(configs)} videos ({args.frames} frames, {args.size}x{args.size})...",
          file=sys.stderr)
    urls = _videos(rounds * len(configs), args.frames, args.size)

    samples: dict[str, dict[str, list[float]]] = {name: {} for name, _, _ in configs}
    tokens: dict[str, int] = {}
    for i in range(rounds):
        for j, (name, processor, retention) in enumerate(configs):
            url = urls[i * len(configs) + j]
            row: dict[str, float] = {}
            t0 = time.perf_counter()
            video = connector.fetch_video(url)
            row["decode"] = time.perf_counter() - t0

            items = processor.info.parse_mm_data({"video": [video]})
            hf_video = processor._get_hf_mm_inputs(items, {})[0]["videos"][0]  # what vLLM hands to HF
            with set_default_torch_num_threads():
                t0 = time.perf_counter()
                hf = processor.info.get_hf_processor()
                ctx.call_hf_processor(hf, {"text": hf.video_token, "videos": hf_video}, {})
                row["hf_call"] = time.perf_counter() - t0

            mm_kwargs = {} if retention is None else {"mmgvid_retention": retention}
            timing = TimingContext()
            with set_default_torch_num_threads():
                t0 = time.perf_counter()
                out = processor.apply(ProcessorInputs(prompt, items, hf_processor_mm_kwargs=mm_kwargs), timing)
                row["apply"] = time.perf_counter() - t0
            row["apply-hf_call"] = row["apply"] - row["hf_call"]
            for stage, secs in timing.stage_secs.items():
                row[f"apply:{stage}"] = secs
            row["decode+apply"] = row["decode"] + row["apply"]
            tokens[name] = len(out["prompt_token_ids"])
            if i >= args.warmup:
                for key, value in row.items():
                    samples[name].setdefault(key, []).append(value)

    summary = {name: {k: _median_ms(v) for k, v in rows.items()} for name, rows in samples.items()}
    columns = list(next(iter(summary.values())))
    print(f"\nmedian ms over {args.repeats} requests; torch threads in apply/hf_call: "
          f"vLLM's default (OMP_NUM_THREADS or 1)\n")
    print("| config | prompt tokens | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for name, s in summary.items():
        print(f"| {name} | {tokens[name]} | " + " | ".join(f"{s[c]:.1f}" for c in columns) + " |")
    return {"mode": "offline", "model": model, "prompt_tokens": tokens, "summary_ms": summary,
            "samples_s": samples}


# -- server ----------------------------------------------------------------------------------
def _scrape(url: str) -> dict[str, float]:
    from mmgvid_vllm.client import metric_sum, metrics_text

    text = metrics_text(url)
    return {kind: metric_sum(text, f"vllm:request_{kind}_time_seconds_sum") for kind in ("prefill", "queue")}


def _one_request(url: str, model: str, video: str, mm_kwargs: dict | None, max_tokens: int) -> dict:
    from mmgvid_vllm.client import chat_body, stream_chat

    body = chat_body(model, video, max_tokens=max_tokens, prompt=PROMPT)
    if mm_kwargs:
        body["mm_processor_kwargs"] = mm_kwargs
    before = _scrape(url)
    ttft = stream_chat(url, body).ttft
    time.sleep(0.1)  # let the engine publish the finished request's stats
    after = _scrape(url)
    prefill, queue = after["prefill"] - before["prefill"], after["queue"] - before["queue"]
    return {"ttft": ttft, "prefill": prefill, "queue": queue, "ttft-prefill-queue": ttft - prefill - queue}


def run_server(args) -> dict:
    import requests

    model = args.model or requests.get(f"{args.url}/v1/models", timeout=30).json()["data"][0]["id"]
    configs = [None] if args.no_kwargs else list(args.retentions)
    rounds = args.warmup + args.repeats
    print(f"encoding {rounds * len(configs)} videos...", file=sys.stderr)
    urls = _videos(1 if args.same_video else rounds * len(configs), args.frames, args.size, first_seed=5000)
    urls = urls * (rounds * len(configs)) if args.same_video else urls
    samples: dict[str, dict[str, list[float]]] = {}
    for i in range(rounds):
        for j, retention in enumerate(configs):
            name = "no mm_processor_kwargs" if retention is None else f"r={retention:g}"
            kwargs = None if retention is None else {"mmgvid_retention": retention}
            row = _one_request(args.url, model, urls[i * len(configs) + j], kwargs, args.max_tokens)
            if i >= args.warmup:
                for key, value in row.items():
                    samples.setdefault(name, {}).setdefault(key, []).append(value)
    summary = {name: {k: _median_ms(v) for k, v in rows.items()} for name, rows in samples.items()}
    print(f"\n{args.url}: median ms over {args.repeats} requests\n")
    print("| config | TTFT | prefill | queue | TTFT - prefill - queue |")
    print("|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['ttft']:.1f} | {s['prefill']:.1f} | {s['queue']:.1f} | {s['ttft-prefill-queue']:.1f} |")
    return {"mode": "server", "url": args.url, "label": args.label, "same_video": args.same_video,
            "summary_ms": summary, "samples_s": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("offline", "server"), default="offline")
    parser.add_argument("--model", default=None, help="offline: model path (default: the tiny model); "
                        "server: served name (default: the server's first)")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server mode: the server")
    parser.add_argument("--retentions", type=float, nargs="+", default=[1.0, 0.25],
                        help="per-request mmgvid_retention values (plugin)")
    parser.add_argument("--no-kwargs", action="store_true", help="server mode: send no mm_processor_kwargs (vanilla)")
    parser.add_argument("--same-video", action="store_true",
                        help="server mode: send one video every time (shows what vLLM's caches save on repeats)")
    parser.add_argument("--label", default="", help="server mode: a note stored with the results")
    parser.add_argument("--server-mm-kwargs", default=None,
                        help='offline: the server\'s --mm-processor-kwargs JSON, e.g. \'{"mmgvid_retention": 0.25}\'')
    parser.add_argument("--video-backend", default=None,
                        help="offline: vLLM video loader (default: VLLM_VIDEO_LOADER_BACKEND)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="JSON file; results are stored under a key per mode/label (merged into an existing file)")
    args = parser.parse_args()

    result = run_offline(args) if args.mode == "offline" else run_server(args)
    result.update(frames=args.frames, size=args.size, repeats=args.repeats)
    key = args.mode + (f":{args.label}" if args.label else "")
    stored = json.loads(args.out.read_text()) if args.out.exists() else {}
    stored[key] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stored, indent=1))
    print(f"\nwrote {args.out} [{key}]")


if __name__ == "__main__":
    main()
