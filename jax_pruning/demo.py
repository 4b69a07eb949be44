"""`jaxprune demo`: the main job end to end on the embedded default, offline.

Two tiny models shipped in jax_pruning/assets (a LLaVA-NeXT and a Qwen2-VL,
trained on easy-VQA by benchmarks/tiny_models/train.py, in the Hugging Face
folder format) are loaded through the normal `models.load` path; each runs an
unpruned baseline and a few pruning methods at two keep ratios on easy-VQA
test questions. Prints one table per model and writes predictions, summaries,
accuracy/speed plots and a self-contained report.html (eval/report.py) per
model under the output folder.
"""

from __future__ import annotations

import time
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_MODELS = {  # name -> (folder, methods)
    "tiny_llava_next": (ASSETS / "tiny_llava_next", ("mr_pruner", "hilo", "random")),
    "tiny_qwen2_vl": (ASSETS / "tiny_qwen2_vl", ("hilo", "fastv", "random")),
}
KEEP_RATIOS = (0.25, 0.1)


def demo_pruners(methods, n_layers: int, keep_ratios=KEEP_RATIOS) -> list:
    """Unpruned + each method at each ratio; in-LLM layers scaled to shallow models (default 2)."""
    import jax_pruning as jp

    return [None] + [jp.pruner(m, keep_ratio=r, **layer_options(m, n_layers)) for m in methods for r in keep_ratios]


def layer_options(method: str, n_layers: int) -> dict:
    """A method that acts inside the LLM acts at layer min(2, depth - 1) of a shallow model."""
    from jax_pruning.methods import lookup

    declared = lookup(method)
    if declared.layer_option is None or declared.layers is not None:  # none, or its own rule for the depth
        return {}
    return {declared.layer_option: min(2, n_layers - 1)}


def run_demo(out_dir: str = "jaxprune-demo", limit: int = 100, batch_size: int = 20) -> int:
    import models
    from jax_pruning.eval.datasets import open_dataset
    from jax_pruning.processing import Processor
    from jax_pruning.sweep import bare_prompt, sweep, sweep_table

    missing = [str(folder) for folder, _ in DEMO_MODELS.values() if not (folder / "config.json").is_file()]
    if missing:
        raise FileNotFoundError(f"the embedded demo models are missing: {', '.join(missing)}")
    dataset = open_dataset("easy-vqa", split="test", limit=limit)
    out = Path(out_dir)
    for name, (folder, methods) in DEMO_MODELS.items():
        start = time.perf_counter()
        model = models.load(folder)
        processor = Processor.from_folder(folder)
        pruners = demo_pruners(methods, model.config.text.num_hidden_layers)
        summaries = sweep(model, processor, dataset, pruners, out / name, batch_size=batch_size,
                          max_new_tokens=4, prompt=bare_prompt(processor), progress=False)
        print(f"\n## {name}: easy-VQA test, first {len(dataset)} questions, exact match (%) "
              f"[{time.perf_counter() - start:.0f} s]\n")
        print(sweep_table(summaries))
    print(f"\npredictions, summaries and plots (accuracy / speed vs keep ratio) under {out}/; open "
          f"{' and '.join(str(out / name / 'report.html') for name in DEMO_MODELS)} in a browser (tables, plots, "
          f"each sample with every method's kept tokens)")
    return 0
