"""A finished sweep folder made by hand (no model): runs, predictions with token views, plots.

`fake_sweep(folder, n, wrong)`: an unpruned run and two pruned runs over `n`
easy-VQA-like samples (coloured squares, answers "red"); run "b_keep0.25"
answers "blue" on the samples whose index is in `wrong`, so exactly those are
the samples some run got wrong.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from jax_pruning.eval.plots import plot_sweep
from jax_pruning.eval.records import write_atomic
from jax_pruning.eval.runner import summarize_run
from jax_pruning.eval.samples import Sample
from jax_pruning.eval.token_views import CANDIDATE, DROPPED, KEPT, TokenView, encode_views

RUNS = (("unpruned", "none", 1.0), ("a_keep0.25", "a", 0.25), ("b_keep0.25", "b", 0.25))


def picture(i: int, size=(96, 64)) -> Image.Image:
    rng = np.random.default_rng(i)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)  # noise: photo-like, compresses badly
    pixels[10:40, 20:60] = (220, 30, 30)
    return Image.fromarray(pixels)


def samples(n: int) -> list[Sample]:
    return [Sample(id=f"s{i}", question=f"what colour is shape {i}?", answers=["red"], task="exact_match",
                   load_image=(lambda i=i: picture(i))) for i in range(n)]


def views(i: int, hilo: bool) -> list[dict]:
    base = np.full((4, 4), DROPPED, np.int8)
    base[i % 4, :] = KEPT
    tiles = np.full((6, 9), DROPPED, np.int8)
    tiles[:, i % 9] = KEPT
    if hilo:
        tiles[0, :] = CANDIDATE
    return encode_views([TokenView("base", base), TokenView("tiles", tiles, (-0.05, 0.0, 1.05, 1.0))])


def fake_sweep(folder, n: int = 30, wrong=(3, 7, 11)) -> tuple[list[dict], list[Sample]]:
    data = samples(n)
    summaries = []
    for name, method, keep in RUNS:
        records = []
        for i, s in enumerate(data):
            answer = "blue" if (name == "b_keep0.25" and i in wrong) else "red"
            record = {"id": s.id, "ok": True, "prediction": answer, "visual_tokens": 40 if keep < 1 else 160,
                      "prefill_flops": 1e9 * keep, "answers": s.answers, "wall_seconds": 0.01}
            if keep < 1:
                record["token_views"] = views(i, hilo=method == "b")
            records.append(record)
        run = folder / name
        run.mkdir(parents=True, exist_ok=True)
        (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        summary = summarize_run(data, records, task="exact_match", name=name,
                                config={"method": method, "keep_ratio": keep},
                                devices={"count": 1, "kind": "cpu", "platform": "cpu", "processes": 1})
        write_atomic(run / "summary.json", json.dumps(summary))
        summaries.append(summary)
    plot_sweep(summaries, folder)
    return summaries, data
