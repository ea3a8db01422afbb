"""The GPU headline of ``benchmarks/results/gpu.json``: every figure against vanilla vLLM.

Reads the files one ``run_long_video.sh`` lease writes (``STEP=vanilla``, then ``STEP=mmgvid``,
same flags), prints the headline table and, with ``--into``, updates gpu.json:

- ``baseline`` ("vanilla vLLM <version>"), ``device``;
- ``vs_vanilla``: the short clip (32 frames, LLaVA-OneVision-7B shape): ``ttft_speedup``,
  ``prefill_speedup`` and ``llm_prefill_speedup`` per retention, ``throughput_ratio`` per
  concurrency and retention, ``retention_1_overhead_pct`` (the plugin at retention 1.0 vs vanilla,
  TTFT, + = slower);
- ``llava_video_64``: the same at 64 frames (LLaVA-Video-7B: the same shapes, ``make_7b_config.py``);
- ``long_video``, ``long_video_throughput``, ``decode`` (``long_video.merge``); each video's
  figures name their ``run`` directory, and ``--into`` keeps the entries of videos this run did not measure;
- ``pruning_gpu_idle_ms`` per frame count and retention, if the run has ``prune_idle.py``'s
  ``prune_idle.json``.

Speedup = vanilla's median / ours (``ttft.py`` and ``long_video.py`` medians).

    python -m benchmarks.gpu.vs_vanilla RUN_DIR --device "NVIDIA H100 80GB HBM3" --into benchmarks/results/gpu.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.gpu.long_video import merge as merge_long_video

PER_VIDEO = ("long_video", "long_video_throughput")  # gpu.json sections keyed by video name


def _clip(vanilla: dict, ours: dict) -> dict:
    """Speedups of one ``ttft.py`` pair (vanilla's single configuration vs ours per retention)."""
    (van,) = vanilla["summary"].values()
    out = {}
    for key in ("ttft", "prefill", "llm_prefill"):
        out[f"{key}_speedup"] = {r: round(van[f"{key}_s"] / s[f"{key}_s"], 2) for r, s in ours["summary"].items()}
    out["ttft_ms"] = {"vanilla": round(van["ttft_s"] * 1e3, 1),
                      **{r: round(s["ttft_s"] * 1e3, 1) for r, s in ours["summary"].items()}}
    out["llm_prefill_ms"] = {"vanilla": round(van["llm_prefill_s"] * 1e3, 1),
                             **{r: round(s["llm_prefill_s"] * 1e3, 1) for r, s in ours["summary"].items()}}
    out["prompt_tokens"] = {"vanilla": van["prompt_tokens"],
                            **{r: s["prompt_tokens"] for r, s in ours["summary"].items()}}
    if "1.0" in ours["summary"]:
        out["retention_1_overhead_pct"] = round(100 * (ours["summary"]["1.0"]["ttft_s"] / van["ttft_s"] - 1), 1)
    return out


def headline(run: Path, device: str, vllm_version: str) -> dict:
    read = lambda name: json.loads((run / name).read_text())  # noqa: E731
    doc = merge_long_video(read("vanilla.json"), read("mmgvid.json"), device, vllm_version)
    for entry in doc["long_video"].values():
        entry["run"] = run.as_posix()
    for points in doc["long_video_throughput"].values():
        for point in points.values():
            point["run"] = run.as_posix()
    doc.update(baseline=f"vanilla vLLM {vllm_version}", device=device)
    doc["vs_vanilla"] = _clip(read("ttft_vanilla_32.json"), read("ttft_mmgvid_32.json"))
    clip_load = doc["long_video_throughput"].get("clip", {})
    doc["vs_vanilla"]["throughput_ratio"] = {c: p["ratio"] for c, p in clip_load.items()}
    if (run / "ttft_vanilla_64.json").exists():
        doc["llava_video_64"] = _clip(read("ttft_vanilla_64.json"), read("ttft_mmgvid_64.json"))
    if (run / "prune_idle.json").exists():
        doc["pruning_gpu_idle_ms"] = read("prune_idle.json")["pruning_gpu_idle_ms"]
    return doc


def updated(current: dict, doc: dict) -> dict:
    """gpu.json ``current`` with this run's ``doc``: its sections replace the old ones, except that
    the per-video sections keep the entries of videos this run did not measure."""
    merged = {**current, **doc}
    for key in PER_VIDEO:
        merged[key] = {**current.get(key, {}), **doc[key]}
    return merged


def table(doc: dict) -> str:
    rows = ["| figure | " + " | ".join(f"ours {r}" for r in doc["vs_vanilla"]["ttft_speedup"]) + " |",
            "|---|" + "---|" * len(doc["vs_vanilla"]["ttft_speedup"])]
    for section, label in (("vs_vanilla", "32-frame clip"), ("llava_video_64", "64-frame clip")):
        for key in ("ttft_speedup", "prefill_speedup", "llm_prefill_speedup"):
            if section in doc:
                rows.append(f"| {label} {key} | " + " | ".join(f"{v:.2f}x" for v in doc[section][key].values()) + " |")
    ratios = doc["vs_vanilla"]["throughput_ratio"]
    retentions = next(iter(ratios.values()), {})
    rows += ["", "| 32-frame clip, req/s vs vanilla | " + " | ".join(f"ours {r}" for r in retentions) + " |",
             "|---|" + "---|" * len(retentions)]
    for c, ratio in ratios.items():
        rows.append(f"| concurrency {c} | " + " | ".join(f"{v:.2f}x" for v in ratio.values()) + " |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="the $OUT of run_long_video.sh's vanilla and mmgvid steps")
    p.add_argument("--device", required=True, help='the card, e.g. "NVIDIA H100 80GB HBM3"')
    p.add_argument("--vllm-version", default="0.26.0")
    p.add_argument("--into", type=Path, help="gpu.json to update")
    args = p.parse_args()
    doc = headline(args.run, args.device, args.vllm_version)
    print(table(doc))
    print(f"retention 1.0 overhead (TTFT, 32-frame clip): {doc['vs_vanilla'].get('retention_1_overhead_pct')} %")
    if args.into:
        current = json.loads(args.into.read_text()) if args.into.exists() else {}
        args.into.write_text(json.dumps(updated(current, doc), indent=1) + "\n")


if __name__ == "__main__":
    main()
