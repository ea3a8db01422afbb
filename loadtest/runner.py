"""Drive one benchmark point: a fixed concurrency (closed loop) or a Poisson request rate.

* ``concurrency=N``: N workers, each sending its next request as soon as the last one ends.
* ``rate=λ``: requests start at Poisson arrival times (exponential gaps, mean 1/λ;
  ``inf`` = all at once), optionally capped at ``max_concurrency`` in flight.

A point always stops by itself: no new request after ``max_requests`` were sent or
``duration`` seconds passed; requests in flight then finish (or hit ``timeout``).
Request ``i`` of the point sends the video of ``seeds[i]``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from tqdm import tqdm

from .client import RequestRecord, Target, build_body, stream_chat

__all__ = ["Load", "run_point"]


@dataclass(frozen=True)
class Load:
    """How hard to push: exactly one of ``concurrency`` and ``rate``."""

    concurrency: int | None = None
    rate: float | None = None
    max_concurrency: int | None = None  # rate mode only

    @property
    def mode(self) -> str:
        return "concurrency" if self.concurrency is not None else "rate"

    @property
    def level(self) -> int | float | str:
        """The swept value as JSON can hold it (an unbounded rate is ``"inf"``)."""
        if self.concurrency is not None:
            return self.concurrency
        return self.rate if math.isfinite(self.rate) else "inf"


async def _run(
    target: Target,
    load: Load,
    seeds: list[int],
    video_url: Callable[[int], str],
    *,
    prompt: str,
    max_tokens: int,
    ignore_eos: bool,
    duration: float | None,
    timeout: float,
    progress: bool,
    desc: str,
    rng_seed: int,
) -> list[RequestRecord]:
    records: list[RequestRecord] = []
    deadline = math.inf if duration is None else time.monotonic() + duration
    bar = tqdm(total=len(seeds), desc=desc, disable=not progress, leave=True, dynamic_ncols=True)
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        connector=aiohttp.TCPConnector(limit=0, force_close=False),
    )

    async def one(i: int) -> None:
        body = build_body(target, video_url(seeds[i]), prompt, max_tokens, ignore_eos)
        rec = await stream_chat(http, target, body, seeds[i])
        records.append(rec)
        bar.update()
        if rec.error:
            bar.set_postfix(errors=sum(1 for r in records if r.error))

    async with http:
        with bar:
            if load.concurrency is not None:
                counter = iter(range(len(seeds)))

                async def worker() -> None:
                    for i in counter:  # shared iterator: each index is taken once
                        if time.monotonic() >= deadline:
                            return
                        await one(i)

                await asyncio.gather(*(worker() for _ in range(load.concurrency)))
            else:
                rng = random.Random(rng_seed)
                cap = asyncio.Semaphore(load.max_concurrency or len(seeds))

                async def limited(i: int) -> None:
                    async with cap:
                        await one(i)

                tasks = []
                for i in range(len(seeds)):
                    if time.monotonic() >= deadline:
                        break
                    tasks.append(asyncio.create_task(limited(i)))
                    if load.rate != math.inf and i + 1 < len(seeds):
                        await asyncio.sleep(rng.expovariate(load.rate))
                await asyncio.gather(*tasks)
    return records


def run_point(target: Target, load: Load, seeds: list[int], video_url: Callable[[int], str], **kw) -> list[RequestRecord]:
    """Run one point to completion and return its records (in completion order)."""
    return asyncio.run(_run(target, load, seeds, video_url, **kw))
