"""Checks on a target server: its URL, its model, and whether its caches are off.

Comparisons of pruned vs unpruned serving are only fair with vLLM's caches off
(``--no-enable-prefix-caching --mm-processor-cache-gb 0``): a prefix-cache or
multimodal-processor-cache hit skips exactly the work that pruning shortens. We read
vLLM's Prometheus ``/metrics``:

* ``vllm:cache_config_info{enable_prefix_caching="True",...}`` -> prefix caching is on;
* ``vllm:mm_cache_queries`` grows only while the multimodal processor cache is on;
* ``vllm:prefix_cache_hits`` / ``vllm:mm_cache_hits`` growing during the run = real hits.

Targets are only the URLs the user gives (default loopback); redirects are not followed.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

import requests

__all__ = ["check_url", "served_model", "metric_samples", "metric_sum", "parse_metrics", "CacheProbe"]

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
COUNTERS = ("prefix_cache_queries", "prefix_cache_hits", "mm_cache_queries", "mm_cache_hits")


def check_url(url: str) -> str:
    """Normalise a user-given server root (``http[s]://host[:port]``); raise ValueError otherwise."""
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"not an http(s) server URL: {url!r}")
    return url


def served_model(url: str, timeout: float = 30) -> str:
    """The first model id in ``GET /v1/models``."""
    r = requests.get(url + "/v1/models", timeout=timeout, allow_redirects=False)
    r.raise_for_status()
    return r.json()["data"][0]["id"]


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of every sample in Prometheus text-format ``text`` (vLLM's /metrics)."""
    return [(name, dict(_LABEL.findall(labels or "")), float(value)) for name, labels, value in _SAMPLE.findall(text)]


def metric_sum(text: str, name: str) -> float:
    """The samples called ``name`` (e.g. ``vllm:request_prefill_time_seconds_sum``), summed over label sets."""
    return sum(value for sample, _, value in metric_samples(text) if sample == name)


def parse_metrics(text: str) -> dict:
    """``{"prefix_caching": bool | None, "<counter>": float | None}`` from /metrics text.

    Counters are summed over engines; ``_total`` suffixes (Prometheus counters) accepted.
    """
    out: dict = {"prefix_caching": None, **{c: None for c in COUNTERS}}
    for name, labels, value in metric_samples(text):
        name = name.removeprefix("vllm:").removesuffix("_total")
        if name == "cache_config_info":
            if "enable_prefix_caching" in labels:
                on = labels["enable_prefix_caching"].lower() == "true"
                out["prefix_caching"] = bool(out["prefix_caching"]) or on
        elif name in COUNTERS:
            out[name] = (out[name] or 0.0) + value
    return out


class CacheProbe:
    """Snapshots of one server's cache metrics; ``warnings()`` says what looks unfair."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.snapshots: dict[str, dict | None] = {}

    def snapshot(self, label: str) -> None:
        try:
            r = requests.get(self.url + "/metrics", timeout=30, allow_redirects=False)
            r.raise_for_status()
            self.snapshots[label] = parse_metrics(r.text)
        except requests.RequestException:
            self.snapshots[label] = None

    def _delta(self, key: str, a: str, b: str) -> float | None:
        sa, sb = self.snapshots.get(a), self.snapshots.get(b)
        if not sa or not sb or sa[key] is None or sb[key] is None:
            return None
        return sb[key] - sa[key]

    def warnings(self) -> list[str]:
        """Messages for: no metrics, prefix caching on, mm cache on, cache hits during the run.

        Expects snapshots ``start`` (before warm-up), ``warm`` (after it), ``end``.
        """
        first = self.snapshots.get("start")
        if not first:
            return [f"{self.url}: no vLLM /metrics; cannot check that prefix caching and the mm processor cache are off"]
        out = []
        if first["prefix_caching"]:
            out.append(f"{self.url}: prefix caching is ON (start vLLM with --no-enable-prefix-caching)")
        if (self._delta("mm_cache_queries", "start", "warm") or 0) > 0 or (self._delta("mm_cache_queries", "start", "end") or 0) > 0:
            out.append(f"{self.url}: the multimodal processor cache is ON (start vLLM with --mm-processor-cache-gb 0)")
        for key in ("prefix_cache_hits", "mm_cache_hits"):
            hits = self._delta(key, "warm", "end")
            if hits:
                out.append(f"{self.url}: {key.replace('_', ' ')} grew by {hits:.0f} during the measured run "
                           "(caches on, or videos reused: a run with the same --seed/--shard already sent them)")
        return out

    def to_json(self) -> dict:
        return {"url": self.url, "snapshots": self.snapshots, "warnings": self.warnings()}
