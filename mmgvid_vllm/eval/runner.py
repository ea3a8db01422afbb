"""Run a multiple-choice video task against an OpenAI-compatible server at several retentions."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .prompt import build_prompt, parse_answer
from .tasks import Sample
from ..media import data_url
from .video import DEFAULT_NUM_FRAMES, sample_video

__all__ = ["EvalConfig", "run_eval", "summarize", "markdown_table"]


@dataclass
class EvalConfig:
    server: str = "http://127.0.0.1:8000/v1"
    model: str | None = None
    retentions: list[float] = field(default_factory=lambda: [1.0])
    num_frames: int = DEFAULT_NUM_FRAMES
    max_tokens: int = 8
    concurrency: int = 4
    max_side: int | None = None
    timeout: float = 600.0
    retries: int = 2
    api_key: str | None = None
    progress: bool = True

    @property
    def base_url(self) -> str:
        url = self.server.rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"


def _headers(cfg: EvalConfig) -> dict:
    h = {"Content-Type": "application/json"}
    if cfg.api_key:
        h["Authorization"] = f"Bearer {cfg.api_key}"
    return h


async def _served_model(session, cfg: EvalConfig) -> str:
    async with session.get(cfg.base_url + "/models", headers=_headers(cfg)) as r:
        r.raise_for_status()
        return (await r.json())["data"][0]["id"]


def request_body(model: str, video_url: str, prompt: str, retention: float, max_tokens: int) -> dict:
    """Greedy chat request: one ``video_url`` part + the MCQ text, with the per-request retention."""
    return {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": video_url}},
                    {"type": "text", "text": prompt},
                ],
            }
        ],
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "mm_processor_kwargs": {"mmgvid_retention": retention},
    }


async def _post(session, cfg: EvalConfig, body: dict) -> dict:
    import aiohttp

    last: Exception | None = None
    for attempt in range(cfg.retries + 1):
        try:
            async with session.post(cfg.base_url + "/chat/completions", json=body, headers=_headers(cfg)) as r:
                text = await r.text()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {text[:500]}")
                return json.loads(text)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            last = e
            await asyncio.sleep(1 + attempt)
    raise RuntimeError(f"request failed after {cfg.retries + 1} tries: {last!r}")


async def _run(samples: list[Sample], cfg: EvalConfig) -> tuple[list[dict], str]:
    import aiohttp

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None

    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.video].append(s)
    total = len(samples) * len(cfg.retentions)
    bar = tqdm(total=total, desc="mmgvid eval", unit="req", file=sys.stderr, disable=not cfg.progress) if tqdm else None
    records: list[dict] = []
    group_slots = asyncio.Semaphore(max(1, cfg.concurrency))
    request_slots = asyncio.Semaphore(max(1, cfg.concurrency))
    timeout = aiohttp.ClientTimeout(total=cfg.timeout)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        model = cfg.model or await _served_model(session, cfg)

        async def one(sample: Sample, url: str | None, meta: dict, retention: float, prep_error: str | None):
            rec = {
                "id": sample.id,
                "video": sample.video,
                "category": sample.category,
                "retention": retention,
                "answer": sample.answer,
                **meta,
                "response": None,
                "pred": None,
                "correct": False,
                "prompt_tokens": None,
                "completion_tokens": None,
                "latency_s": None,
                "error": prep_error,
            }
            if url is not None:
                body = request_body(model, url, build_prompt(sample.question, sample.options), retention, cfg.max_tokens)
                t0 = time.perf_counter()
                try:
                    async with request_slots:
                        resp = await _post(session, cfg, body)
                    text = resp["choices"][0]["message"].get("content") or ""
                    usage = resp.get("usage") or {}
                    pred = parse_answer(text, len(sample.options))
                    rec.update(
                        response=text,
                        pred=pred,
                        correct=pred == sample.answer,
                        prompt_tokens=usage.get("prompt_tokens"),
                        completion_tokens=usage.get("completion_tokens"),
                    )
                except Exception as e:  # recorded, counted as wrong
                    rec["error"] = f"{type(e).__name__}: {e}"
                rec["latency_s"] = round(time.perf_counter() - t0, 3)
            records.append(rec)
            if bar is not None:
                bar.update(1)

        async def group(video: str, items: list[Sample]):
            async with group_slots:
                url, meta, err = None, {"frames_sent": None, "source_frames": None}, None
                try:
                    sv = await asyncio.to_thread(sample_video, video, cfg.num_frames, cfg.max_side)
                    url = data_url(sv.mp4)
                    meta = {"frames_sent": sv.num_frames, "source_frames": sv.source_frames}
                except Exception as e:
                    err = f"video: {type(e).__name__}: {e}"
                await asyncio.gather(*(one(s, url, meta, r, err) for s in items for r in cfg.retentions))

        await asyncio.gather(*(group(v, items) for v, items in groups.items()))
    if bar is not None:
        bar.close()
    order = {(s.id, s.video): i for i, s in enumerate(samples)}
    rpos = {r: i for i, r in enumerate(cfg.retentions)}
    records.sort(key=lambda r: (rpos[r["retention"]], order.get((r["id"], r["video"]), 0)))
    return records, model


def summarize(records: list[dict], retentions: list[float]) -> list[dict]:
    """Per retention: accuracy, % of the unpruned (1.0, else the largest retention) accuracy, token means."""
    rows = []
    for r in retentions:
        recs = [x for x in records if x["retention"] == r]
        n = len(recs)
        correct = sum(1 for x in recs if x["correct"])
        toks = [x["prompt_tokens"] for x in recs if x["prompt_tokens"] is not None]
        cats: dict[str, list[bool]] = defaultdict(list)
        for x in recs:
            if x["category"]:
                cats[x["category"]].append(bool(x["correct"]))
        rows.append(
            {
                "retention": r,
                "n": n,
                "correct": correct,
                "accuracy": correct / n if n else 0.0,
                "answered": sum(1 for x in recs if x["pred"] is not None),
                "errors": sum(1 for x in recs if x["error"]),
                "mean_prompt_tokens": sum(toks) / len(toks) if toks else None,
                "per_category": {c: sum(v) / len(v) for c, v in sorted(cats.items())},
            }
        )
    ref = next((x for x in rows if x["retention"] == 1.0), None) or max(rows, key=lambda x: x["retention"], default=None)
    for x in rows:
        x["relative_to_unpruned"] = (x["accuracy"] / ref["accuracy"]) if ref and ref["accuracy"] > 0 else None
        x["reference_retention"] = ref["retention"] if ref else None
    return rows


def markdown_table(rows: list[dict], title: str = "") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| Retention | Accuracy (%) | % of unpruned | Mean prompt tokens | Answered | Errors | N |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in rows:
        rel = "-" if x["relative_to_unpruned"] is None else f"{100 * x['relative_to_unpruned']:.1f}"
        tok = "-" if x["mean_prompt_tokens"] is None else f"{x['mean_prompt_tokens']:.0f}"
        lines.append(
            f"| {x['retention']:g} | {100 * x['accuracy']:.1f} | {rel} | {tok} | {x['answered']} | {x['errors']} | {x['n']} |"
        )
    return "\n".join(lines) + "\n"


def run_eval(samples: list[Sample], cfg: EvalConfig, out: str | os.PathLike | None = None, task_name: str = "") -> dict:
    """Evaluate ``samples`` at every ``cfg.retentions``; write ``out`` (JSON) and ``out`` with ``.md`` if given."""
    t0 = time.perf_counter()
    records, model = asyncio.run(_run(samples, cfg))
    rows = summarize(records, cfg.retentions)
    result = {
        "task": task_name,
        "model": model,
        "server": cfg.base_url,
        "num_frames": cfg.num_frames,
        "max_tokens": cfg.max_tokens,
        "num_samples": len(samples),
        "wall_s": round(time.perf_counter() - t0, 2),
        "summary": rows,
        "markdown": markdown_table(rows, f"{task_name} ({model}, {cfg.num_frames} frames)" if task_name else ""),
        "samples": records,
    }
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
        out.with_suffix(".md").write_text(result["markdown"])
    return result
