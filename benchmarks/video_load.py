"""Video load time per corpus video: vLLM's ``opencv`` loader vs ``mmgvid_pyav``, same process.

Each loader runs ``load_bytes(data, num_frames=N)`` on the file's bytes (what vLLM's API server
does per request after fetching), ``--repeats`` times, alternating; the median wall time and the
median CPU time (``time.process_time``: all threads of the process) are reported, and the
frames and metadata of the two are compared (``identical``). A loader whose first call takes
longer than ``--slow-s`` is not repeated (its one time is reported, ``repeats`` says so).
Corpus files (``mmgvid_vllm.corpus``) are generated on first use and cached.

``--ablation VIDEO...`` also times the speed ideas of ``mmgvid_vllm.video_loader`` one by one on
that video (FFmpeg threads, non-reference skipping, GOP-parallel workers, and a per-target
``container.seek`` loop like vLLM 0.26's ``pyav`` codec for reference).

Examples:
  python benchmarks/video_load.py                                  # all but the 60-min file
  python benchmarks/video_load.py --videos h264_480p_5min --repeats 5
  python benchmarks/video_load.py --long --ablation h264_720p_10s h264_480p_5min   # everything
"""

from __future__ import annotations

import argparse
import datetime
import functools
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mmgvid_vllm.corpus import CORPUS, corpus_path
from mmgvid_vllm.video_loader import VideoLimits, load_video, loader_class

DEFAULT_OUT = Path("benchmarks/results/video_load_cpu.json")


def _timed(fn) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - w, time.process_time() - c, result


def bench_video(name: str, num_frames: int, repeats: int, slow_s: float) -> dict:
    from vllm.multimodal.video import VIDEO_LOADER_REGISTRY

    spec = CORPUS[name]
    path = corpus_path(name)
    data = path.read_bytes()
    loaders = {"vllm": VIDEO_LOADER_REGISTRY.load("opencv"), "ours": loader_class()}
    limits_off = VideoLimits(0, 0, 0, 0)
    calls = {
        "vllm": lambda: loaders["vllm"].load_bytes(data, num_frames=num_frames),
        "ours": lambda: load_video(data, num_frames, limits=limits_off),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in calls}
    outputs = {}
    for i in range(repeats):
        for key, call in calls.items():
            if i and times[key][0][0] > slow_s:
                continue
            wall, cpu, outputs[key] = _timed(call)
            times[key].append((wall, cpu))
    (fa, ma), (fb, mb) = outputs["vllm"], outputs["ours"]
    row = {
        "seconds": spec.seconds, "width": spec.width, "height": spec.height, "codec": spec.codec,
        "container": spec.ext, "gop_s": spec.gop, "vfr": spec.vfr, "size_mb": round(len(data) / 1e6, 2),
        "frames_sampled": len(mb["frames_indices"]),
        "identical": bool(ma == mb and fa.shape == fb.shape and np.array_equal(fa, fb)),
    }
    for key in calls:
        row[f"{key}_s"] = round(statistics.median(t for t, _ in times[key]), 4)
        row[f"{key}_cpu_s"] = round(statistics.median(c for _, c in times[key]), 4)
        row[f"{key}_repeats"] = len(times[key])
    row["speedup"] = round(row["vllm_s"] / row["ours_s"], 2)
    row["cpu_ratio"] = round(row["vllm_cpu_s"] / row["ours_cpu_s"], 2)
    return row


def ablation(name: str, num_frames: int, repeats: int) -> dict:
    """Median wall/CPU seconds of each speed idea on one video."""
    import av

    data = corpus_path(name).read_bytes()
    limits_off = VideoLimits(0, 0, 0, 0)

    def seek_per_target():  # vLLM 0.26's `pyav` codec, simplified: seek + decode to each target
        with av.open(io.BytesIO(data)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            fps, n = float(s.average_rate), s.frames
            for i in np.linspace(0, n - 1, num_frames, dtype=int):
                pts = int(round(i / fps / s.time_base))
                c.seek(pts, stream=s)
                for f in c.decode(s):
                    if f.pts >= pts:
                        f.to_ndarray(format="rgb24")
                        break

    variants = {
        "default: GOP-parallel workers (one per core, here 2), 1 FFmpeg thread each, non-ref skipped": {},
        "1 decoder, FFmpeg threads on": dict(workers=1, threads=0),
        "1 decoder, FFmpeg threads off": dict(workers=1, threads=1),
        "1 decoder, FFmpeg threads on, non-ref frames decoded": dict(workers=1, threads=0, skip_nonref=False),
        "1 decoder, FFmpeg threads off, non-ref frames decoded": dict(workers=1, threads=1, skip_nonref=False),
        "2 workers, FFmpeg threads on in each": dict(workers=2, threads=0),
    }
    out = {}
    for label, kw in tqdm(variants.items(), desc=f"ablation {name}", leave=False):
        call = functools.partial(load_video, data, num_frames, limits=limits_off, **kw)
        samples = [_timed(call)[:2] for _ in range(repeats)]
        out[label] = {"s": round(statistics.median(w for w, _ in samples), 4),
                      "cpu_s": round(statistics.median(c for _, c in samples), 4)}
    exact = load_video(data, num_frames, limits=limits_off)[0]
    samples = [_timed(lambda: load_video(data, num_frames, limits=limits_off, seek="keyframe")) for _ in range(repeats)]
    fast = samples[0][2][0]
    diff = np.abs(fast.astype(np.int16) - exact.astype(np.int16))
    out["keyframe mode (mmgvid_seek=keyframe, inexact)"] = {
        "s": round(statistics.median(w for w, _, _ in samples), 4),
        "cpu_s": round(statistics.median(c for _, c, _ in samples), 4),
        "frames_identical": int(sum(np.array_equal(a, b) for a, b in zip(fast, exact))),
        "mean_abs_diff": round(float(diff.mean()), 2)}
    samples = [_timed(seek_per_target)[:2] for _ in range(repeats)]
    out["seek + decode per target (like vLLM 0.26's pyav codec)"] = {
        "s": round(statistics.median(w for w, _ in samples), 4),
        "cpu_s": round(statistics.median(c for _, c in samples), 4)}
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["videos"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4.5))
    for off, key, label in [(-0.2, "vllm_s", "vLLM opencv"), (0.2, "ours_s", "mmgvid_pyav")]:
        ax.bar(x + off, [results["videos"][n][key] for n in names], 0.4, label=label)
    for i, n in enumerate(names):
        r = results["videos"][n]
        ax.text(i, max(r["vllm_s"], r["ours_s"]) * 1.1, f"{r['speedup']:.1f}x", ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"seconds to load {results['num_frames']} frames (median)")
    ax.set_title(f"Video load time, {results['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    default = [n for n in CORPUS if not n.endswith("60min")]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", nargs="+", choices=sorted(CORPUS), metavar="NAME",
                   help=f"corpus videos (default: all but the 60-min one): {', '.join(CORPUS)}")
    p.add_argument("--long", action="store_true", help="include the 60-min video")
    p.add_argument("--num-frames", type=int, default=32, help="frames vLLM samples (default 32, LLaVA-OneVision's)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per loader (median; default 3)")
    p.add_argument("--slow-s", type=float, default=30.0, help="do not repeat a call slower than this (default 30)")
    p.add_argument("--ablation", nargs="+", metavar="NAME", default=[],
                   help="also time each speed idea on these videos")
    p.add_argument("--device", default="2-core CPU machine", help="device label for the JSON and plot")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    p.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    p.add_argument("--update", action="store_true",
                   help="add to / replace in the videos already in --out instead of starting a new file")
    args = p.parse_args(argv)

    names = args.videos or default + (["h264_480p_60min"] if args.long else [])
    results = {
        "device": args.device, "date": datetime.date.today().isoformat(), "command": " ".join(sys.argv),
        "python": platform.python_version(), "num_frames": args.num_frames, "repeats": args.repeats, "videos": {},
    }
    import av
    import cv2
    import vllm

    results["versions"] = {"vllm": vllm.__version__, "av": av.__version__, "ffmpeg (av)": av.ffmpeg_version_info,
                           "opencv": cv2.__version__}
    if args.update and args.out.exists():
        previous = json.loads(args.out.read_text())
        results["videos"] = previous["videos"]
        results["command"] = previous["command"] + " ; " + results["command"]
        results["ablation"] = previous.get("ablation", {})
    for name in tqdm(names, desc="videos"):
        results["videos"][name] = bench_video(name, args.num_frames, args.repeats, args.slow_s)
    for name in args.ablation:
        results.setdefault("ablation", {})[name] = ablation(name, args.num_frames, args.repeats)

    print("| video | size MB | vLLM s | ours s | speedup | vLLM CPU s | ours CPU s | CPU ratio | identical |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results["videos"].items():
        if name not in names:
            continue
        print(f"| {name} | {r['size_mb']} | {r['vllm_s']:.3f} | {r['ours_s']:.3f} | {r['speedup']:.2f}x | "
              f"{r['vllm_cpu_s']:.3f} | {r['ours_cpu_s']:.3f} | {r['cpu_ratio']:.2f}x | {r['identical']} |")
    for name in args.ablation:
        print(f"\nablation on {name} ({args.num_frames} frames):\n\n| variant | s | CPU s |\n|---|---|---|")
        for label, r in results["ablation"][name].items():
            extra = (f" ({r['frames_identical']}/{args.num_frames} frames identical, mean |diff| "
                     f"{r['mean_abs_diff']} levels)" if "mean_abs_diff" in r else "")
            print(f"| {label}{extra} | {r['s']:.3f} | {r['cpu_s']:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.plot or args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.plot or args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
