"""Summarise one point's request records with ``vllm bench serve``'s metric names.

Latencies are in milliseconds: ``{mean,median,std,p50,p90,p99}_{ttft,tpot,itl,e2el}_ms``
(TPOT per request = (latency - TTFT) / (output tokens - 1), requests with one output token
have none). Throughputs divide by the point's wall time, first request sent -> last one
done: ``request_throughput`` (req/s), ``output_throughput`` and ``total_token_throughput``
(tok/s). Failed requests count in ``failed`` and ``errors`` (message -> count) only.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["PERCENTILES", "summarize"]

PERCENTILES = (50, 90, 99)


def _dist(name: str, values_s: list[float]) -> dict:
    ms = np.asarray(values_s, dtype=float) * 1e3
    out = {}
    for stat, fn in (("mean", np.mean), ("median", np.median), ("std", np.std)):
        out[f"{stat}_{name}_ms"] = float(fn(ms)) if ms.size else None
    for p in PERCENTILES:
        out[f"p{p}_{name}_ms"] = float(np.percentile(ms, p)) if ms.size else None
    return out


def summarize(records: list[dict]) -> dict:
    """``records``: ``RequestRecord.to_json()`` dicts (possibly from several shards)."""
    ok = [r for r in records if r["ok"]]
    failed = [r for r in records if not r["ok"]]
    if records:
        begin = min(r["start"] for r in records)
        end = max(r["start"] + (r["latency"] or 0.0) for r in records)
        duration = max(end - begin, 1e-9)
    else:
        duration = 0.0
    prompt = sum(r["prompt_tokens"] or 0 for r in ok)
    output = sum(r["completion_tokens"] or 0 for r in ok)
    tpot = [(r["latency"] - r["ttft"]) / (r["completion_tokens"] - 1)
            for r in ok if (r["completion_tokens"] or 0) > 1]
    summary = {
        "completed": len(ok),
        "failed": len(failed),
        "errors": dict(Counter(r["error"] for r in failed)),
        "duration_s": duration,
        "total_input_tokens": prompt,
        "total_output_tokens": output,
        "mean_prompt_tokens": prompt / len(ok) if ok else None,
        "mean_output_tokens": output / len(ok) if ok else None,
        "request_throughput": len(ok) / duration if duration else 0.0,
        "output_throughput": output / duration if duration else 0.0,
        "total_token_throughput": (prompt + output) / duration if duration else 0.0,
    }
    summary |= _dist("ttft", [r["ttft"] for r in ok])
    summary |= _dist("tpot", tpot)
    summary |= _dist("itl", [x for r in ok for x in r["itl"]])
    summary |= _dist("e2el", [r["latency"] for r in ok])
    return summary
