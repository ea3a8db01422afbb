"""Aggregate per-video metric records, and render them as Markdown tables and a PNG plot."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .metrics import METRICS
from .variants import LAMBDA_VARIANTS, METHOD_VARIANTS, MODULE_VARIANTS
from .video import PROFILES

__all__ = ["aggregate", "render_markdown", "plot"]

HEADLINE_PROFILE = "recurring"
HEADLINE_RETENTIONS = (0.15, 0.10)
ABLATION_RETENTIONS = (0.25, 0.10)  # 0.25 is the paper's ablation setting
SHORT = {
    "needle_recall": "needle rec.",
    "object_frame_recall": "obj-frame rec.",
    "scene_coverage": "scene cov.",
    "min_scene_share": "min scene share",
    "min_shot_share": "min shot share",
    "coverage": "coverage",
    "redundancy": "redundancy (lower better)",
    "frame_coverage": "frames w/ token",
    "temporal_entropy": "time entropy",
}
PLOT_METRICS = ("needle_recall", "object_frame_recall", "min_shot_share", "coverage", "redundancy")


def aggregate(records: list[dict]) -> list[dict]:
    """Mean of every metric over the videos of each (features, group, retention, variant);
    group is a profile or ``all``. Each row also has ``n`` (videos) and mean ``seconds``."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        for group in (r["profile"], "all"):
            groups[(r["features"], group, r["retention"], r["variant"])].append(r)
    summary = []
    for (features, group, retention, variant), rows in groups.items():
        means = {m: _nanmean([row[m] for row in rows]) for m in (*METRICS, "seconds")}
        key = {"features": features, "group": group, "retention": retention, "variant": variant}
        summary.append({**key, "n": len(rows), **means})
    return summary


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _lookup(summary: list[dict]) -> dict[tuple, dict]:
    return {(r["features"], r["group"], r["retention"], r["variant"]): r for r in summary}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _metric_table(rows: dict[tuple, dict], features: str, group: str, retentions, variants) -> str:
    body = []
    for retention in retentions:
        for variant in variants:
            r = rows.get((features, group, retention, variant))
            if r:
                body.append([f"{retention:.0%}", variant] + [_fmt(r[m]) for m in METRICS])
    n = next((r["n"] for key, r in rows.items() if key[:2] == (features, group)), 0)
    return f"{n} videos.\n\n" + _table(["retention", "variant"] + [SHORT[m] for m in METRICS], body)


def _by_profile_table(rows: dict[tuple, dict], features: str, metric: str) -> str:
    body = []
    for retention in HEADLINE_RETENTIONS:
        for variant in METHOD_VARIANTS:
            found = [rows.get((features, p, retention, variant)) for p in PROFILES]
            cells = [_fmt(r[metric]) if r else "n/a" for r in found]
            body.append([f"{retention:.0%}", variant] + cells)
    return _table(["retention", "method"] + [p for p in PROFILES], body)


def _segmentation_table(segmentation: list[dict]) -> str:
    body = []
    for features in dict.fromkeys(s["features"] for s in segmentation):
        for profile in PROFILES:
            rows = [s for s in segmentation if s["features"] == features and s["profile"] == profile]
            if rows:
                shots = np.mean([s["shots"] for s in rows])
                segments = np.mean([s["segments"] for s in rows])
                body.append([features, profile, f"{shots:.2f}", f"{segments:.2f}"])
    return _table(["features", "profile", "mean shots (ground truth)", "mean MMG-Vid segments (tau=0.95)"], body)


def render_markdown(config: dict, summary: list[dict], segmentation: list[dict]) -> str:
    """The full report: headline, all-video comparison, per-profile recall, ablations, segmentation."""
    rows = _lookup(summary)
    out = [
        "# Quality on structured synthetic videos (proxy)\n",
        f"Command: `{config['command']}` ({config['seconds']} s). Profiles {', '.join(config['profiles'])}; "
        f"{config['videos_per_profile']} video(s) each of {config['frames']} frames at 384x384; "
        "196 tokens per frame. Metrics are means over videos (definitions: `benchmarks/quality/metrics.py`); "
        "a token is on an object when >= 25% of its pooled pixels are the object's. "
        "The `coverage` score is near-saturated (raw, uncentred cosine), so small differences in it mean little.\n",
    ]
    for features in config["features"]:
        out += [
            f"\n## Features: {features}\n",
            f"\n### Headline: `{HEADLINE_PROFILE}` videos (recurring scenes + needles)\n\n",
            _metric_table(rows, features, HEADLINE_PROFILE, HEADLINE_RETENTIONS, METHOD_VARIANTS),
            "\n### All videos, all retentions\n\n",
            _metric_table(rows, features, "all", config["retentions"], METHOD_VARIANTS),
            "\n### Needle recall by profile\n\n",
            _by_profile_table(rows, features, "needle_recall"),
            "\n### Moving-object frame recall by profile\n\n",
            _by_profile_table(rows, features, "object_frame_recall"),
            "\n### Ablation: lambda of eq. 5 (paper Table 4), all videos\n\n",
            _metric_table(rows, features, "all", ABLATION_RETENTIONS, LAMBDA_VARIANTS),
            "\n### Ablation: TG-DPC vs per-frame DPC-KNN, marginal-gain vs uniform budget "
            "(paper Figure 3), all videos\n\n",
            _metric_table(rows, features, "all", config["retentions"], MODULE_VARIANTS),
        ]
    out += ["\n## Segmentation (stage 1) vs ground-truth shots\n\n", _segmentation_table(segmentation)]
    return "".join(out)


def plot(summary: list[dict], features: list[str], path: Path) -> None:
    """Metric vs retention per method (all videos): one row of panels per feature extractor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _lookup(summary)
    retentions = sorted({r["retention"] for r in summary})
    shape = (len(features), len(PLOT_METRICS))
    fig, axes = plt.subplots(*shape, figsize=(4 * shape[1], 3.4 * shape[0]), squeeze=False)
    for i, feature in enumerate(features):
        for j, metric in enumerate(PLOT_METRICS):
            ax = axes[i][j]
            for variant in METHOD_VARIANTS:
                points = [rows.get((feature, "all", r, variant)) for r in retentions]
                if None not in points:
                    ax.plot(retentions, [p[metric] for p in points], marker="o", label=variant)
            ax.set_title(f"{feature}: {SHORT[metric]}", fontsize=9)
            ax.set_xlabel("retention")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
