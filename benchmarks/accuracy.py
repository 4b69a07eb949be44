"""Accuracy vs keep ratio of every method on the embedded tiny models (easy-VQA or detail-VQA), plus ablations.

    python -m benchmarks.accuracy [--limit 0] [--seed 0] [--out benchmarks/results/amd-epyc-2c/accuracy]
    python -m benchmarks.accuracy --data detail-vqa   # the detail-VQA models on their test split

For each shipped model: the unpruned JAX model and the same model in HF
PyTorch on the same questions (their accuracies must agree), then every
applicable method at keep 0.5 / 0.25 / 0.1 / 0.05, and the ablations at 0.1
(MR-Pruner without IR / CR / IA as in the paper's Table 3; Hi-Lo without
coarse windows / candidates / merge bias). `--limit 0` runs the whole test
split (9,673 questions); `--limit n` a fixed random subset (seed stated in the output).
Runs are resumable (`--resume`): finished settings and samples are skipped.
Writes accuracy.json, accuracy.md and one accuracy-vs-keep PNG per model.

`--data detail-vqa` scores the models trained on detail-VQA (tiny_llava_next_detail,
tiny_qwen2_vl_detail; 5,000 test questions, `jax_pruning/eval/detail_vqa.py`)
and writes under results/amd-epyc-2c/accuracy_detail by default.

`--data moving-shapes` scores the video model (tiny_qwen2_vl_video; 1,500 test
questions on 8-frame clips, `jax_pruning/eval/motion_vqa.py`) with the temporal
and pre-LLM methods at keep 0.5 / 0.25 / 0.1 (no ablations), into accuracy_video.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import jax_pruning as jp
from benchmarks.machine import describe
from jax_pruning.demo import ASSETS, DEMO_MODELS, layer_options

RESULTS = Path(__file__).resolve().parent / "results" / "amd-epyc-2c" / "accuracy"
RESULTS_BY_DATA = {"easy-vqa": RESULTS, "detail-vqa": RESULTS.with_name("accuracy_detail"),
                   "moving-shapes": RESULTS.with_name("accuracy_video")}
DATA_NAMES = {"easy-vqa": "easy-VQA", "detail-vqa": "detail-VQA", "moving-shapes": "moving-shapes (video)"}
KEEP_RATIOS = (0.5, 0.25, 0.1, 0.05)
VIDEO_KEEP_RATIOS = (0.5, 0.25, 0.1)
BASELINES_2025 = ("pyramiddrop", "dart", "divprune", "cdpruner", "visionzip", "vispruner")
_LLAVA_METHODS = ("mr_pruner", "hilo", "fastv", "gprune", "tome", "random") + BASELINES_2025
_QWEN_METHODS = ("hilo", "fastv", "tome", "random") + BASELINES_2025
METHODS = {"tiny_llava_next": _LLAVA_METHODS, "tiny_qwen2_vl": _QWEN_METHODS,
           "tiny_llava_next_detail": _LLAVA_METHODS, "tiny_qwen2_vl_detail": _QWEN_METHODS,
           "tiny_qwen2_vl_video": ("evs", "hilo", "random", "tome", "divprune", "fastv")}
_MR_ABLATIONS = (("MR-Pruner w/o IR", "mr_pruner", {"intra": False}),
                 ("MR-Pruner w/o CR", "mr_pruner", {"cross": False}),
                 ("MR-Pruner w/o IA", "mr_pruner", {"informativeness": False}),
                 ("MR-Pruner paper variant", "mr_pruner", {"variant": "paper"}))
ABLATIONS = {  # at keep 0.1: (label, method, options)
    "tiny_llava_next": _MR_ABLATIONS,
    "tiny_llava_next_detail": _MR_ABLATIONS,
    "common": (("Hi-Lo w/o coarse windows", "hilo", {"coarse": False}),
               ("Hi-Lo w/o candidates", "hilo", {"candidates": False}),
               ("Hi-Lo w/o merge", "hilo", {"merge": False})),
}


in_llm_options = layer_options  # a method inside the LLM acts at layer min(2, depth - 1)
# the models trained on detail-VQA (benchmarks/tiny_models/README.md), beside the easy-VQA demo models
DETAIL_MODELS = {"tiny_llava_next_detail": (ASSETS / "tiny_llava_next_detail", ()),
                 "tiny_qwen2_vl_detail": (ASSETS / "tiny_qwen2_vl_detail", ())}
VIDEO_MODELS = {"tiny_qwen2_vl_video": (ASSETS / "tiny_qwen2_vl_video", ())}  # train_video.py
MODELS = {**DEMO_MODELS, **DETAIL_MODELS, **VIDEO_MODELS}
MODELS_BY_DATA = {"easy-vqa": list(DEMO_MODELS), "detail-vqa": list(DETAIL_MODELS),
                  "moving-shapes": list(VIDEO_MODELS)}
MAX_NEW_TOKENS = 4  # easy-VQA: one word + eos; detail-VQA: up to two digits + eos


def hf_accuracy(folder: Path, dataset, batch_size: int) -> float:
    """The same questions through the HF PyTorch model (greedy), scored by the same metric."""
    from benchmarks.tiny_models.evaluate import answer, load
    from jax_pruning.eval.metrics import exact_match

    model, processor, family = load(folder)
    hits = []
    for first in range(0, len(dataset), batch_size):
        chunk = [dataset[i] for i in range(first, min(first + batch_size, len(dataset)))]
        if chunk[0].is_video:
            from benchmarks.tiny_models.train_video import answer_video

            got = answer_video(model, processor, [s.video for s in chunk], [s.question for s in chunk],
                               MAX_NEW_TOKENS)
        else:
            got = answer(model, processor, family, [s.image for s in chunk], [s.question for s in chunk],
                         MAX_NEW_TOKENS)
        hits += [exact_match(g, s.answers) for g, s in zip(got, chunk)]
    return 100.0 * float(np.mean(hits))


def run_model(name: str, dataset, out: Path, batch_size: int, resume: bool, keep_ratios=KEEP_RATIOS,
              with_ablations: bool = True, methods=None) -> dict:
    """methods: the applicable METHODS[name] to run (default all)."""
    import models
    from jax_pruning.eval.plots import plot_sweep
    from jax_pruning.processing import Processor
    from jax_pruning.sweep import bare_prompt, sweep

    folder, _ = MODELS[name]
    model, processor = models.load(folder), Processor.from_folder(folder)
    n_layers = model.config.text.num_hidden_layers
    pruners = [None] + [jp.pruner(m, keep_ratio=r, **in_llm_options(m, n_layers))
                        for m in methods_of(name, methods) for r in keep_ratios]
    start = time.perf_counter()
    runs = sweep(model, processor, dataset, pruners, out / name, batch_size=batch_size, max_new_tokens=MAX_NEW_TOKENS,
                 resume=resume, prompt=bare_prompt(processor), progress=False)
    ablation_runs = []
    for label, method, options in (ABLATIONS.get(name, ()) + ABLATIONS["common"]) if with_ablations else ():
        spec = jp.pruner(method, keep_ratio=0.1, **{**in_llm_options(method, n_layers), **options})
        summary = sweep(model, processor, dataset, [spec], out / name / "ablations" / label.replace(" ", "_").replace("/", ""),
                        batch_size=batch_size, max_new_tokens=MAX_NEW_TOKENS, resume=resume, prompt=bare_prompt(processor),
                        progress=False)[0]
        ablation_runs.append({"label": label, **summary})
    plot_sweep(runs, out / name)
    return {"model": name, "runs": runs, "ablations": ablation_runs, "jax_seconds": time.perf_counter() - start,
            "hf_unpruned_accuracy": hf_accuracy(folder, dataset, batch_size)}


def methods_of(model: str, only=None) -> tuple[str, ...]:
    """The methods that apply to a model, restricted to `only` when given."""
    return tuple(m for m in METHODS[model] if only is None or m in only)


def markdown(results: list[dict], meta: dict, keep_ratios=KEEP_RATIOS, methods=None) -> str:
    which = ("the full test split" if meta.get("full_split") else f"random subset, seed {meta['seed']}")
    lines = [f"# Accuracy vs keep ratio on {DATA_NAMES[meta.get('data', 'easy-vqa')]} ({meta['machine']})", "",
             f"{meta['questions']} test questions ({which}), exact match (%), greedy, "
             f"JAX float32." + (" Ablations at keep 0.1." if meta.get("ablations") else ""), ""]
    for r in results:
        unpruned = next(s for s in r["runs"] if s["method"] == "none")
        acc = lambda s: s["metrics"][s["primary_metric"]]
        lines += [f"## {r['model']}", "",
                  f"Unpruned: JAX {acc(unpruned):.2f}, HF PyTorch {r['hf_unpruned_accuracy']:.2f} "
                  f"(same questions); visual tokens {unpruned['mean_visual_tokens']:.0f}.", "",
                  "| method | " + " | ".join(f"keep {k}" for k in keep_ratios) + " |",
                  "|---|" + "---|" * len(keep_ratios)]
        for method in methods_of(r["model"], methods):
            cells = {s["keep_ratio"]: s for s in r["runs"] if s["method"] == method}
            lines.append(f"| {method} | " + " | ".join(
                f"{acc(cells[k]):.2f} ({cells[k]['mean_visual_tokens']:.0f} tok)" for k in keep_ratios) + " |")
        if r["ablations"]:
            lines += ["", "| ablation (keep 0.1) | accuracy |", "|---|---|"]
            lines += [f"| {a['label']} | {acc(a):.2f} |" for a in r["ablations"]]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    from jax_pruning.eval.datasets import open_dataset
    from jax_pruning.eval.records import write_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="0: the whole test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", choices=sorted(MODELS_BY_DATA), default="easy-vqa")
    parser.add_argument("--models", nargs="+", default=None, choices=sorted(MODELS),
                        help="default: the models trained on --data")
    parser.add_argument("--out", type=Path, default=None, help="default: results/amd-epyc-2c/accuracy(_detail)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--keep", nargs="+", type=float, default=None,
                        help="default 0.5 0.25 0.1 0.05 (moving-shapes: 0.5 0.25 0.1)")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods (default: all that apply)")
    args = parser.parse_args(argv)
    args.models = args.models or MODELS_BY_DATA[args.data]
    args.out = args.out or RESULTS_BY_DATA[args.data]
    video = args.data == "moving-shapes"
    args.no_ablations = args.no_ablations or video
    dataset = open_dataset(args.data, split="test", limit=args.limit or None, seed=args.seed)
    keeps = tuple(args.keep or (VIDEO_KEEP_RATIOS if video else KEEP_RATIOS))
    results = [run_model(name, dataset, args.out, args.batch_size, args.resume, keeps, not args.no_ablations,
                         args.methods) for name in args.models]
    machine = describe()
    meta = {"machine": f"{machine['cpu']}, {machine['cores']} cores", "questions": len(dataset), "seed": args.seed,
            "data": args.data,
            "full_split": not args.limit,
            "keep_ratios": keeps, "ablations": not args.no_ablations}
    write_atomic(args.out / "accuracy.json", json.dumps({"meta": meta, "results": results}, indent=1,
                                                        default=str) + "\n")
    table = markdown(results, meta, keeps, args.methods)
    write_atomic(args.out / "accuracy.md", table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
