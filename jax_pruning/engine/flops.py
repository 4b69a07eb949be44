"""Analytic FLOPs of a prefill: vision tower, projector/merger (flops_vision.py), every LLM layer
with the tokens it really processes, the head (last position only) and the pruning op.

Matmuls count 2·m·n·k; attention counts the dense n x n score and value
products a fused kernel computes (no causal halving). Elementwise ops, norms
and softmax are ignored (< 1% at real sizes). `static_llm_flops` counts the
padded shapes the compiled prefill runs, for the cross-check against XLA's own
cost analysis in the tests.
"""

from __future__ import annotations

import numpy as np

from jax_pruning.engine.flops_vision import vision_flops  # noqa: F401  (re-exported: flops.vision_flops)


def llm_layer_flops(text, n: np.ndarray | int, keys: np.ndarray | int | None = None):
    """One decoder layer over n query tokens attending `keys` tokens (default n)."""
    keys = n if keys is None else keys
    d, hd = text.hidden_size, text.head_dim
    q_width, kv_width = text.num_attention_heads * hd, text.num_key_value_heads * hd
    projections = 2 * n * d * (q_width + 2 * kv_width) + 2 * n * q_width * d
    attention = 2 * 2 * np.multiply(n, keys) * q_width
    mlp = 3 * 2 * n * d * text.intermediate_size
    return projections + attention + mlp


def head_flops(text, batch: int = 1):
    return 2 * batch * text.hidden_size * text.vocab_size


def fastv_score_flops(text, tokens):
    """FastV at layer K: the layer's keys for all `tokens` (recomputed beside the layer's own
    attention), the last prompt token's query, and its one score row q_last . K^T."""
    q_width, kv_width = text.num_attention_heads * text.head_dim, text.num_key_value_heads * text.head_dim
    return 2.0 * np.multiply(tokens, text.hidden_size * kv_width) + 2.0 * text.hidden_size * q_width \
        + 2.0 * np.multiply(tokens, q_width)


def prune_flops(spec, n: np.ndarray, width: int, text, tokens=None) -> np.ndarray:
    """The pruning op's own FLOPs per sample (graph products, matching, FastV's score row).
    n: visual tokens; tokens: all prompt tokens (FastV scores over every key)."""
    if spec is None or spec.name == "random":
        return np.zeros_like(n, dtype=float)
    graph = 2.0 * n * n * width
    if spec.name == "mr_pruner":
        return 3 * graph  # low graph, high graph, cross graph (upper bound)
    if spec.name == "gprune":
        return 2 * graph + 2.0 * spec.steps * n * n
    if spec.name == "hilo":
        return 2 * graph  # windowed graph + max-similarity to R (upper bounds)
    if spec.name == "tome":
        return graph  # halving steps: n^2/4 + n^2/16 + ... < n^2 / 3 matchings of width d
    return fastv_score_flops(text, n if tokens is None else tokens)


def prefill_flops(config, tokens, budgets, text_tokens: np.ndarray, mode: str, split: int, spec=None,
                  inputs: dict | None = None) -> dict:
    """FLOPs of one generate call's prefill, per sample and in total (dict for `out.stats`).
    inputs: the processor outputs (image sizes / grids give exact vision-tower counts)."""
    t = config.text
    seen = text_tokens + budgets.seen
    first = seen + (budgets.candidates if mode == "hilo" else 0)
    if mode == "fastv":
        first = text_tokens + budgets.real + budgets.newlines
    n_layers = t.num_hidden_layers
    llm = split * llm_layer_flops(t, first) + (n_layers - split) * llm_layer_flops(t, seen) + head_flops(t)
    tower, projector = vision_flops(config, tokens, inputs)
    visual = (budgets.real + budgets.newlines).astype(float)
    pruning = prune_flops(spec, visual, t.hidden_size, t, tokens=text_tokens + visual)
    total = llm + tower + projector + pruning
    return {
        "prefill_flops": float(np.sum(total)),
        "prefill_flops_per_sample": np.asarray(total, float),
        "llm_flops": float(np.sum(llm)),
        "vision_flops": float(np.sum(tower)),
        "projector_flops": float(np.sum(projector)),
        "prune_flops": float(np.sum(pruning)),
        "llm_tokens_per_layer": (np.asarray(first), np.asarray(seen)),
    }


def static_llm_flops(text, batch: int, length0: int, length1: int, split: int, mode: str = "pre") -> float:
    """FLOPs of the compiled LLM prefill at its padded shapes (what XLA's cost analysis counts)."""
    n_layers = text.num_hidden_layers
    per_sample = split * llm_layer_flops(text, length0) + (n_layers - split) * llm_layer_flops(text, length1)
    if mode == "fastv":
        per_sample += fastv_score_flops(text, length0)
    return float(batch * per_sample + head_flops(text, batch))
