"""Where the CPU prefill time goes: JAX (XLA:CPU) vs PyTorch on the kernels of one decoder layer.

    python benchmarks/cpu_kernels.py [--tokens 1342] [--repeats 7]

The shapes are the qwen2_5_vl_cpu preset's language model (hidden 256, 8 heads of 32,
2 KV heads, MLP 768) over its unpruned prompt of 1,342 tokens, so the figures
explain prefill.md's "ours / HF" row kernel by kernel: the SwiGLU MLP (three
GEMMs), the q/k/v/o projections, and causal GQA attention (ours: the
query-blocked form with causal key skipping; PyTorch: SDPA with is_causal).
Both sides run float32 on the same threads, alternating, medians of `--repeats`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

import report  # noqa: E402

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, MLP = 256, 8, 2, 32, 768


def kernels(tokens: int):
    """{name: (jax callable, torch callable, FLOPs)} on random float32 inputs of one layer."""
    import jax
    import jax.numpy as jnp
    import torch

    from models.attention import attention

    rng = np.random.default_rng(0)
    arr = lambda *shape: rng.normal(size=shape).astype(np.float32) * 0.05
    x, wg, wu, wd = arr(1, tokens, HIDDEN), arr(HIDDEN, MLP), arr(HIDDEN, MLP), arr(MLP, HIDDEN)
    wq, wk, wv, wo = arr(HIDDEN, HEADS * HEAD_DIM), arr(HIDDEN, KV_HEADS * HEAD_DIM), \
        arr(HIDDEN, KV_HEADS * HEAD_DIM), arr(HEADS * HEAD_DIM, HIDDEN)
    q, k, v = arr(1, tokens, HEADS, HEAD_DIM), arr(1, tokens, KV_HEADS, HEAD_DIM), arr(1, tokens, KV_HEADS, HEAD_DIM)
    mask = jnp.tril(jnp.ones((tokens, tokens), bool))[None, None]
    j = {n: jnp.asarray(a) for n, a in dict(x=x, wg=wg, wu=wu, wd=wd, wq=wq, wk=wk, wv=wv, wo=wo, q=q, k=k, v=v).items()}
    t = {n: torch.from_numpy(a) for n, a in dict(x=x, wg=wg, wu=wu, wd=wd, wq=wq, wk=wk, wv=wv, wo=wo).items()}
    tq, tk, tv = (torch.from_numpy(a).transpose(1, 2).contiguous() for a in (q, k, v))  # [B, H, T, hd]

    jax_mlp = jax.jit(lambda x, g, u, d: (jax.nn.silu(x @ g) * (x @ u)) @ d)
    jax_proj = jax.jit(lambda x, wq, wk, wv, wo: ((x @ wq) @ wo, x @ wk, x @ wv))
    jax_attn = jax.jit(lambda q, k, v: attention(q, k, v, mask=mask, causal=True))
    mlp_flops = 2 * tokens * HIDDEN * MLP * 3
    proj_flops = 2 * tokens * HIDDEN * (2 * HEADS * HEAD_DIM + 2 * KV_HEADS * HEAD_DIM)
    attn_flops = 2 * 2 * HEADS * HEAD_DIM * tokens * (tokens + 1) / 2  # QK^T and PV over the causal half
    with torch.inference_mode():
        return {
            "mlp (3 GEMMs)": (lambda: jax_mlp(j["x"], j["wg"], j["wu"], j["wd"]).block_until_ready(),
                              lambda: (torch.nn.functional.silu(t["x"] @ t["wg"]) * (t["x"] @ t["wu"])) @ t["wd"],
                              mlp_flops),
            "q/k/v/o projections": (
                lambda: jax.block_until_ready(jax_proj(j["x"], j["wq"], j["wk"], j["wv"], j["wo"])),
                lambda: ((t["x"] @ t["wq"]) @ t["wo"], t["x"] @ t["wk"], t["x"] @ t["wv"]), proj_flops),
            "causal GQA attention": (
                lambda: jax_attn(j["q"], j["k"], j["v"]).block_until_ready(),
                lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True, enable_gqa=True),
                attn_flops),
        }


def measure(tokens: int, repeats: int) -> list[dict]:
    import torch

    rows = []
    with torch.inference_mode():
        for name, (ours, theirs, flops) in kernels(tokens).items():
            ours(), theirs()  # compile / warm up
            times = {"jax": [], "torch": []}
            for _ in range(repeats):
                for side, fn in (("jax", ours), ("torch", theirs)):
                    start = time.perf_counter()
                    fn()
                    times[side].append(time.perf_counter() - start)
            jax_s, torch_s = statistics.median(times["jax"]), statistics.median(times["torch"])
            rows.append(dict(kernel=name, flops=flops, jax_ms=1e3 * jax_s, torch_ms=1e3 * torch_s,
                             jax_gflops=flops / jax_s / 1e9, torch_gflops=flops / torch_s / 1e9,
                             ratio=jax_s / torch_s))
    return rows


def markdown(payload: dict) -> str:
    s = payload["settings"]
    lines = report._header(payload, "CPU kernels, JAX vs PyTorch")
    lines += [f"One decoder layer of the qwen2_5_vl_cpu language model over {s['tokens']} tokens, float32, "
              f"torch threads {s['torch_threads']}, medians of {s['repeats']} alternating runs.", "",
              "| kernel | GFLOP | JAX ms | PyTorch ms | JAX GFLOP/s | PyTorch GFLOP/s | JAX / PyTorch time |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in payload["rows"]:
        lines.append(f"| {r['kernel']} | {r['flops'] / 1e9:.2f} | {r['jax_ms']:.1f} | {r['torch_ms']:.1f} | "
                     f"{r['jax_gflops']:.0f} | {r['torch_gflops']:.0f} | {r['ratio']:.2f} |")
    return "\n".join(lines) + "\n\nProduced by `python benchmarks/cpu_kernels.py`.\n"


def main(argv=None) -> dict:
    import jax
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1342)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = dict(tokens=args.tokens, repeats=args.repeats, torch_threads=torch.get_num_threads(),
                    load_start=report.loadavg(), jax=jax.__version__, torch=torch.__version__,
                    engine_commit=report.git_commit())
    rows = measure(args.tokens, args.repeats)
    settings["load_end"] = report.loadavg()
    payload = dict(settings=settings, rows=rows)
    folder = report.write("cpu_kernels", payload, markdown, args.out)
    print(markdown(payload))
    print(f"wrote {folder}/cpu_kernels.json and .md")
    return payload


if __name__ == "__main__":
    main()
