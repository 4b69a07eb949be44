"""The evaluation runner wired to the engine: predictions for a batch of samples, and sweeps
over methods x keep ratios (one run folder per setting, a table and plots for the sweep).

The runner (jax_pruning.eval.runner) knows nothing about models; `predictor` is
its engine side: prompt through the model's own chat template, processor
inputs, `jp.generate`, decoded answers with the visual tokens and prefill FLOPs
the LLM really used.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import jax

import jax_pruning as jp
from jax_pruning.eval.prompts import build_prompt
from jax_pruning.eval.records import write_atomic
from jax_pruning.eval.runner import run_eval
from jax_pruning.engine.generate import RowsError
from jax_pruning.eval.samples import Sample, SampleError
from jax_pruning.eval.token_views import encode_views, views_of_output


def task_prompt(processor) -> Callable[[Sample], str]:
    """The benchmark's protocol: question + the task's standard instruction, in the chat template."""
    return lambda s: build_prompt(processor, s.question, s.task, s.choices, video=s.is_video)


def bare_prompt(processor) -> Callable[[Sample], str]:
    """Just the question in the chat template (what the embedded tiny models were trained on)."""
    return lambda s: processor.chat_prompt(s.question, video=s.is_video)


def processor_inputs(processor, samples: Sequence[Sample], prompts: Sequence[str]) -> dict:
    """One batch of image and video samples -> processor outputs (each text holds its own image or video)."""
    videos = [s.video if s.is_video else None for s in samples]
    if not any(videos):
        return processor([s.image for s in samples], prompts)
    images = [[] if s.is_video else [s.image] for s in samples]
    rates = [clip.fps for clip in videos if clip is not None]
    return processor(images if any(images) else None, prompts,
                     videos=[[clip.frames] if clip is not None else [] for clip in videos], video_fps=rates)


def predictor(model, processor, pruner, *, max_new_tokens: int = 8, mesh=None,
              prompt: Callable[[Sample], str] | None = None):
    """-> predict_batch(samples) -> [{prediction, visual_tokens, prefill_flops, seconds, token_views}] for
    run_eval; token_views (pruned runs): each sample's kept/dropped/candidate tokens, 2 bits a token, that
    the HTML report draws (eval/token_views.py)."""
    prompt = prompt or task_prompt(processor)

    def predict(samples: list[Sample]) -> list[dict]:
        try:
            inputs = processor_inputs(processor, samples, [prompt(s) for s in samples])
        except ValueError as err:  # e.g. a video for a model without video input: that sample fails, named
            failure = SampleError(str(err))
            failure.sample_id = _first_refused(processor, samples, prompt)
            raise failure from None
        start = time.perf_counter()
        try:
            out = jp.generate(model, inputs, pruner, max_new_tokens, mesh=mesh)
        except RowsError as err:  # that sample fails (too long, NaN; recorded with the reason); the batch is retried
            failure = SampleError(str(err))
            failure.sample_id = samples[err.rows[0]].id
            raise failure from None
        seconds = (time.perf_counter() - start) / len(samples)
        texts = processor.tokenizer.batch_decode(out.tokens, skip_special_tokens=True)
        flops = out.stats["prefill_flops_per_sample"]
        results = [{"prediction": text.strip(), "visual_tokens": int(v), "prefill_flops": float(f),
                    "seconds": seconds} for text, v, f in zip(texts, out.visual_tokens, flops)]
        if pruner is not None and out.visual is not None and out.visual_labels is not None:
            for b, (result, sample) in enumerate(zip(results, samples)):  # what the report's overlays draw
                image = sample.preview
                result["token_views"] = encode_views(views_of_output(
                    out, sample=b, image_hw=(image.height, image.width), config=model.config))
        return results

    return predict


def _first_refused(processor, samples: Sequence[Sample], prompt) -> str | None:
    """The id of the first sample the processor refuses on its own (None: only the batch as a whole fails)."""
    if len(samples) == 1:
        return samples[0].id
    for sample in samples:
        try:
            processor_inputs(processor, [sample], [prompt(sample)])
        except (ValueError, SampleError):
            return sample.id
    return None


def run_name(pruner) -> str:
    return "unpruned" if pruner is None else f"{pruner.name}_keep{pruner.keep_ratio:g}"


def sweep(model, processor, dataset: Sequence[Sample], pruners: Sequence, out_dir: str | os.PathLike, *,
          batch_size: int = 8, max_new_tokens: int = 8, resume: bool = False, mesh=None,
          prompt: Callable[[Sample], str] | None = None, progress: bool = True) -> list[dict]:
    """One run per pruner (None = unpruned) into out_dir/<run name>/; sweep.json, sweep.md, plots and
    report.html (tables, plots and a sample browser with each method's kept tokens, one self-contained file).
    With several processes (jax.distributed) every process calls this; process 0 gets the summaries
    and writes the files, the others get None."""
    from jax_pruning.eval.plots import plot_sweep
    from jax_pruning.eval.report import write_report

    out_dir = Path(out_dir)
    summaries = []
    for pruner in pruners:
        config = {"method": "none" if pruner is None else pruner.name,
                  "keep_ratio": 1.0 if pruner is None else pruner.keep_ratio,
                  "options": {} if pruner is None else dict(pruner.options),
                  "max_new_tokens": max_new_tokens, "batch_size": batch_size}
        predict = predictor(model, processor, pruner, max_new_tokens=max_new_tokens, mesh=mesh, prompt=prompt)
        summaries.append(run_eval(dataset, predict, out_dir / run_name(pruner), batch_size=batch_size,
                                  resume=resume, name=run_name(pruner), config=config, progress=progress))
    if jax.process_index() != 0:  # several processes: process 0 writes the sweep's files
        return None
    write_atomic(out_dir / "sweep.json", json.dumps(summaries, indent=2, default=str) + "\n")
    write_atomic(out_dir / "sweep.md", sweep_table(summaries) + "\n")
    plot_sweep(summaries, out_dir)
    write_report(out_dir, summaries, dataset)
    return summaries


def sweep_table(summaries: Sequence[dict]) -> str:
    """Markdown: one row per run (primary metric, visual tokens, prefill FLOPs, samples/s)."""
    lines = ["| method | keep | accuracy | visual tokens | prefill GFLOPs | samples/s | failed |",
             "|---|---|---|---|---|---|---|"]
    for s in summaries:
        metric = s["metrics"].get(s["primary_metric"])
        flops = s["mean_prefill_flops"]
        lines.append(
            f"| {s['method']} | {s['keep_ratio']:g} | {metric:.2f} | {s['mean_visual_tokens'] or 0:.1f} | "
            f"{(flops or 0) / 1e9:.4f} | {s['samples_per_s'] or 0:.1f} | {s['n_failed']} |"
        )
    return "\n".join(lines)
