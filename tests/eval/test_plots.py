"""Sweep plots: one line per method, unpruned as a reference line, PNGs of the fixed size."""

import pytest
from PIL import Image

from jax_pruning.eval.plots import DPI, FIGSIZE, load_summaries, plot_sweep

import json


def _summary(method, keep, acc, speed):
    return {"name": f"{method}-{keep}", "method": method, "keep_ratio": keep, "task": "vqa",
            "primary_metric": "vqa_accuracy", "metrics": {"vqa_accuracy": acc}, "samples_per_s": speed}


SWEEP = [
    _summary("none", 1.0, 0.60, 10.0),  # what jax_pruning.sweep writes for the unpruned run
    _summary("mr_pruner", 0.5, 0.58, 14.0), _summary("mr_pruner", 0.1, 0.50, 20.0),
    _summary("hilo", 0.1, 0.52, 19.0), _summary("hilo", 0.5, 0.59, 13.0),
]


def test_writes_both_pngs_of_the_expected_size(tmp_path):
    paths = plot_sweep(SWEEP, tmp_path)
    assert set(paths) == {"accuracy", "speed"}
    for path in paths.values():
        assert path.stat().st_size > 1000
        assert Image.open(path).size == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))


def test_lines_per_method_and_reference(tmp_path, monkeypatch):
    import matplotlib.axes

    calls = {"plot": [], "axhline": []}
    real_plot, real_axhline = matplotlib.axes.Axes.plot, matplotlib.axes.Axes.axhline
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, x, y, **kw: calls["plot"].append((kw["label"], list(x), list(y))) or real_plot(self, x, y, **kw))
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline",
                        lambda self, y, **kw: calls["axhline"].append(y) or real_axhline(self, y, **kw))
    plot_sweep(SWEEP, tmp_path)
    accuracy_lines = calls["plot"][:2]
    assert accuracy_lines == [("hilo", [0.1, 0.5], [0.52, 0.59]), ("mr_pruner", [0.1, 0.5], [0.50, 0.58])]
    assert calls["axhline"] == [0.60, 10.0]  # accuracy reference, then speed reference


def test_load_summaries_and_errors(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps(SWEEP[1]))
    assert load_summaries([tmp_path / "run"]) == [SWEEP[1]]
    with pytest.raises(ValueError, match="no summary.json"):
        load_summaries([tmp_path / "missing"])
    with pytest.raises(ValueError, match="no summaries"):
        plot_sweep([], tmp_path)
    with pytest.raises(ValueError, match="no keep_ratio"):
        plot_sweep([_summary("hilo", None, 0.5, 1.0)], tmp_path)
