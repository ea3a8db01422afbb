"""A sweep: every load level x every configuration, each a bounded point, into one result.

Order: levels outer, configurations inner, so slow drift on the server hits all
configurations alike. Each configuration first gets ``warmup`` untimed requests.
Every request of the sweep (warm-up included) sends a different video: request ``g``
of shard ``k`` of ``n`` uses seed ``seed + g * n + k``, so shards on several machines
never share a video either. ``start_at``/``slot`` align shards in time: point ``p``
starts at ``start_at + p * slot`` (UNIX seconds) on every shard.
"""

from __future__ import annotations

import datetime
import sys
import time
from dataclasses import asdict, dataclass

from .client import Target
from .corpus import Corpus
from .runner import Load, run_point
from .server_checks import CacheProbe
from .stats import summarize

__all__ = ["SweepPlan", "run_sweep"]

FORMAT_VERSION = 1


@dataclass
class SweepPlan:
    targets: list[Target]
    loads: list[Load]
    max_requests: int
    duration: float | None = None
    warmup: int = 2
    prompt: str = "Describe what happens in this video."
    max_tokens: int = 64
    ignore_eos: bool = True
    timeout: float = 600.0
    seed: int = 0
    shard_index: int = 0
    shard_count: int = 1
    start_at: float | None = None
    slot: float | None = None
    progress: bool = True

    def seeds(self, first: int, count: int) -> list[int]:
        """Video seeds of this shard's sweep-wide requests ``first .. first + count - 1``."""
        return [self.seed + g * self.shard_count + self.shard_index for g in range(first, first + count)]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _wait_until(t: float | None, what: str) -> None:
    if t is None:
        return
    delay = t - time.time()
    if delay < 0:
        _log(f"warning: {what} starts {-delay:.1f}s late (raise --slot)")
    else:
        time.sleep(delay)


def run_sweep(plan: SweepPlan, corpus: Corpus) -> dict:
    """Run the whole sweep; returns the JSON-ready result (requests included, for merging)."""
    n_warm = plan.warmup * len(plan.targets)
    n_points = len(plan.loads) * len(plan.targets)
    corpus.ensure(plan.seeds(0, n_warm + n_points * plan.max_requests), progress=plan.progress)

    probes = {url: CacheProbe(url) for url in dict.fromkeys(t.url for t in plan.targets)}
    for probe in probes.values():
        probe.snapshot("start")
    common = dict(prompt=plan.prompt, max_tokens=plan.max_tokens, ignore_eos=plan.ignore_eos,
                  timeout=plan.timeout, progress=plan.progress)
    warmup_errors = {}
    for j, target in enumerate(plan.targets):
        if plan.warmup:
            seeds = plan.seeds(j * plan.warmup, plan.warmup)
            recs = run_point(target, Load(concurrency=1), seeds, corpus.data_url, duration=None,
                             desc=f"warm-up {target.name}", rng_seed=0, **common)
            errors = [r.error for r in recs if r.error]
            if errors:
                warmup_errors[target.name] = errors
                _log(f"warning: warm-up of {target.name}: {len(errors)} errors, e.g. {errors[0]}")
    time.sleep(1.0)  # let vLLM publish the warm-up's stats
    for probe in probes.values():
        probe.snapshot("warm")

    points = []
    for li, load in enumerate(plan.loads):
        for ti, target in enumerate(plan.targets):
            p = li * len(plan.targets) + ti
            seeds = plan.seeds(n_warm + p * plan.max_requests, plan.max_requests)
            urls = {s: corpus.data_url(s) for s in seeds}  # read before the clock starts
            _wait_until(None if plan.start_at is None else plan.start_at + p * (plan.slot or 0), f"point {p}")
            desc = f"{target.name} {load.mode}={load.level}"
            recs = run_point(target, load, seeds, urls.__getitem__, duration=plan.duration,
                             desc=desc, rng_seed=plan.seed * 1000 + p, **common)
            records = [r.to_json() for r in sorted(recs, key=lambda r: r.start)]
            points.append({"config": target.name, "mode": load.mode, "level": load.level,
                           "max_concurrency": load.max_concurrency, "summary": summarize(records),
                           "requests": records})
    time.sleep(1.0)
    for probe in probes.values():
        probe.snapshot("end")

    checks = {url: probe.to_json() for url, probe in probes.items()}
    warnings = [w for c in checks.values() for w in c["warnings"]]
    warnings += [f"warm-up of {name} had {len(e)} errors: {e[0]}" for name, e in warmup_errors.items()]
    for w in warnings:
        _log("WARNING: " + w)
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "shards": [{"index": plan.shard_index, "count": plan.shard_count}],
        "configs": [asdict(t) for t in plan.targets],
        "video": asdict(corpus.spec),
        "plan": {k: v for k, v in asdict(plan).items() if k not in ("targets", "loads")},
        "cache_checks": checks,
        "warnings": warnings,
        "points": points,
    }
