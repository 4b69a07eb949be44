"""Throughput benchmark: a VQA-like batched workload, samples/s unpruned and per method at one keep ratio.

Each batch: `--batch` samples of one image (the preset's size) + a ~60-token
prompt, `--new-tokens` greedy tokens. One compiling call per configuration,
then `--repeats` alternating rounds (A B C ... A B C ...) of whole
`jp.generate` calls (vision, pruning, prefill, decode); samples/s from the
median. Compile counts (prefill + decode traces) are read from
`jax_pruning.engine.compile_count()` before and after: the timed calls must
add none.

    python benchmarks/throughput.py [--presets llava_next_cpu qwen2_5_vl_cpu] [--batch 8] [--keep 0.1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
warnings.filterwarnings("ignore", message="Some donated buffers were not usable")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import report  # noqa: E402
import shapes  # noqa: E402
from prefill import METHODS, alternate, median, method_specs  # noqa: E402


def bench_preset(name: str, methods, keep: float, batch: int, new_tokens: int, prompt_words: int,
                 repeats: int) -> dict:
    import jax_pruning as jp
    from jax_pruning.engine import compile_count

    preset = shapes.get(name)
    with tempfile.TemporaryDirectory() as folder:
        _, model = shapes.build(preset, folder)
    inputs = shapes.inputs(preset, batch=batch, prompt_tokens=prompt_words)
    specs = method_specs(preset.family, methods, (keep,))

    def traces() -> int:
        return sum(compile_count().values())

    compiles_first = {}
    for label, spec in specs.items():
        before = traces()
        jp.generate(model, inputs, spec, new_tokens)
        compiles_first[label] = traces() - before

    def run(spec):
        def once():
            start = time.perf_counter()
            jp.generate(model, inputs, spec, new_tokens)
            return {"seconds": time.perf_counter() - start}
        return once

    before = traces()
    timings = alternate({label: run(spec) for label, spec in specs.items()}, repeats)
    compiles_timed = traces() - before
    base = median(timings["unpruned"], "seconds")
    rows = []
    for label in specs:
        seconds = median(timings[label], "seconds")
        rows.append({"config": label, "batch_seconds": seconds, "samples_per_second": batch / seconds,
                     "speedup": base / seconds, "all_seconds": [r["seconds"] for r in timings[label]],
                     "compiles_first_call": compiles_first[label],
                     "compiles_timed": compiles_timed,
                     "peak_rss_mb": max(r["peak_rss_bytes"] for r in timings[label]) / 2**20})
    return {"preset": name, "batch": batch, "prompt_tokens": int(inputs["input_ids"].shape[1]), "rows": rows}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(shapes.CPU))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--keep", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--prompt-words", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default results/<machine>)")
    parser.add_argument("--merge", action="store_true", help="keep other presets already in the results file")
    args = parser.parse_args(argv)
    import jax

    settings = {"batch": args.batch, "max_new_tokens": args.new_tokens, "prompt_words": args.prompt_words,
                "keep_ratio": args.keep, "repeats": args.repeats, "jax": jax.__version__,
                "load_start": report.loadavg(), "engine_commit": report.git_commit()}
    start = time.perf_counter()
    presets = [bench_preset(p, args.methods, args.keep, args.batch, args.new_tokens, args.prompt_words,
                            args.repeats) for p in args.presets]
    settings["load_end"] = report.loadavg()
    settings["wall_seconds"] = time.perf_counter() - start
    payload = {"settings": settings, "presets": presets}
    folder = report.write("throughput", payload, report.throughput_markdown, args.out, args.merge)
    print(report.throughput_markdown(payload))
    print("results in", folder)
    return payload


if __name__ == "__main__":
    main()
