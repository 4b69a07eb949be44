"""Sweep pictures: accuracy and speed against keep ratio, one line per method.

Input is a list of run summaries (the dicts `run_eval` writes to
summary.json). The unpruned run (method None / "none" / "unpruned") has no
keep ratio of its own, so it is drawn as a dashed horizontal reference line.
matplotlib runs on the Agg backend (no display); figures have a fixed pixel
size (FIGSIZE x DPI) so reports line up.
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from jax_pruning.eval.records import write_atomic  # noqa: E402

FIGSIZE = (6.4, 4.0)
DPI = 100
UNPRUNED_NAMES = (None, "", "none", "unpruned", "baseline")


def load_summaries(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """summary.json files (or run folders holding one) -> list of summary dicts."""
    out = []
    for path in paths:
        path = Path(path)
        path = path / "summary.json" if path.is_dir() else path
        if not path.is_file():
            raise ValueError(f"{path}: no summary.json there")
        out.append(json.loads(path.read_text()))
    return out


def is_unpruned(summary: dict) -> bool:
    method = summary.get("method")
    return (method.lower() if isinstance(method, str) else method) in UNPRUNED_NAMES


def _metric_name(summaries: Sequence[dict], metric: str | None) -> str:
    if metric is not None:
        return metric
    first = summaries[0]
    if first.get("primary_metric"):
        return first["primary_metric"]
    if first.get("metrics"):
        return next(iter(first["metrics"]))
    raise ValueError("plot_sweep: summaries carry no metrics; pass metric=")


def _value(summary: dict, key: str, metric: bool) -> float:
    value = summary.get("metrics", {}).get(key) if metric else summary.get(key)
    if value is None:
        raise ValueError(f"summary {summary.get('name', '?')!r} has no {'metric ' if metric else ''}{key!r}")
    return float(value)


def _plot(summaries: Sequence[dict], key: str, *, metric: bool, ylabel: str, title: str, path: Path) -> Path:
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    references = []
    for s in summaries:
        if is_unpruned(s):
            references.append(_value(s, key, metric))
            continue
        if s.get("keep_ratio") is None:
            raise ValueError(f"summary {s.get('name', '?')!r} (method {s.get('method')!r}) has no keep_ratio")
        lines[str(s["method"])].append((float(s["keep_ratio"]), _value(s, key, metric)))
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    try:
        for method, points in sorted(lines.items()):
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", label=method)
        for i, ref in enumerate(references):
            ax.axhline(ref, color="black", linestyle="--", linewidth=1, label="unpruned" if i == 0 else None)
        ax.set_xlabel("keep ratio (fraction of visual tokens kept)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if lines or references:
            ax.legend(loc="best", fontsize="small")
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=DPI)  # no bbox_inches="tight": keeps the pixel size fixed
        write_atomic(path, png.getvalue())  # a run killed mid-write leaves the old plot or none, never half
    finally:
        plt.close(fig)
    return path


def plot_sweep(summaries: Sequence[dict], out_dir: str | os.PathLike, *, metric: str | None = None,
               speed_key: str = "samples_per_s") -> dict[str, Path]:
    """Write accuracy_vs_keep_ratio.png and speed_vs_keep_ratio.png; returns {"accuracy": path, "speed": path}."""
    summaries = list(summaries)
    if not summaries:
        raise ValueError("plot_sweep: no summaries to plot")
    name = _metric_name(summaries, metric)
    out_dir = Path(out_dir)
    task = summaries[0].get("task") or ""
    return {
        "accuracy": _plot(summaries, name, metric=True, ylabel=name, path=out_dir / "accuracy_vs_keep_ratio.png",
                          title=f"{task} {name} vs keep ratio".strip()),
        "speed": _plot(summaries, speed_key, metric=False, ylabel=speed_key.replace("_", " "),
                       path=out_dir / "speed_vs_keep_ratio.png", title=f"{task} speed vs keep ratio".strip()),
    }
