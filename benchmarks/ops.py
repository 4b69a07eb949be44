"""Ops benchmark: our jitted JAX selections vs PyTorch transliterations of the public code.

Shapes of LLaVA-NeXT-8B at its largest anyres grid: 576 base tokens (24x24) and
2304 tile tokens (48x48, newline tokens excluded), d = 4096, float32, CPU.
Rows: MR-Pruner official (keep 0.1), G-Prune (5 steps, keep 0.1 per
resolution), ToMe (keep 0.1 of all 2880 tokens). Both sides run in this one
process with the same number of threads; each is warmed up (JAX: compiled)
and then timed `--repeats` times, alternating with the other side so both
see the same background load; medians are reported, and the kept tokens
of both sides are compared. Results go to benchmarks/results/<machine>/ops.{json,md}.

Features are synthetic but image-like (Voronoi regions of shared directions
plus noise, log-normal norms, base and tiles drawn from the same regions), so
the graphs have real edges and the scores have no ties: random Gaussian
vectors in 4096-d would be mutually orthogonal and give empty graphs.

    python benchmarks/ops.py [--repeats 9] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import describe  # noqa: E402
from torch_reference import gprune as torch_gprune  # noqa: E402
from torch_reference import mr_pruner_official as torch_mr  # noqa: E402
from torch_reference import tome as torch_tome  # noqa: E402

from jax_pruning.methods import gprune, mr_pruner, tome  # noqa: E402

BASE_SIDE, ROWS, COLS, KEEP_RATIO = 24, 48, 48, 0.1


def synthetic_features(d: int, seed: int = 0, regions: int = 40):
    """(low [576, d], high [ROWS*COLS, d], newline [d]) float32, image-like (see module doc)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(regions, d))
    seeds = rng.random((regions, 2))
    common = rng.normal(size=d)

    def grid(h, w):
        yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        points = np.stack([yy.ravel(), xx.ravel()], 1)
        region = np.argmin(((points[:, None] - seeds[None]) ** 2).sum(-1), axis=1)
        x = centers[region] + 0.75 * rng.normal(size=(h * w, d)) + 0.3 * common
        x *= rng.lognormal(0.0, 0.35, size=(h * w, 1)) / np.sqrt(d)
        return x.astype(np.float32)

    return grid(BASE_SIDE, BASE_SIDE), grid(ROWS, COLS), rng.normal(size=d).astype(np.float32)


def official_layout(low, high, newline):
    """The public code's image_feature: base tokens, then rows of (cols tiles + newline)."""
    tiles = high.reshape(ROWS, COLS, -1)
    lines = np.broadcast_to(newline, (ROWS, 1, newline.shape[0]))
    return np.concatenate([low, np.concatenate([tiles, lines], 1).reshape(ROWS * (COLS + 1), -1)])


def timed_pairs(run_jax, run_torch, repeats: int, warmup: int) -> tuple[list[float], list[float]]:
    """Alternate JAX and PyTorch runs so that both see the same background load."""
    for _ in range(warmup):
        run_jax()
        run_torch()
    jax_times, torch_times = [], []
    for _ in range(repeats):
        for fn, times in ((run_jax, jax_times), (run_torch, torch_times)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return jax_times, torch_times


def jax_runner(fn, *args):
    args = [jnp.asarray(a) for a in args]
    return lambda: jax.block_until_ready(fn(*args))


def bench_mr_pruner(low, high, newline, repeats, warmup):
    n_base = low.shape[0]
    total = mr_pruner.official_budget(KEEP_RATIO, n_base, ROWS, COLS)
    select = jax.jit(lambda lo, hi: mr_pruner.select(lo, hi, total, "official"))
    run_jax = jax_runner(select, low, high)
    layout = torch.from_numpy(official_layout(low, high, newline))
    run_torch = lambda: torch_mr.select(layout, ROWS, COLS, keep_ratio=KEEP_RATIO, n_base=n_base)  # noqa: E731
    jax_times, torch_times = timed_pairs(run_jax, run_torch, repeats, warmup)

    keep_low, keep_high = (np.asarray(m) for m in run_jax())
    high_pos = n_base + (np.arange(ROWS * COLS) // COLS) * (COLS + 1) + np.arange(ROWS * COLS) % COLS
    newline_pos = n_base + np.arange(ROWS) * (COLS + 1) + COLS
    ours = np.sort(np.concatenate([np.flatnonzero(keep_low), high_pos[keep_high], newline_pos]))
    theirs = run_torch().numpy()
    agreement = _set_agreement(ours, theirs)
    return _row("mr_pruner official", f"low 576 + high {ROWS}x{COLS}, d={low.shape[1]}, keep {KEEP_RATIO}",
                jax_times, torch_times, agreement)


def bench_gprune(low, high, repeats, warmup, power):
    k_low, k_high = int(KEEP_RATIO * low.shape[0]), int(KEEP_RATIO * high.shape[0])
    select = jax.jit(lambda lo, hi: (gprune.select(lo, k_low, steps=5), gprune.select(hi, k_high, steps=5)))
    run_jax = jax_runner(select, low, high)
    t_low, t_high = torch.from_numpy(low), torch.from_numpy(high)

    def run_torch():
        return (torch_gprune.select(t_low, KEEP_RATIO, steps=5, power=power),
                torch_gprune.select(t_high, KEEP_RATIO, steps=5, power=power))

    jax_times, torch_times = timed_pairs(run_jax, run_torch, repeats, warmup)
    ours = [np.flatnonzero(np.asarray(m)) for m in run_jax()]
    theirs = [t.numpy() for t in run_torch()]
    agreement = _set_agreement(np.concatenate([ours[0], ours[1] + 10**6]),
                               np.concatenate([theirs[0], theirs[1] + 10**6]))
    label = "gprune (torch: matrix_power, as the public code)" if power == "matrix" else \
        "gprune (torch: 5 vector-matrix products)"
    return _row(label, f"576 and {ROWS * COLS} tokens per resolution, d={low.shape[1]}, 5 steps, keep {KEEP_RATIO}",
                jax_times, torch_times, agreement)


def bench_tome(low, high, repeats, warmup):
    x = np.concatenate([low, high])
    k = int(KEEP_RATIO * x.shape[0])
    run_jax = jax_runner(jax.jit(lambda x: tome.merge(x, k)), x)
    t_x = torch.from_numpy(x)
    run_torch = lambda: torch_tome.merge(t_x, k)  # noqa: E731
    jax_times, torch_times = timed_pairs(run_jax, run_torch, repeats, warmup)
    merged, size, index, _ = (np.asarray(a) for a in run_jax())
    t_merged, t_size, t_index = (t.numpy() for t in run_torch())
    agreement = _set_agreement(index, t_index)
    agreement["same_sizes"] = bool(np.array_equal(size, t_size))
    agreement["merged_max_abs_diff"] = float(np.abs(merged - t_merged).max())
    return _row("tome", f"{x.shape[0]} tokens -> {k}, d={x.shape[1]}", jax_times, torch_times, agreement)


def _set_agreement(ours, theirs) -> dict:
    ours, theirs = set(np.asarray(ours).tolist()), set(np.asarray(theirs).tolist())
    return {"identical": ours == theirs, "kept_jax": len(ours), "kept_torch": len(theirs),
            "common": len(ours & theirs)}


def _row(name, shape, jax_times, torch_times, agreement) -> dict:
    jax_ms, torch_ms = 1e3 * statistics.median(jax_times), 1e3 * statistics.median(torch_times)
    pair_ratio = statistics.median(j / t for j, t in zip(jax_times, torch_times))
    return {"op": name, "shape": shape, "jax_ms": round(jax_ms, 2), "torch_ms": round(torch_ms, 2),
            "ratio_jax_over_torch": round(jax_ms / torch_ms, 3),
            "median_pair_ratio": round(pair_ratio, 3),
            "jax_min_ms": round(1e3 * min(jax_times), 2), "torch_min_ms": round(1e3 * min(torch_times), 2),
            "jax_all_ms": [round(1e3 * t, 2) for t in jax_times],
            "torch_all_ms": [round(1e3 * t, 2) for t in torch_times], "agreement": agreement}


def write_results(rows, settings, out_dir: Path) -> Path:
    machine = describe()
    folder = out_dir / machine["slug"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ops.json").write_text(json.dumps({"machine": machine, "settings": settings, "rows": rows}, indent=2))
    lines = [
        f"# Ops benchmark on {machine['cpu']}, {machine['cores']} cores"
        + (f", GPU: {', '.join(machine['gpus'])}" if machine["gpus"] else " (CPU only)"),
        "",
        f"float32, CPU, {settings['threads']} torch threads, {settings['repeats']} runs of each side, "
        f"JAX and PyTorch alternating, after {settings['warmup']} warm-up runs (JAX: jitted, compiled in "
        f"warm-up). Load average "
        f"before/after: {settings['load_before']} / {settings['load_after']} (shared machine). "
        f"jax {settings['jax']}, torch {settings['torch']}.",
        "",
        "| op | shape | JAX ms (median) | PyTorch ms (median) | JAX / PyTorch | median of paired ratios "
        "| min JAX / min PyTorch | same tokens kept |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        a = r["agreement"]
        same = "yes" if a["identical"] else f"no ({a['common']} of {a['kept_torch']} in common)"
        lines.append(f"| {r['op']} | {r['shape']} | {r['jax_ms']:.1f} | {r['torch_ms']:.1f} | "
                     f"{r['ratio_jax_over_torch']:.2f}x | {r['median_pair_ratio']:.2f}x | "
                     f"{r['jax_min_ms'] / r['torch_min_ms']:.2f}x | {same} |")
    lines += ["", "Produced by `python benchmarks/ops.py`; raw times in ops.json.", ""]
    (folder / "ops.md").write_text("\n".join(lines))
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--only", choices=["mr_pruner", "gprune", "tome"], action="append")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    low, high, newline = synthetic_features(args.dim)
    settings = {"repeats": args.repeats, "warmup": args.warmup, "threads": args.threads,
                "dim": args.dim, "jax": jax.__version__, "torch": torch.__version__,
                "load_before": [round(v, 2) for v in os.getloadavg()]}
    only = set(args.only or ["mr_pruner", "gprune", "tome"])
    rows = []
    if "mr_pruner" in only:
        rows.append(bench_mr_pruner(low, high, newline, args.repeats, args.warmup))
    if "gprune" in only:
        rows.append(bench_gprune(low, high, args.repeats, args.warmup, power="matrix"))
        rows.append(bench_gprune(low, high, args.repeats, args.warmup, power="vector"))
    if "tome" in only:
        rows.append(bench_tome(low, high, args.repeats, args.warmup))
    settings["load_after"] = [round(v, 2) for v in os.getloadavg()]
    for r in rows:
        print(f"{r['op']:<52} JAX {r['jax_ms']:9.1f} ms  torch {r['torch_ms']:9.1f} ms  "
              f"ratio {r['ratio_jax_over_torch']:.2f}x (paired {r['median_pair_ratio']:.2f}x)  agreement {r['agreement']}")
    if args.only is None and args.dim == 4096:
        print("results in", write_results(rows, settings, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
