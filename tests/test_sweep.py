"""The eval runner driven by the engine: a small sweep end to end on a tiny random model."""

from __future__ import annotations

import json

import jax_pruning as jp
import models
from jax_pruning.eval import open_dataset
from jax_pruning.processing import Processor
from jax_pruning.sweep import bare_prompt, sweep
from tests.tiny_folder import llava_folder


def test_sweep_writes_runs_table_and_plots_and_resumes(tmp_path):
    folder = llava_folder(tmp_path / "model")
    model, processor = models.load(folder), Processor.from_folder(folder)
    data = open_dataset("easy-vqa", split="test", limit=5)
    pruners = [None, jp.pruner("mr_pruner", keep_ratio=0.25)]
    out = tmp_path / "sweep"
    summaries = sweep(model, processor, data, pruners, out, batch_size=4, max_new_tokens=2,
                      prompt=bare_prompt(processor), progress=False)
    assert [s["method"] for s in summaries] == ["none", "mr_pruner"]
    for s in summaries:
        assert s["n_samples"] == 5 and s["n_failed"] == 0  # the padded last batch gave exactly 5 results
        lines = (out / s["name"] / "predictions.jsonl").read_text().splitlines()
        assert sorted(json.loads(line)["id"] for line in lines) == sorted(x.id for x in data)
    unpruned, pruned = summaries
    assert pruned["mean_visual_tokens"] < 0.5 * unpruned["mean_visual_tokens"]
    assert pruned["mean_prefill_flops"] < unpruned["mean_prefill_flops"]
    assert "| mr_pruner | 0.25 |" in (out / "sweep.md").read_text()
    assert (out / "accuracy_vs_keep.png").is_file() or any(out.glob("*.png"))
    again = sweep(model, processor, data, pruners[:1], out, batch_size=4, max_new_tokens=2,
                  prompt=bare_prompt(processor), resume=True, progress=False)
    assert len((out / "unpruned" / "predictions.jsonl").read_text().splitlines()) == 5
    assert again[0]["metrics"] == unpruned["metrics"]
