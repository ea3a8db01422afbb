"""Write a sweep result: ``results.json``, ``results.md`` (a table) and PNG plots.

Plots, one line per configuration, load level on the x axis (evenly spaced):
``ttft.png`` (TTFT p50 and p99) and ``throughput.png`` (requests/s and output tokens/s).
The first configuration is the baseline of the table's speed-up column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["write_outputs", "markdown_table", "plot"]


def _levels(result: dict) -> list:
    return list(dict.fromkeys(p["level"] for p in result["points"]))


def _configs(result: dict) -> list[str]:
    return list(dict.fromkeys(p["config"] for p in result["points"]))


def _fmt(x, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown_table(result: dict) -> str:
    """One row per point; speed-up = baseline TTFT p50 / this TTFT p50 at the same level."""
    points = result["points"]
    mode = points[0]["mode"] if points else "concurrency"
    base = {p["level"]: p["summary"] for p in points if p["config"] == _configs(result)[0]}
    lines = [f"# Load test: {len(_configs(result))} configurations x {len(_levels(result))} {mode} levels", ""]
    v = result["video"]
    lines.append(f"Video: {v['frames']} frames {v['width']}x{v['height']}, {v['scenes']} scene(s), motion {v['motion']}; "
                 f"max_tokens {result['plan']['max_tokens']}; shards {len(result['shards'])}.")
    lines.append("")
    if result["warnings"]:
        lines += ["**Warnings**", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    lines += [
        f"| config | {mode} | ok | failed | prompt tok | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | ITL p50 ms "
        "| E2E p50 ms | req/s | out tok/s | TTFT p50 speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in _levels(result):
        for p in (p for p in points if p["level"] == level):
            s, b = p["summary"], base.get(level)
            speedup = (b["median_ttft_ms"] / s["median_ttft_ms"]
                       if b and b["median_ttft_ms"] and s["median_ttft_ms"] else None)
            lines.append(
                f"| {p['config']} | {level} | {s['completed']} | {s['failed']} | {_fmt(s['mean_prompt_tokens'], 0)} "
                f"| {_fmt(s['median_ttft_ms'])} | {_fmt(s['p99_ttft_ms'])} | {_fmt(s['median_tpot_ms'])} "
                f"| {_fmt(s['median_itl_ms'])} | {_fmt(s['median_e2el_ms'])} | {_fmt(s['request_throughput'], 2)} "
                f"| {_fmt(s['output_throughput'], 1)} | {_fmt(speedup, 2)}x |"
            )
    errors = {(p["config"], p["level"]): p["summary"]["errors"] for p in points if p["summary"]["errors"]}
    if errors:
        lines += ["", "**Errors**", ""]
        lines += [f"- {c} @ {lvl}: {n}x {msg}" for (c, lvl), e in errors.items() for msg, n in e.items()]
    return "\n".join(lines) + "\n"


def plot(result: dict, out_dir: Path) -> list[Path]:
    """Write ``ttft.png`` and ``throughput.png``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = _levels(result)
    xs = range(len(levels))
    mode = result["points"][0]["mode"] if result["points"] else "concurrency"
    xlabel = "concurrency" if mode == "concurrency" else "request rate (req/s)"
    panels = {
        "ttft.png": [("TTFT p50 (ms)", "median_ttft_ms"), ("TTFT p99 (ms)", "p99_ttft_ms")],
        "throughput.png": [("requests / s", "request_throughput"), ("output tokens / s", "output_throughput")],
    }
    paths = []
    for name, metrics in panels.items():
        fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4))
        for ax, (title, key) in zip(axes, metrics):
            for config in _configs(result):
                by_level = {p["level"]: p["summary"][key] for p in result["points"] if p["config"] == config}
                ys = [by_level.get(lv) for lv in levels]
                ys = [math.nan if y is None else y for y in ys]
                ax.plot(xs, ys, marker="o", label=config)
            ax.set_xticks(list(xs), [str(lv) for lv in levels])
            ax.set_xlabel(xlabel)
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.set_ylim(bottom=0)
        axes[0].legend()
        v = result["video"]
        fig.suptitle(f"{v['frames']} frames {v['width']}x{v['height']}, max_tokens {result['plan']['max_tokens']}",
                     fontsize=9)
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def write_outputs(result: dict, out_dir: str | Path) -> list[Path]:
    """Write JSON, Markdown and plots into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    json_path.write_text(json.dumps(result, indent=1))
    md_path.write_text(markdown_table(result))
    return [json_path, md_path, *plot(result, out_dir)]
