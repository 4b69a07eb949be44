"""Evaluation harness: local datasets, task prompts, lmms-eval's metrics, a resumable runner, pictures.

    from jax_pruning.eval import open_dataset, build_prompt, score, run_eval, plot_sweep, save_overlay
    data = open_dataset("easy-vqa", split="test", limit=100)          # or ("pope", folder), ("jsonl", "x.jsonl")
    summary = run_eval(data, predict_batch, "results/run", batch_size=8, config={"method": ..., "keep_ratio": ...})
    write_report("results", [summary], data)                          # results/report.html, self-contained

Nothing here needs a model: `predict_batch(samples) -> [{"prediction", "visual_tokens", "prefill_flops"}]`
is the engine side (see runner.py). Heavy imports (matplotlib, jax, pyarrow) happen on first use.
"""

from __future__ import annotations

from jax_pruning.eval.datasets import DATASETS, TASKS, open_dataset
from jax_pruning.eval.metrics import PRIMARY_METRIC, score, score_one
from jax_pruning.eval.prompts import build_prompt, question_text
from jax_pruning.eval.runner import run_eval, summarize_run
from jax_pruning.eval.samples import Dataset, Sample, SampleError

__all__ = ["DATASETS", "TASKS", "PRIMARY_METRIC", "Dataset", "Sample", "SampleError", "build_prompt",
           "open_dataset", "plot_sweep", "question_text", "run_eval", "save_comparison", "save_kept_overlay",
           "save_overlay", "score", "score_one", "summarize_run", "sweep", "write_report"]


def __getattr__(attr: str):
    """Lazy exports: plots pull in matplotlib, the report Jinja2, `sweep` (the engine-wired runner) the engine."""
    if attr == "plot_sweep":
        from jax_pruning.eval.plots import plot_sweep

        return plot_sweep
    if attr in ("save_overlay", "save_kept_overlay", "save_comparison"):
        from jax_pruning.eval import overlay

        return getattr(overlay, attr)
    if attr == "write_report":
        from jax_pruning.eval.report import write_report

        return write_report
    if attr == "sweep":
        from jax_pruning.sweep import sweep

        return sweep
    raise AttributeError(f"module 'jax_pruning.eval' has no attribute {attr!r}")
