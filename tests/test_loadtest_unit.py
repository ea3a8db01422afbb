"""The load generator without vLLM: corpus, stats, cache checks, merge, and a fake SSE server."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtest.client import Target  # noqa: E402
from loadtest.corpus import Corpus, VideoSpec, synth_frames  # noqa: E402
from loadtest.merge import merge_results  # noqa: E402
from loadtest.runner import Load, run_point  # noqa: E402
from loadtest.server_checks import COUNTERS, CacheProbe, check_url, parse_metrics  # noqa: E402
from loadtest.stats import summarize  # noqa: E402


# -- corpus ---------------------------------------------------------------------------
def test_frames_are_seeded_and_shaped():
    spec = VideoSpec(frames=6, width=64, height=48, scenes=2)
    a, b = synth_frames(spec, 1), synth_frames(spec, 1)
    assert a.shape == (6, 48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, synth_frames(spec, 2))


def test_scene_cut_and_motion():
    spec = VideoSpec(frames=8, width=64, height=64, scenes=2, motion=0.0, noise=0.0)
    f = synth_frames(spec, 0).astype(int)
    diffs = [np.abs(f[t + 1] - f[t]).mean() for t in range(7)]
    assert diffs[3] > 10 and max(diffs[:3] + diffs[4:]) == 0  # static scenes, one hard cut
    moving = synth_frames(VideoSpec(frames=4, width=64, height=64, motion=6.0, noise=0.0), 0).astype(int)
    assert np.abs(moving[1] - moving[0]).mean() > 0


def test_spec_validation_and_key():
    with pytest.raises(ValueError):
        VideoSpec(width=63)
    with pytest.raises(ValueError):
        VideoSpec(frames=2, scenes=3)
    assert VideoSpec().key == VideoSpec().key != VideoSpec(motion=1.0).key


def test_corpus_is_cached_on_disk(tmp_path):
    spec = VideoSpec(frames=2, width=32, height=32)
    corpus = Corpus(spec, tmp_path)
    corpus.ensure([0, 1], workers=1, progress=False)
    mtime = corpus.path(0).stat().st_mtime_ns
    assert Corpus(spec, tmp_path).path(0) == corpus.path(0)
    Corpus(spec, tmp_path).ensure([0, 1], workers=1, progress=False)
    assert corpus.path(0).stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert corpus.data_url(0).startswith("data:video/mp4;base64,")
    assert corpus.path(0).read_bytes() != corpus.path(1).read_bytes()
    assert Corpus(VideoSpec(frames=3, width=32, height=32), tmp_path).dir != corpus.dir


# -- stats ------------------------------------------------------------------------------
def _rec(start, ttft, latency, out=5, prompt=100, itl=(0.01,), ok=True, error=None):
    return {"start": start, "seed": 0, "ok": ok, "error": error, "ttft": ttft, "latency": latency,
            "itl": list(itl), "prompt_tokens": prompt, "completion_tokens": out}


def test_summarize():
    recs = [_rec(0.0, 0.1, 0.5), _rec(0.5, 0.3, 1.5),
            _rec(1.0, None, None, ok=False, error="HTTP 500: x", out=None, prompt=None)]
    s = summarize(recs)
    assert (s["completed"], s["failed"], s["errors"]) == (2, 1, {"HTTP 500: x": 1})
    assert s["duration_s"] == pytest.approx(2.0)
    assert s["request_throughput"] == pytest.approx(1.0)
    assert s["output_throughput"] == pytest.approx(5.0)
    assert s["median_ttft_ms"] == pytest.approx(200.0)
    assert s["mean_tpot_ms"] == pytest.approx((100 + 300) / 2)
    assert s["mean_prompt_tokens"] == 100
    assert summarize([])["median_ttft_ms"] is None


# -- cache checks ---------------------------------------------------------------------------
METRICS_ON = """\
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",enable_prefix_caching="True",engine="0"} 1.0
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 2002.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 16.0
vllm:mm_cache_queries_total{engine="0",model_name="m"} 3.0
vllm:mm_cache_hits_total{engine="0",model_name="m"} 1.0
"""


def test_parse_metrics():
    m = parse_metrics(METRICS_ON)
    assert m == {"prefix_caching": True, "prefix_cache_queries": 2002.0, "prefix_cache_hits": 16.0,
                 "mm_cache_queries": 3.0, "mm_cache_hits": 1.0}
    off = parse_metrics(METRICS_ON.replace('"True"', '"False"'))
    assert off["prefix_caching"] is False
    assert parse_metrics("")["prefix_caching"] is None


def test_cache_probe_warnings():
    probe = CacheProbe("http://h:1")
    zero = {"prefix_caching": False, **{c: 0.0 for c in COUNTERS}}
    probe.snapshots = {"start": zero, "warm": zero, "end": zero}
    assert probe.warnings() == []
    probe.snapshots = {"start": zero, "warm": zero, "end": parse_metrics(METRICS_ON)}
    text = " ".join(probe.warnings())
    assert "multimodal processor cache is ON" in text and "prefix cache hits grew by 16" in text
    probe.snapshots = {"start": None}
    assert "no vLLM /metrics" in probe.warnings()[0]


def test_check_url():
    assert check_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000"
    for bad in ("127.0.0.1:8000", "ftp://x", "http://"):
        with pytest.raises(ValueError):
            check_url(bad)


# -- merge --------------------------------------------------------------------------------
def _result(shard, level, starts):
    recs = [_rec(s, 0.1, 0.2) for s in starts]
    return {"format_version": 1, "created": "", "configs": [{"name": "a"}], "video": {"frames": 2},
            "plan": {"max_tokens": 4}, "shards": [{"index": shard, "count": 2}], "cache_checks": {},
            "warnings": ["w"], "points": [{"config": "a", "mode": "concurrency", "level": level,
                                           "summary": summarize(recs), "requests": recs}]}


def test_merge_pools_requests_and_sums_levels():
    m = merge_results([_result(0, 4, [0.0, 0.5]), _result(1, 4, [0.2, 0.8])])
    (p,) = m["points"]
    assert p["level"] == 8 and p["shard_levels"] == [4, 4]
    assert p["summary"]["completed"] == 4 and p["summary"]["duration_s"] == pytest.approx(1.0)
    assert m["warnings"] == ["w"]
    assert "repeat" in merge_results([_result(0, 1, [0.0]), _result(0, 1, [0.0])])["warnings"][-1]
    other = _result(1, 4, [0.0])
    other["video"] = {"frames": 3}
    with pytest.raises(ValueError):
        merge_results([_result(0, 4, [0.0]), other])


# -- runner + client against a fake streaming server ------------------------------------------
@pytest.fixture(scope="module")
def fake_server():
    """An aiohttp server that streams 4 tokens 10 ms apart; 'fail' in the prompt -> HTTP 500."""
    from aiohttp import web

    state = {"bodies": [], "in_flight": 0, "max_in_flight": 0}

    async def chat(request):
        body = await request.json()
        state["bodies"].append(body)
        if "fail" in body["messages"][0]["content"][1]["text"]:
            return web.Response(status=500, text="boom")
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await asyncio.sleep(0.05)
        await resp.write(b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n')
        for i in range(4):
            await resp.write(b'data: {"choices":[{"delta":{"content":"t%d"}}]}\n\n' % i)
            await asyncio.sleep(0.01)
        await resp.write(b'data: {"choices":[],"usage":{"prompt_tokens":42,"completion_tokens":4}}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        state["in_flight"] -= 1
        return resp

    app = web.Application(client_max_size=2**26)
    app.router.add_post("/v1/chat/completions", chat)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", state
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _run(url, load, n, prompt="hi", duration=None):
    target = Target("t", url, "m", {"mmgvid_retention": 0.25})
    return run_point(target, load, list(range(n)), lambda s: f"data:video/mp4;base64,{s}", prompt=prompt,
                     max_tokens=4, ignore_eos=True, duration=duration, timeout=10, progress=False,
                     desc="x", rng_seed=0)


def test_concurrency_point_times_stream(fake_server):
    url, state = fake_server
    state["max_in_flight"] = 0
    recs = _run(url, Load(concurrency=3), 7)
    assert len(recs) == 7 and all(r.ok for r in recs)
    assert state["max_in_flight"] == 3
    r = recs[0]
    assert 0.04 < r.ttft < r.latency and len(r.itl) == 3 and all(0.005 < x < 0.1 for x in r.itl)
    assert (r.prompt_tokens, r.completion_tokens) == (42, 4)
    body = state["bodies"][-1]
    assert body["stream"] and body["ignore_eos"] and body["mm_processor_kwargs"] == {"mmgvid_retention": 0.25}
    assert sorted(r.seed for r in recs) == list(range(7))


def test_errors_are_counted_not_raised(fake_server):
    recs = _run(fake_server[0], Load(concurrency=2), 3, prompt="fail")
    assert [r.ok for r in recs] == [False] * 3 and recs[0].error.startswith("HTTP 500")
    dead = _run("http://127.0.0.1:9", Load(concurrency=1), 1)  # nothing listens on port 9
    assert not dead[0].ok and dead[0].error


def test_rate_point_and_duration_bound(fake_server):
    t0 = time.monotonic()
    recs = _run(fake_server[0], Load(rate=math.inf, max_concurrency=2), 5)
    assert len(recs) == 5 and all(r.ok for r in recs)
    recs = _run(fake_server[0], Load(rate=20.0), 1000, duration=0.5)
    assert 2 <= len(recs) < 40 and time.monotonic() - t0 < 5  # stopped by --duration
    recs = _run(fake_server[0], Load(concurrency=1), 1000, duration=0.3)
    assert 1 <= len(recs) < 10


def test_help_explains_a_sweep():
    out = subprocess.run([sys.executable, "-m", "loadtest", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "how to run a sweep" in out and "--retentions" in out and "--max-requests" in out
    assert "--no-enable-prefix-caching" in out and "--merge" in out


def test_merge_cli_writes_report(tmp_path):
    for k, starts in enumerate(([0.0, 0.5], [0.2, 0.8])):
        (tmp_path / f"{k}.json").write_text(json.dumps(_result(k, 2, starts) | {
            "video": {"frames": 2, "width": 32, "height": 32, "scenes": 1, "motion": 0}}))
    subprocess.run([sys.executable, "-m", "loadtest", "--merge", str(tmp_path / "0.json"),
                    str(tmp_path / "1.json"), "--out-dir", str(tmp_path / "m")], cwd=ROOT, check=True)
    for name in ("results.json", "results.md", "ttft.png", "throughput.png"):
        assert (tmp_path / "m" / name).stat().st_size > 0
