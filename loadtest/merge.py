"""Merge the ``results.json`` of shards run on several machines into one result.

Shards must have run the same sweep (same configurations, video and number of points,
``--shard k/n`` with distinct ``k``). Point ``p`` of every shard becomes point ``p`` of
the merge: its requests are pooled and re-summarised (percentiles over all requests;
throughput over first start -> last end across shards, which assumes synchronised
clocks, e.g. NTP, and shards started together with ``--start-at``/``--slot``). The
merged load level is the sum of the shards' levels (2 shards x concurrency 8 = 16).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .stats import summarize

__all__ = ["merge_results", "load_results"]


def load_results(paths: list[str | Path]) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def merge_results(results: list[dict]) -> dict:
    """One result whose points pool the shards' requests; raises ValueError on mismatch."""
    if not results:
        raise ValueError("nothing to merge")
    first = results[0]
    for r in results[1:]:
        for key in ("configs", "video"):
            if r[key] != first[key]:
                raise ValueError(f"shards differ in {key!r}: {r[key]} vs {first[key]}")
        if [(p["config"], p["mode"]) for p in r["points"]] != [(p["config"], p["mode"]) for p in first["points"]]:
            raise ValueError("shards ran different points (configs/modes/order)")
    shards = [s for r in results for s in r["shards"]]
    warnings = list(dict.fromkeys(w for r in results for w in r["warnings"]))
    indices = [s["index"] for s in shards]
    if len(set(indices)) != len(indices):
        warnings.append(f"shard indices repeat ({indices}): some videos were sent more than once")
    points = []
    for group in zip(*(r["points"] for r in results)):
        requests = sorted((q for p in group for q in p["requests"]), key=lambda q: q["start"])
        levels = [p["level"] for p in group]
        total = sum(float(lv) for lv in levels)
        points.append({
            "config": group[0]["config"], "mode": group[0]["mode"],
            "level": int(total) if group[0]["mode"] == "concurrency" else total if math.isfinite(total) else "inf",
            "shard_levels": levels, "max_concurrency": group[0].get("max_concurrency"),
            "summary": summarize(requests), "requests": requests,
        })
    return {
        **{k: first[k] for k in ("format_version", "created", "configs", "video", "plan")},
        "shards": shards,
        "cache_checks": [r["cache_checks"] for r in results],
        "warnings": warnings,
        "points": points,
    }
