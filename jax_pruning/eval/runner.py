"""Batched, resumable evaluation of one method on one dataset.

`run_eval(dataset, predict_batch, out_dir, batch_size=..., ...)` knows nothing
about models: `predict_batch(samples) -> list[dict]` is the engine side. It
gets exactly `batch_size` samples whose images / videos are already decoded (the last
partial batch, and slots of samples that failed, are filled by repeating the
last good sample, so the engine sees one static batch shape and compiles
once; the padding's results are dropped). Each returned dict has at least
`prediction` (str); `visual_tokens` and `prefill_flops` feed the summary; any
other JSON-able keys are stored as they are. The runner adds `wall_seconds`
(the batch's predict_batch wall time / its real samples, so padding and
retries are charged to them: samples/s in the summary is end-to-end throughput).

A sample that cannot be evaluated is recorded with its reason and the run goes on:
- its image or video does not load (missing file, corrupt bytes): `Sample.image` / `.video` raise SampleError;
- the engine rejects it (e.g. prompt longer than the text bucket): predict_batch
  returns `{"error": reason}` in its slot, or raises `SampleError` (with a
  `sample_id` attribute naming the sample: only that one fails and the batch is
  retried without it; without one: the whole batch is recorded as failed).
Any other exception stops the run after everything finished so far is on disk.

Files in out_dir: predictions.jsonl (one line per sample, fsynced per batch;
`resume=True` skips ids already there and tolerates a truncated last line),
summary.json and summary.md (written atomically at the end). Failed samples
count as empty (wrong) answers in the metrics, so failing cannot raise a score.

Multi-process (TPU pods, multi-node GPU, or several local processes): every
process runs the same command after `jax.distributed.initialize()`
(`jax_pruning.parallel.initialize_distributed`). The run is one SPMD program:
every process walks the same global batches (process 0 decides what a resumed
run still has to do and broadcasts it), `predict_batch` runs the engine over the
mesh of all processes' devices, and only process 0 writes predictions.jsonl and
the summaries (`writer`). A batch is appended only after every process finished
it, so a process that dies mid-batch leaves nothing half-written: `resume=True`
redoes that batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jax_pruning.eval.records import append_records, read_records, write_atomic
from jax_pruning.eval.samples import Sample, SampleError

PredictBatch = Callable[[list[Sample]], list[dict]]
PREDICTIONS_FILE, SUMMARY_JSON, SUMMARY_MD = "predictions.jsonl", "summary.json", "summary.md"


def device_info() -> dict:
    """Count and kind of the accelerators of the run (jax.devices(): every process's)."""
    import jax

    devices = jax.devices()
    return {"count": len(devices), "kind": devices[0].device_kind, "platform": devices[0].platform,
            "processes": jax.process_count()}


def _processes() -> tuple[int, int]:
    """(this process's index, process count); (0, 1) without jax.distributed."""
    import jax

    return jax.process_index(), jax.process_count()


def _agree_on_done(done_mask: np.ndarray, count: int) -> np.ndarray:
    """Process 0's view of which samples are done, on every process."""
    if count == 1:
        return done_mask
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(done_mask.astype(np.int32))).astype(bool)


def _barrier(name: str, count: int) -> None:
    if count > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _decoded(sample: Sample) -> Sample:
    """The sample with its image or video already decoded (the engine reads `.image` / `.video` without
    decoding again)."""
    if sample.is_video:
        clip = sample.video
        return dataclasses.replace(sample, load_video=lambda: clip)
    image = sample.image
    return dataclasses.replace(sample, load_image=lambda: image)


def _failed(sample: Sample, reason: str) -> dict:
    return {"id": sample.id, "ok": False, "error": reason}


def _evaluate_batch(batch: list[Sample], predict_batch: PredictBatch, batch_size: int) -> list[dict]:
    """Records for one batch of <= batch_size samples, in batch order."""
    records: dict[str, dict] = {}
    ready = []
    for sample in batch:
        try:
            ready.append(_decoded(sample))
        except SampleError as err:
            records[sample.id] = _failed(sample, str(err))
    start = time.perf_counter()
    while ready:
        padded = ready + [ready[-1]] * (batch_size - len(ready))
        try:
            results = predict_batch(padded)
        except SampleError as err:
            bad = getattr(err, "sample_id", None)
            if bad not in {s.id for s in ready}:
                records.update({s.id: _failed(s, str(err)) for s in ready})
                break
            records[bad] = _failed(next(s for s in ready if s.id == bad), str(err))
            ready = [s for s in ready if s.id != bad]
            continue
        seconds = time.perf_counter() - start
        if not isinstance(results, (list, tuple)) or len(results) != len(padded):
            raise ValueError(f"predict_batch returned {len(results) if hasattr(results, '__len__') else results!r} "
                             f"results for a batch of {len(padded)} samples")
        for sample, result in zip(ready, results):
            if not isinstance(result, dict):
                raise ValueError(f"predict_batch result for {sample.id!r} is {type(result).__name__}, not a dict")
            if result.get("error"):
                records[sample.id] = _failed(sample, str(result["error"]))
            elif not isinstance(result.get("prediction"), str):
                raise ValueError(f"predict_batch result for {sample.id!r} has no string 'prediction': {result!r}")
            else:
                records[sample.id] = {"id": sample.id, "ok": True, **result, "answers": list(sample.answers),
                                      "wall_seconds": seconds / len(ready)}
        break
    return [records[s.id] for s in batch]


def _mean(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarize_run(samples: Sequence[Sample], records: Sequence[dict], *, task: str, name: str,
                  config: dict, devices: dict | None = None) -> dict:
    """Metrics and costs of a finished run (samples without a record are not scored)."""
    from jax_pruning.eval.metrics import PRIMARY_METRIC, score

    by_id = {r["id"]: r for r in records}
    done = [s for s in samples if s.id in by_id]
    predictions = [by_id[s.id].get("prediction", "") if by_id[s.id].get("ok") else "" for s in done]
    ok = [by_id[s.id] for s in done if by_id[s.id].get("ok")]
    seconds = sum(r.get("wall_seconds", 0.0) for r in ok)
    return {
        "name": name,
        "method": config.get("method"),
        "keep_ratio": config.get("keep_ratio"),
        "task": task,
        "primary_metric": PRIMARY_METRIC.get(task),
        "metrics": score(task, predictions, done),
        "n_samples": len(done),
        "n_failed": len(done) - len(ok),
        "n_missing": len(samples) - len(done),
        "samples_per_s": len(ok) / seconds if seconds > 0 else None,
        "mean_visual_tokens": _mean([r.get("visual_tokens") for r in ok]),
        "mean_prefill_flops": _mean([r.get("prefill_flops") for r in ok]),
        "devices": devices if devices is not None else device_info(),
        "config": config,
    }


def summary_markdown(summary: dict) -> str:
    rows = [("name", summary["name"]), ("method", summary["method"]), ("keep ratio", summary["keep_ratio"]),
            ("task", summary["task"]),
            *((f"**{k}**" if k == summary.get("primary_metric") else k, v) for k, v in summary["metrics"].items()),
            ("samples", summary["n_samples"]), ("failed", summary["n_failed"]),
            ("samples/s", summary["samples_per_s"]), ("mean visual tokens", summary["mean_visual_tokens"]),
            ("mean prefill FLOPs", summary["mean_prefill_flops"]),
            ("devices", f"{summary['devices']['count']} x {summary['devices']['kind']}")]

    def fmt(value):
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
        return "-" if value is None else str(value)

    lines = [f"# Evaluation: {summary['name']}", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {fmt(value)} |" for key, value in rows]
    return "\n".join(lines) + "\n"


def run_eval(dataset: Sequence[Sample], predict_batch: PredictBatch, out_dir, *, batch_size: int,
             task: str | None = None, resume: bool = False, name: str | None = None, config: dict | None = None,
             progress: bool = True) -> dict:
    """Evaluate `dataset` batch by batch; returns the summary (written to out_dir by process 0). See the
    module doc; with several processes, every process must call this with the same arguments."""
    import json

    from tqdm.auto import tqdm

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    config = dict(config or {})
    samples = list(dataset)
    if not samples:
        raise ValueError("run_eval: the dataset is empty")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"run_eval: sample ids must be unique (resume relies on them); repeated: {dupes}")
    task = task or samples[0].task
    process, count = _processes()
    writer = process == 0
    out_dir = Path(out_dir)
    pred_path = out_dir / PREDICTIONS_FILE
    done = np.zeros(len(samples), bool)
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            finished = {r["id"] for r in read_records(pred_path, repair=True)}
            done = np.array([s.id in finished for s in samples])
        else:
            pred_path.write_text("")
    todo = [s for s, d in zip(samples, _agree_on_done(done, count)) if not d]

    with (open(pred_path, "a", encoding="utf-8") if writer else contextlib.nullcontext()) as fh, \
            tqdm(total=len(todo), unit="sample", desc=name or "eval", disable=not (progress and writer)) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            records = _evaluate_batch(batch, predict_batch, batch_size)
            if writer:
                append_records(fh, records)
            bar.update(len(batch))

    summary = None
    if writer:
        records = read_records(pred_path)
        summary = summarize_run(samples, records, task=task, name=name or out_dir.name, config=config)
        write_atomic(out_dir / SUMMARY_JSON, json.dumps(summary, indent=2, default=str) + "\n")
        write_atomic(out_dir / SUMMARY_MD, summary_markdown(summary))
    _barrier(f"run_eval {out_dir.name} done", count)
    if not writer:
        summary = json.loads((out_dir / SUMMARY_JSON).read_text()) if (out_dir / SUMMARY_JSON).is_file() else {}
    return summary
