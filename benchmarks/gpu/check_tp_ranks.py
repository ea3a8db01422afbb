"""Do all tensor-parallel ranks keep the same video tokens? Compares the per-rank logs that the
plugin writes with ``MMGVID_KEPT_LOG_DIR`` set (``mmgvid_vllm/kept_log.py``: one line per pruned
video, in each rank's execution order).

Line n of every rank must describe the same video (same features hash, frames, retention,
method) with the same kept indices (same count and SHA-256). Prints a table per retention and
writes JSON; exits 1 if any line differs, the ranks logged different numbers of videos, fewer
than ``--ranks`` rank files exist, or fewer than ``--min-videos`` distinct videos were pruned at
``--retention`` (distinct = distinct features hash).

    python benchmarks/gpu/check_tp_ranks.py /tmp/kept --ranks 2 --retention 0.25 --min-videos 50 --out kept.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

FIELDS = ("frames", "retention", "method", "features", "kept", "kept_sha")


def load(directory: Path) -> dict[str, list[dict]]:
    """rank file name -> its lines, in order."""
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
            for p in sorted(directory.glob("rank*.jsonl"))}


def compare(logs: dict[str, list[dict]]) -> dict:
    """Line-by-line comparison of every rank against the first."""
    names = list(logs)
    first = logs[names[0]] if names else []
    lengths = {name: len(lines) for name, lines in logs.items()}
    mismatches = []
    for name in names[1:]:
        for a, b in zip(first, logs[name]):
            diff = [f for f in FIELDS if a.get(f) != b.get(f)]
            if diff:
                mismatches.append({"rank": name, "seq": a.get("seq"), "fields": diff})
    per_retention = Counter(line["retention"] for line in first)
    distinct = {r: len({line["features"] for line in first if line["retention"] == r}) for r in per_retention}
    return {"ranks": names, "lines": lengths, "mismatches": mismatches,
            "videos_per_retention": {str(r): n for r, n in sorted(per_retention.items())},
            "distinct_videos_per_retention": {str(r): n for r, n in sorted(distinct.items())},
            "kept_hashes": [line["kept_sha"] for line in first]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path, help="the MMGVID_KEPT_LOG_DIR the server ran with")
    parser.add_argument("--ranks", type=int, default=2, help="rank files expected (default: 2)")
    parser.add_argument("--retention", type=float, default=0.25,
                        help="retention that --min-videos counts (default: 0.25)")
    parser.add_argument("--min-videos", type=int, default=50,
                        help="distinct videos needed at --retention (default: 50)")
    parser.add_argument("--out", type=Path, default=None, help="write the comparison as JSON here")
    args = parser.parse_args()

    logs = load(args.directory)
    report = compare(logs)
    distinct = report["distinct_videos_per_retention"].get(str(args.retention), 0)
    problems = []
    if len(report["ranks"]) < args.ranks:
        problems.append(f"{len(report['ranks'])} rank file(s) in {args.directory}, expected {args.ranks}")
    if len(set(report["lines"].values())) > 1:
        problems.append(f"ranks logged different numbers of videos: {report['lines']}")
    if report["mismatches"]:
        problems.append(f"{len(report['mismatches'])} video(s) differ between ranks, first: {report['mismatches'][:3]}")
    if distinct < args.min_videos:
        problems.append(f"only {distinct} distinct videos pruned at retention {args.retention} "
                        f"(need {args.min_videos})")
    report.update(ok=not problems, problems=problems)

    print("| retention | videos | distinct videos | ranks | identical on every rank |")
    print("|---|---|---|---|---|")
    for r, n in report["videos_per_retention"].items():
        print(f"| {r} | {n} | {report['distinct_videos_per_retention'][r]} | {len(report['ranks'])} | "
              f"{'yes' if not report['mismatches'] else 'NO'} |")
    for name, lines in logs.items():
        print(f"{name}: {len(lines)} videos, first kept hashes {[line['kept_sha'][:12] for line in lines[:3]]}")
    print("OK: every rank kept the same tokens" if not problems else "FAILED:\n  " + "\n  ".join(problems))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
