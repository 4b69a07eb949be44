"""`jaxprune bench`: pruned vs unpruned prefill latency of a local checkpoint, side by side.

Each configuration is measured alternately with the others (A B C A B C ...)
after a warm-up call that compiles it, so machine noise hits all of them
alike; the speed-up is the ratio of medians, printed next to the analytic
FLOP ratio it should approach. The full benchmark suite (real-size shapes,
HF PyTorch comparison, throughput, conversion) lives in benchmarks/.
"""

from __future__ import annotations

import statistics

import numpy as np
from PIL import Image


def synthetic_batch(processor, batch_size: int, image_size: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8))
              for _ in range(batch_size)]
    prompt = processor.chat_prompt("What is in the image?")
    return processor(images, [prompt] * batch_size)


def run_bench(model, inputs: dict, pruners: list, repeats: int = 5) -> list[dict]:
    """Median prefill seconds per pruner (None = unpruned) with speed-up and FLOP ratio vs unpruned."""
    import jax_pruning as jp

    pruners = [None] + [p for p in pruners if p is not None]
    first = {i: jp.generate(model, inputs, p, 1) for i, p in enumerate(pruners)}  # compile
    times = {i: [] for i in range(len(pruners))}
    for _ in range(repeats):
        for i, p in enumerate(pruners):
            times[i].append(jp.generate(model, inputs, p, 1).stats["prefill_seconds"])
    base_time = statistics.median(times[0])
    base_flops = first[0].stats["prefill_flops"]
    rows = []
    for i, p in enumerate(pruners):
        out = first[i]
        median = statistics.median(times[i])
        rows.append({
            "method": "none" if p is None else p.name,
            "keep_ratio": 1.0 if p is None else p.keep_ratio,
            "visual_tokens": float(np.mean(out.visual_tokens)),
            "prefill_ms": 1000 * median,
            "prune_ms": 1000 * out.stats["prune_seconds"],
            "speedup": base_time / median,
            "flop_ratio": base_flops / out.stats["prefill_flops"],
        })
    return rows


def format_table(rows: list[dict]) -> str:
    head = "| method | keep | visual tokens | prefill ms | speed-up | FLOP ratio |\n|---|---|---|---|---|---|"
    body = [f"| {r['method']} | {r['keep_ratio']:.2f} | {r['visual_tokens']:.0f} | {r['prefill_ms']:.1f} | "
            f"{r['speedup']:.2f}x | {r['flop_ratio']:.2f}x |" for r in rows]
    return "\n".join([head, *body])
