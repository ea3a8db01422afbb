"""The client side of a video chat server, shared by tests and benchmarks: the request body,
one streamed request timed, and vLLM's Prometheus ``/metrics``.

    >>> from mmgvid_vllm.client import chat_body, stream_chat, metrics_text, metric_sum
    >>> body = chat_body(model, data_url(video), retention=0.25, max_tokens=1)
    >>> result = stream_chat(url, body)              # result.ttft, .latency, .usage["prompt_tokens"]
    >>> metric_sum(metrics_text(url), "vllm:request_prefill_time_seconds_sum")

TTFT is ``vllm bench serve``'s: request sent -> first streamed chunk with ``choices``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import requests

__all__ = ["PROMPT", "StreamResult", "chat_body", "metric_samples", "metric_sum", "metrics_text", "stream_chat"]

PROMPT = "What happens in this video?"

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def chat_body(model: str | None, video_url: str, *, retention: float | None = None, max_tokens: int = 1,
              prompt: str = PROMPT, video_uuid: str | None = None, **params) -> dict:
    """A greedy chat-completions body: one user message = the video (``http(s)://``, ``file://`` or
    ``data:`` URL) + ``prompt``; ``retention`` goes in ``mm_processor_kwargs.mmgvid_retention``;
    ``params`` (``stream``, ``ignore_eos``, ``mm_processor_kwargs``...) are added as they are.
    ``model=None`` leaves the model out (the caller adds it); ``video_uuid``: the video's multimodal
    ``uuid`` (vLLM's cache key for it; a new one per request means no cache answers)."""
    video = {"type": "video_url", "video_url": {"url": video_url}}
    if video_uuid is not None:
        video["uuid"] = video_uuid
    body = {
        "messages": [{"role": "user", "content": [
            video,
            {"type": "text", "text": prompt},
        ]}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    if model is not None:
        body["model"] = model
    if retention is not None:
        body["mm_processor_kwargs"] = {"mmgvid_retention": retention}
    return body | params


@dataclass
class StreamResult:
    """One streamed request: ``ttft`` and ``latency`` in seconds, the final ``usage``, the text."""

    ttft: float
    latency: float
    usage: dict
    text: str


def stream_chat(url: str, body: dict, timeout: float = 600.0, path: str = "/v1/chat/completions") -> StreamResult:
    """POST ``body`` to ``url`` + ``path`` as a stream (with ``include_usage``) and time it;
    ``path="/v1/completions"`` streams a plain completion the same way.

    Raises ``RuntimeError`` on an HTTP error, an error in the stream, or a stream without a token."""
    body = body | {"stream": True, "stream_options": {"include_usage": True}}
    ttft, usage, text = None, None, []
    start = time.perf_counter()
    with requests.post(f"{url}{path}", json=body, stream=True, timeout=timeout) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:1000]}")
        for line in response.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            if choices := chunk.get("choices"):
                if ttft is None:
                    ttft = time.perf_counter() - start
                text.append((choices[0].get("delta") or {}).get("content") or choices[0].get("text") or "")
            usage = chunk.get("usage") or usage
    latency = time.perf_counter() - start
    if ttft is None or usage is None:
        raise RuntimeError("the stream ended without a token or without usage")
    return StreamResult(ttft, latency, usage, "".join(text))


def metrics_text(url: str, timeout: float = 30.0) -> str:
    """The server's ``/metrics`` (Prometheus text format)."""
    response = requests.get(f"{url}/metrics", timeout=timeout)
    response.raise_for_status()
    return response.text


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of every sample in Prometheus text-format ``text``."""
    return [(name, dict(_LABEL.findall(labels or "")), float(value)) for name, labels, value in _SAMPLE.findall(text)]


def metric_sum(text: str, name: str) -> float:
    """The samples called ``name`` (e.g. ``vllm:request_prefill_time_seconds_sum``), summed over label sets."""
    return sum(value for sample, _, value in metric_samples(text) if sample == name)
