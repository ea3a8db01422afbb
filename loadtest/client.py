"""One streamed OpenAI chat completion with a video, timed chunk by chunk.

Timing follows ``vllm bench serve``: TTFT = request sent -> first streamed chunk with
``choices``; ITL = gaps between consecutive chunks that carry text (vLLM's role-only
first chunk, sent together with the first token, is not a gap); E2E = sent -> stream end;
TPOT = (latency - TTFT) / (output tokens - 1). Token counts come from the final
``usage`` chunk (``stream_options.include_usage``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import aiohttp

__all__ = ["Target", "RequestRecord", "build_body", "stream_chat"]


@dataclass(frozen=True)
class Target:
    """Where and how one configuration sends its requests."""

    name: str
    url: str  # server root, e.g. http://127.0.0.1:8000
    model: str
    mm_processor_kwargs: dict | None = None  # e.g. {"mmgvid_retention": 0.25}


@dataclass
class RequestRecord:
    """The outcome of one request (times in seconds; ``start`` is UNIX time)."""

    start: float
    seed: int
    ok: bool = False
    error: str | None = None
    ttft: float | None = None
    latency: float | None = None
    itl: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["itl"] = [round(x, 6) for x in self.itl]
        return d


def build_body(target: Target, video_url: str, prompt: str, max_tokens: int, ignore_eos: bool) -> dict:
    """The chat-completions request body: one user message = the video + ``prompt``."""
    body = {
        "model": target.model,
        "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": video_url}},
            {"type": "text", "text": prompt},
        ]}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if ignore_eos:
        body["ignore_eos"] = True  # vLLM extension: every request yields max_tokens tokens
    if target.mm_processor_kwargs:
        body["mm_processor_kwargs"] = target.mm_processor_kwargs
    return body


async def stream_chat(session: aiohttp.ClientSession, target: Target, body: dict, seed: int) -> RequestRecord:
    """POST ``body`` to ``target`` and read the SSE stream; never raises for request errors."""
    rec = RequestRecord(start=time.time(), seed=seed)
    t0 = time.perf_counter()
    last = None
    try:
        async with session.post(target.url + "/v1/chat/completions", json=body, allow_redirects=False) as resp:
            if resp.status != 200:
                rec.error = f"HTTP {resp.status}: {(await resp.text())[:300]}"
                return rec
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    rec.error = f"stream error: {str(chunk['error'])[:300]}"
                    return rec
                now = time.perf_counter()
                if choices := chunk.get("choices"):
                    if rec.ttft is None:
                        rec.ttft = now - t0
                    delta = choices[0].get("delta") or {}
                    if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"):
                        if last is not None:
                            rec.itl.append(now - last)
                        last = now
                if chunk.get("usage"):
                    rec.prompt_tokens = chunk["usage"].get("prompt_tokens")
                    rec.completion_tokens = chunk["usage"].get("completion_tokens")
        rec.latency = time.perf_counter() - t0
        if rec.ttft is None:
            rec.error = "stream ended without any token"
        else:
            rec.ok = True
    except Exception as exc:  # timeouts, connection resets, bad JSON: all count as errors
        rec.error = f"{type(exc).__name__}: {str(exc)[:300]}"
    return rec
