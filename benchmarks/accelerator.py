"""Accelerator benchmark: real-shape LLaVA-NeXT-8B / Qwen2.5-VL-7B on one GPU, random bfloat16 weights,
inside a hard time budget.

    # on the GPU machine (jax[cuda], flax, transformers, torch; nothing is downloaded; 7 minutes at most):
    python benchmarks/accelerator.py                        # both real presets, --budget-seconds 420
    python benchmarks/accelerator.py --compile-cache /tmp/jax_cache   # a rerun skips the XLA compiles
    python benchmarks/accelerator.py --presets qwen2_5_vl_7b --no-hf --batches 8 32 --keeps 0.1
    python benchmarks/accelerator.py --presets qwen2_5_vl_7b_video --batches 1 8   # a 64-frame 448x448 clip
    # CPU check of the whole pipeline (micro presets: tiny widths, 3 layers, small images):
    JAX_PLATFORMS=cpu python benchmarks/accelerator.py --presets llava_next_micro qwen2_5_vl_micro \\
        --batches 1 2 --keeps 0.1 --out /tmp/acc

Flags: --presets (default the real ones), --batches (1 8 32), --keeps (0.5 0.25 0.1), --methods (default
every method; each family keeps those that apply), --throughput-methods, --repeats (3 timed calls per
configuration), --new-tokens (16), --prompt-words (60), --dtype (bfloat16), --budget-seconds (420),
--no-hf, --compile-cache, --out (default results/<machine>/, machine.py's name).

What it measures, per preset (shapes.py: `llava_next_8b`, `qwen2_5_vl_7b`, and `qwen2_5_vl_7b_video`: one
64-frame 448x448 clip per sample, 8,192 visual tokens, with EVS first among the methods; the `*_micro`
presets run the same code on a CPU):
- prefill (batch 1, `jp.generate(..., max_new_tokens=1)`): unpruned and every method that applies
  to the family (prefill.py's method list: mr_pruner and gprune LLaVA-NeXT only) at each keep ratio;
  LLM prefill, pruning op and vision milliseconds, the pruning op's share, measured speed-ups next to
  the analytic FLOP bounds (the same columns as prefill.py), first-call (compile) time apart from run
  time, compile counts of the first and of the timed calls (the timed calls must add none);
- end-to-end samples/s of a VQA workload (one image of the preset's size per sample, a 60-word
  prompt, 16 new tokens) at each batch size, unpruned and one or two methods at the lowest keep;
- peak device memory (`jax.devices()[0].memory_stats()["peak_bytes_in_use"]`: the process's peak so
  far, so a row shows the largest of it and every row before; None on the CPU, where the row's peak
  RSS is given instead);
- HF PyTorch (bf16, sdpa) side by side where torch sees a GPU (on a CPU-only JAX, torch on the CPU):
  the full forward over the prompt (vs our vision + prune + prefill) and the language model alone over
  the sequence our engine kept (vs our LLM prefill), as prefill.py does, with the same random weights:
  the HF model is initialised on the GPU (`with torch.device("cuda")`) and its state dict converted
  to ours through DLPack by the converter's key maps (no host copy). Without the HF side (`--no-hf`,
  or torch without CUDA) our weights are drawn directly on the device with JAX.

Time budget: nothing runs past `--budget-seconds` (counted from the start of the process). Work runs
most important first (per preset: prefill unpruned + mr_pruner / hilo / fastv at the lowest keep; the
samples/s at batch 8; the HF comparison; the other methods; the other batches; the other keeps); each
preset gets an equal share of what is left when it starts. Before each configuration its time is
estimated from what ran before (compile + runs) and it is skipped, with the reason, when it does not
fit; a watchdog stops the process at the deadline whatever runs. The JSON + Markdown
(results/<machine>/accelerator.{json,md}, or --out) are rewritten atomically after every
configuration, so a killed run leaves every finished number and the reason for every missing one.
A run the watchdog stopped still exits 0 (settings.stopped_by says so); a configuration that fails (say,
out of device memory at batch 32) is recorded as failed, with the error, and the run goes on.

GPU memory: with the HF side on, JAX pre-allocates 70% of the device (XLA_PYTHON_CLIENT_MEM_FRACTION,
unless set) and torch's HF copy of the weights lives in the rest; JAX starts (and loads its cuDNN)
before torch is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
import types
import warnings
from pathlib import Path

START = time.monotonic()  # the budget counts from here

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

# prefill.py defaults JAX_PLATFORMS to cpu when imported (its CPU benchmark): undo that here, before jax
# is imported, so a GPU machine keeps its GPU. Only the caller (e.g. the CPU test) may force the CPU.
_PLATFORMS = os.environ.get("JAX_PLATFORMS")
import numpy as np  # noqa: E402

import report  # noqa: E402
import shapes  # noqa: E402
from prefill import HF_PRUNED_METHOD, METHODS, kept_sequence, method_specs  # noqa: E402

if _PLATFORMS is None:
    os.environ.pop("JAX_PLATFORMS", None)
else:
    os.environ["JAX_PLATFORMS"] = _PLATFORMS
# (jax reads it when first imported: nothing above imports it.)
warnings.filterwarnings("ignore", message="Some donated buffers were not usable")

from accelerator_models import (HFSide, build, device_memory, parameter_count, prefill_row,  # noqa: E402
                                throughput_row, timed_generate, workload)
from accelerator_report import NAME, markdown  # noqa: E402

PRIORITY = ("mr_pruner", "hilo", "fastv")  # run first (ordering only; the methods come from prefill.METHODS)
VIDEO_PRIORITY = ("evs", "hilo", "fastv")  # the same on a video preset
BATCHES = (1, 8, 32)
KEEPS = (0.5, 0.25, 0.1)
MAIN_BATCH = 8
SAFETY = 1.25  # estimates are multiplied by this before the fit check
GUARD_MARGIN = 3.0  # seconds before the deadline the watchdog writes and exits


def now() -> float:
    return time.monotonic() - START


# ---- plan ----------------------------------------------------------------------------------------

class Task(types.SimpleNamespace):
    """One configuration: kind "prefill" | "throughput" | "hf_full" | "hf_lm", its row once run."""


def plan_preset(name: str, args, hf: bool) -> list[Task]:
    """The preset's configurations, most important first."""
    preset = shapes.get(name)
    keeps = sorted(set(args.keeps))
    low = keeps[0]
    specs = method_specs(preset.family, args.methods, keeps, video=preset.is_video)
    methods = [m for m in args.methods if any(label.startswith(m + "@") for label in specs)]
    priority = VIDEO_PRIORITY if preset.is_video else PRIORITY
    ordered = [m for m in priority if m in methods] + [m for m in methods if m not in priority]
    first = [m for m in ordered if m in priority]
    rest = [m for m in ordered if m not in priority]
    if hf and HF_PRUNED_METHOD in rest:  # the HF language model runs over its kept sequence: measure it early
        rest.remove(HF_PRUNED_METHOD)
    tp_methods = [m for m in (args.throughput_methods or ordered[:2]) if m in methods]
    batches = list(dict.fromkeys(args.batches))
    main_batch = MAIN_BATCH if MAIN_BATCH in batches else batches[0]
    other_batches = sorted((b for b in batches if b != main_batch), reverse=True)

    tasks: list[Task] = []

    def add(kind, config, tier, **extra):
        tasks.append(Task(preset=name, kind=kind, config=config, tier=tier, status="pending", row=None, **extra))

    def prefill(label, tier):
        add("prefill", label, tier, spec=specs[label])

    def throughput(batch, tier):
        add("throughput", f"unpruned b{batch}", tier, spec=None, batch=batch, label="unpruned")
        for m in tp_methods:
            label = f"{m}@{low}"
            add("throughput", f"{label} b{batch}", tier, spec=specs[label], batch=batch, label=label)

    prefill("unpruned", 1)
    for m in first:
        prefill(f"{m}@{low}", 1)
    throughput(main_batch, 2)
    if hf:
        if HF_PRUNED_METHOD in methods:
            prefill(f"{HF_PRUNED_METHOD}@{low}", 3)
        add("hf_full", "hf:full_forward", 3)
        add("hf_lm", "hf:lm:unpruned", 3, label="unpruned")
        if HF_PRUNED_METHOD in methods:
            add("hf_lm", f"hf:lm:{HF_PRUNED_METHOD}@{low}", 3, label=f"{HF_PRUNED_METHOD}@{low}")
    for m in rest:
        prefill(f"{m}@{low}", 4)
    for b in other_batches:
        throughput(b, 5)
    for keep in keeps[1:]:
        for m in ordered:
            prefill(f"{m}@{keep}", 6)
    if hf and HF_PRUNED_METHOD in methods:
        for keep in keeps[1:]:
            add("hf_lm", f"hf:lm:{HF_PRUNED_METHOD}@{keep}", 7, label=f"{HF_PRUNED_METHOD}@{keep}")
    return tasks


# ---- results -------------------------------------------------------------------------------------

class Results:
    """Every planned configuration's row; written atomically (JSON + Markdown) after each change."""

    def __init__(self, folder: Path, settings: dict, presets: list[str]):
        self.folder, self.settings = folder, settings
        self.lock = threading.RLock()
        self.tasks: list[Task] = []
        self.presets = {p: {"preset": p, "status": "pending"} for p in presets}
        self.current: Task | None = None
        self.machine = report.describe()  # once: it runs nvidia-smi

    def payload(self) -> dict:
        presets = []
        for name, info in self.presets.items():
            entry = dict(info)
            for kind, key in (("prefill", "prefill"), ("throughput", "throughput")):
                entry[key] = [_row(t) for t in self.tasks if t.preset == name and t.kind == kind]
            entry["hf"] = [_row(t) for t in self.tasks if t.preset == name and t.kind.startswith("hf")]
            presets.append(entry)
        rows = [t for t in self.tasks if t.row is not None and t.status == "done"]
        settings = dict(self.settings, wall_seconds=now(), load_end=report.loadavg(),
                        compiles_timed_total=sum(t.row.get("compiles_timed", 0) for t in rows),
                        done=sum(t.status == "done" for t in self.tasks),
                        skipped=sum(t.status == "skipped" for t in self.tasks),
                        failed=sum(t.status == "failed" for t in self.tasks))
        return {"settings": settings, "machine": self.machine, "presets": presets}

    def write(self) -> None:
        with self.lock:
            payload = report._plain(self.payload())
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.folder / f"{NAME}.json", json.dumps(payload, indent=1))
            _atomic_write(self.folder / f"{NAME}.md", markdown(payload))


def _row(task: Task) -> dict:
    row = {"config": task.config, "tier": task.tier, "status": task.status}
    if task.kind in ("throughput",):
        row["batch"] = task.batch
    return dict(row, **(task.row or {}))


def _atomic_write(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def skip(task: Task, reason: str) -> None:
    task.status, task.row = "skipped", {"reason": reason}


def start_watchdog(results: Results, deadline: float) -> threading.Event:
    """At `deadline` (seconds since START) mark the running and pending rows skipped, write, exit(0)."""
    done = threading.Event()

    def guard():
        if done.wait(max(0.0, deadline - now())):
            return
        with results.lock:
            if done.is_set():  # the run finished while this waited for the lock
                return
            for task in results.tasks:
                if task is results.current:
                    skip(task, f"budget: stopped by the watchdog while running at the deadline ({deadline:.0f} s)")
                elif task.status == "pending":
                    skip(task, "budget: not started before the deadline")
            for info in results.presets.values():
                if info["status"] in ("pending", "building", "running"):
                    info["status"] = "stopped at the deadline"
            results.settings["stopped_by"] = "watchdog at the deadline"
            results.write()
            print(f"budget: stopped at {now():.0f} s; results in {results.folder}", flush=True)
            os._exit(0)

    threading.Thread(target=guard, daemon=True, name="budget-watchdog").start()
    return done


# ---- models --------------------------------------------------------------------------------------

class Estimates:
    """Seconds a configuration will take, from what ran before (this preset first, then earlier ones)."""

    def __init__(self):
        self.seen: list[dict] = []  # {"preset", "kind", "compile", "run", "batch"}
        self.builds: list[float] = []  # seconds per model built (the real presets are alike: 8.4 B, 8.3 B)

    def add(self, preset, kind, compile_s, run_s, batch=1):
        self.seen.append({"preset": preset, "kind": kind, "compile": compile_s, "run": run_s, "batch": batch})

    def _of(self, preset, kind):
        """The last 3 samples of this kind in this preset (the first call of a preset also compiles its vision
        tower: it drops out once others are known), else the other presets'."""
        mine = [s for s in self.seen if s["kind"] == kind and s["preset"] == preset]
        return mine[-3:] or [s for s in self.seen if s["kind"] == kind][-3:]

    def task(self, task: Task, repeats: int, new_tokens: int) -> float | None:
        calls = repeats + 1
        prefill = self._of(task.preset, "prefill")
        if task.kind == "prefill":
            if not prefill:
                return None
            return max(s["compile"] for s in prefill) + calls * max(s["run"] for s in prefill)
        if task.kind == "throughput":
            tp = self._of(task.preset, "throughput")
            if tp:
                same = [s for s in tp if s["batch"] == task.batch]
                run = max(s["run"] for s in same) if same else max(s["run"] * task.batch / s["batch"] for s in tp)
                return max(s["compile"] for s in tp) + calls * run
            if not prefill:
                return None
            run = task.batch * max(s["run"] for s in prefill) * max(2.0, new_tokens / 4)
            return 1.5 * max(s["compile"] for s in prefill) + calls * run  # vision at a new batch, decode loop
        hf = self._of(task.preset, "hf")
        if hf:
            return calls * max(s["run"] for s in hf) + 2.0
        if not prefill:
            return None
        return calls * 5 * max(s["run"] for s in prefill) + 10.0  # + torch's first-use start-up

    def build(self) -> float | None:
        return max(self.builds) if self.builds else None


# ---- one preset ----------------------------------------------------------------------------------

def run_preset(name: str, tasks: list[Task], results: Results, estimates: Estimates, args, hf_device,
               share_deadline: float) -> None:
    import jax

    preset = shapes.get(name)
    info = results.presets[name]
    hf_enabled = hf_device is not None

    with results.lock:
        info.update(family=preset.family, image_hw=list(preset.image_hw), share_deadline_s=share_deadline)
    guess = estimates.build()
    if guess is not None and now() + SAFETY * guess > share_deadline:
        reason = f"budget: building the model takes ~{guess:.0f} s, {share_deadline - now():.0f} s left for it"
        with results.lock:
            info["status"] = "skipped"
            for t in tasks:
                skip(t, reason)
        results.write()
        return

    with results.lock:
        info["status"] = "building"
    results.write()
    start = time.perf_counter()
    try:
        hf, model, weights = build(preset, args.dtype, hf_device)
    except Exception as err:  # e.g. out of memory: the next preset may still fit
        traceback.print_exc()
        reason = f"building the model failed: {type(err).__name__}: {err}"[:500]
        with results.lock:
            info["status"] = "failed"
            for t in tasks:
                t.status, t.row = "failed", {"reason": reason}
        results.write()
        return
    build_seconds = time.perf_counter() - start
    estimates.builds.append(build_seconds)
    parameters = parameter_count(model)
    hf_side = HFSide(hf, hf_device, args.dtype) if hf_enabled else None
    start = time.perf_counter()
    one = workload(preset, 1, args.prompt_words)
    with results.lock:
        info.update(status="running", build_seconds=build_seconds, weights=weights, parameters=parameters,
                    prompt_tokens=int(np.asarray(one["input_ids"]).shape[1]),
                    inputs_seconds_batch1=time.perf_counter() - start, device_after_build=device_memory())
    results.write()

    batches: dict[int, dict] = {1: one}
    done: dict[str, dict] = {}  # config -> row
    firsts: dict[str, object] = {}  # prefill label -> first GenerateOutput (its kept tokens, for HF)
    text = model.config.text

    for task in tasks:
        if task.status != "pending":
            continue
        guess = estimates.task(task, args.repeats, args.new_tokens)
        left = share_deadline - now()
        if guess is not None and SAFETY * guess > left:
            with results.lock:
                skip(task, f"budget: estimated {guess:.1f} s (compile + {args.repeats + 1} calls), "
                           f"{max(left, 0):.1f} s left of this preset's share")
            results.write()
            continue
        with results.lock:
            results.current = task
        try:
            if task.kind == "prefill":
                run = timed_generate(model, one, task.spec, 1, args.repeats)
                row = prefill_row(run, task.spec, text, done.get("unpruned"))
                firsts[task.config] = run["first"]
                estimates.add(name, "prefill", row["compile_ms"] / 1e3, row["call_ms"] / 1e3)
            elif task.kind == "throughput":
                if task.batch not in batches:
                    start = time.perf_counter()
                    batches[task.batch] = workload(preset, task.batch, args.prompt_words)
                    with results.lock:
                        info[f"inputs_seconds_batch{task.batch}"] = time.perf_counter() - start
                run = timed_generate(model, batches[task.batch], task.spec, args.new_tokens, args.repeats)
                row = throughput_row(run, task.batch, done.get(f"unpruned b{task.batch}"))
                estimates.add(name, "throughput", row["compile_seconds"], row["batch_seconds"], task.batch)
            elif task.kind == "hf_full":
                ours = done.get("unpruned")
                if ours is None:
                    raise _Skip("needs the unpruned prefill row (ours) first")
                hf_row = hf_side.full(one, args.repeats)
                row = {"comparison": "full forward (vision + LLM), unpruned", "ours_ms": ours["e2e_ms"], **hf_row,
                       "ours_over_hf": ours["e2e_ms"] / hf_row["hf_ms"]}
                estimates.add(name, "hf", 0.0, hf_row["hf_ms"] / 1e3)
            else:  # hf_lm
                ours, first = done.get(task.label), firsts.get(task.label)
                if ours is None or first is None:
                    raise _Skip(f"needs the {task.label} prefill row (ours) first")
                embeds, positions = kept_sequence(model, one, first)
                hf_row = hf_side.lm(embeds, positions, args.repeats)
                row = {"comparison": f"language model over the kept sequence, {task.label}",
                       "ours_ms": ours["prefill_ms"], **hf_row, "ours_over_hf": ours["prefill_ms"] / hf_row["hf_ms"]}
                estimates.add(name, "hf", 0.0, hf_row["hf_ms"] / 1e3)
            row.update(device_memory() or {"device_peak_mb": None})
            with results.lock:
                task.status, task.row, results.current = "done", row, None
                done[task.config] = row
        except _Skip as why:
            with results.lock:
                skip(task, str(why))
                results.current = None
        except Exception as err:  # e.g. out of device memory at batch 32: keep going with the rest
            traceback.print_exc()
            with results.lock:
                reason = f"{type(err).__name__}: {err}"[:500]
                task.status, task.row, results.current = "failed", {"reason": reason}, None
        results.write()
        print(f"[{now():6.1f} s] {name} {task.config}: {task.status}", flush=True)

    with results.lock:
        info["status"] = "done"
    del model, hf_side, hf, firsts
    if hf_enabled and hf_device == "cuda":
        import torch

        torch.cuda.empty_cache()
    jax.clear_caches()


class _Skip(Exception):
    pass


# ---- Markdown ------------------------------------------------------------------------------------

def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def warm_jax() -> None:
    """Start JAX's backend and its GPU libraries (a small convolution and matmul) before torch is imported,
    so that JAX loads the cuDNN / cuBLAS it was built against."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((1, 8, 8, 4), jnp.float32)
    w = jnp.ones((3, 3, 4, 4), jnp.float32)
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    jax.block_until_ready(y.reshape(-1, 4) @ jnp.ones((4, 4)))


def hf_choice(no_hf: bool) -> tuple[str | None, str]:
    """(torch device for the HF side or None, why)."""
    import jax

    if no_hf:
        return None, "off (--no-hf)"
    try:
        import torch
    except ImportError:
        return None, "off (torch is not installed)"
    if torch.cuda.is_available():
        return "cuda", f"on, torch on {torch.cuda.get_device_name(0)}"
    if jax.default_backend() == "cpu":
        return "cpu", "on, torch on the CPU (CPU run)"
    return None, "off (torch sees no GPU: a CPU build of torch?)"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(shapes.REAL), choices=list(shapes.PRESETS))
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--keeps", nargs="+", type=float, default=list(KEEPS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--throughput-methods", nargs="+", default=None, choices=list(METHODS),
                        help="methods of the samples/s rows (default: the first two of mr_pruner, hilo, fastv "
                             "that apply)")
    parser.add_argument("--budget-seconds", type=float, default=420.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per configuration")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--prompt-words", type=int, default=60)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--no-hf", action="store_true", help="skip the HF PyTorch side (weights drawn with JAX)")
    parser.add_argument("--compile-cache", default=None, help="JAX persistent compilation cache folder")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default results/<machine>)")
    args = parser.parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)

    folder = Path(args.out) if args.out is not None else HERE / "results" / report.describe()["slug"]
    deadline = args.budget_seconds - GUARD_MARGIN
    settings = {"argv": argv_list, "budget_seconds": args.budget_seconds, "presets": args.presets,
                "batches": args.batches, "keeps": args.keeps, "methods": args.methods, "repeats": args.repeats,
                "max_new_tokens": args.new_tokens, "prompt_words": args.prompt_words, "dtype": args.dtype,
                "backend": "?", "devices": [], "jax": "?", "torch": None, "hf": "?", "stopped_by": None,
                "load_start": report.loadavg(), "engine_commit": report.git_commit(),
                "device_memory_note": "device peak MB: the process's peak so far (JAX keeps no per-call peak), "
                                      "so a row shows the largest of its own and every earlier row's."}
    results = Results(folder, settings, args.presets)
    # Planned up front with HF rows, so a deadline during start-up still names every row; pruned below.
    results.tasks = [t for p in args.presets for t in plan_preset(p, args, hf=not args.no_hf)]
    guard = start_watchdog(results, deadline)

    if not args.no_hf:  # leave the GPU memory JAX does not pre-allocate to torch's HF model
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.70")
    import jax

    if args.compile_cache:
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    warm_jax()
    hf_device, hf_why = hf_choice(args.no_hf)
    with results.lock:
        settings.update(backend=jax.default_backend(), devices=[str(d.device_kind) for d in jax.devices()],
                        jax=jax.__version__, hf=hf_why, startup_seconds=now())
        settings["torch"] = _version("torch")
        if hf_device is None:
            for t in results.tasks:
                if t.kind.startswith("hf") and t.status == "pending":
                    skip(t, f"HF side {hf_why}")
    results.write()

    estimates = Estimates()
    for i, name in enumerate(args.presets):
        left = deadline - now()
        share = now() + left / (len(args.presets) - i)
        tasks = [t for t in results.tasks if t.preset == name]
        if left <= 0:
            break
        run_preset(name, tasks, results, estimates, args, hf_device, share)
    with results.lock:
        for t in results.tasks:
            if t.status == "pending":
                skip(t, "budget: no time left")
        guard.set()
        results.write()
    payload = results.payload()
    print(markdown(report._plain(payload)))
    print("results in", folder)
    return payload


if __name__ == "__main__":
    main()
