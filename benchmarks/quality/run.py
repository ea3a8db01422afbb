"""Regenerate the synthetic-video quality comparison: Markdown table, JSON and PNG plot.

    python -m benchmarks.quality.run            # full run (~5 min on 2 shared CPU cores)
    python -m benchmarks.quality.run --quick    # 1 video per profile, pixel features (CI smoke run)

Every video is generated from its seed, turned into token features, pruned by every
variant at every retention, and scored (see ``video``, ``features``, ``variants``, ``metrics``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .features import EXTRACTORS
from .metrics import evaluate, kept_mask
from .report import aggregate, plot, render_markdown
from .variants import LAMBDA_VARIANTS, METHOD_VARIANTS, MODULE_VARIANTS, segments_of
from .video import PROFILES, make_video

RETENTIONS = (0.25, 0.20, 0.15, 0.10)
VARIANTS = {**METHOD_VARIANTS, **LAMBDA_VARIANTS, **MODULE_VARIANTS}
DEFAULT_OUT = Path(__file__).parent / "results"  # the committed results; --quick writes under quick/


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 video per profile, pixel features only (CI)")
    parser.add_argument("--videos", type=int, default=6, help="videos per profile (seeds 0..N-1; default 6)")
    parser.add_argument("--frames", type=int, default=32, help="frames per video (default 32, as LLaVA-OneVision)")
    parser.add_argument("--features", nargs="+", choices=sorted(EXTRACTORS), default=list(EXTRACTORS),
                        help="token features to prune (default: all)")
    parser.add_argument("--out", type=Path, help="output folder (default results/, or results/quick/ with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.videos, args.features = 1, ["pixels"]
    if args.out is None:
        args.out = DEFAULT_OUT / "quick" if args.quick else DEFAULT_OUT
    return args


def run_video(profile: str, seed: int, frames: int, features: list[str]) -> tuple[list[dict], list[dict]]:
    """Score every variant at every retention on one video: (metric records, segmentation records)."""
    video = make_video(profile, seed, frames)
    records, segmentation = [], []
    for name in features:
        tokens = EXTRACTORS[name](video.frames)
        num_frames, per_frame, _ = tokens.shape
        base = {"features": name, "profile": profile, "video": video.name}
        segmentation.append({**base, "shots": int(video.shot_ids.max()) + 1, "segments": len(segments_of(tokens))})
        for retention in RETENTIONS:
            for variant, prune in VARIANTS.items():
                start = time.perf_counter()
                indices = prune(tokens, retention)
                seconds = time.perf_counter() - start
                metrics = evaluate(kept_mask(indices, num_frames, per_frame), tokens, video)
                records.append({**base, "retention": retention, "variant": variant, "seconds": seconds, **metrics})
    return records, segmentation


def _json_rows(rows: list[dict]) -> list[dict]:
    """Floats rounded to 5 digits, NaN (metric undefined, e.g. no moving object) as null."""
    def clean(value):
        return (None if math.isnan(value) else round(value, 5)) if isinstance(value, float) else value

    return [{k: clean(v) for k, v in r.items()} for r in rows]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)  # the work is many small ops: extra threads only spin on a shared CPU
    start = time.perf_counter()
    jobs = [(p, s) for p in PROFILES for s in range(args.videos)]
    records, segmentation = [], []
    for profile, seed in tqdm(jobs, desc="videos", unit="video"):
        video_records, video_segments = run_video(profile, seed, args.frames, args.features)
        records += video_records
        segmentation += video_segments
    config = {
        "command": " ".join(["python -m benchmarks.quality.run", *(sys.argv[1:] if argv is None else argv)]),
        "profiles": list(PROFILES),
        "videos_per_profile": args.videos,
        "frames": args.frames,
        "features": args.features,
        "retentions": list(RETENTIONS),
        "variants": list(VARIANTS),
        "seconds": round(time.perf_counter() - start, 1),
    }
    summary = aggregate(records)
    args.out.mkdir(parents=True, exist_ok=True)
    tables = {"summary": _json_rows(summary), "segmentation": segmentation, "records": _json_rows(records)}
    (args.out / "quality.json").write_text(json.dumps({"config": config, **tables}, separators=(",", ":")) + "\n")
    (args.out / "quality.md").write_text(render_markdown(config, summary, segmentation))
    plot(summary, args.features, args.out / "quality.png")
    print(f"wrote {args.out}/quality.{{md,json,png}} in {config['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
