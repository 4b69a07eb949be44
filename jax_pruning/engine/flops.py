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
from jax_pruning.engine.budgets import segment_tokens
from jax_pruning.methods.declaration import AT_LLM_LAYER, BEFORE_LLM


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


def prune_flops(spec, n: np.ndarray, width: int, text, tokens=None) -> np.ndarray:
    """The pruning op's own FLOPs per sample, as the method declares them (graph products, matching,
    an attention score row). n: visual tokens; tokens: all prompt tokens (default n)."""
    if spec is None:
        return np.zeros_like(np.asarray(n), dtype=float)
    return np.asarray(spec.method.flops(spec, n, width, text, n if tokens is None else tokens), float)


def _layer_counts(splits, n_layers: int) -> list[int]:
    bounds = (0, *splits, n_layers)
    return [stop - start for start, stop in zip(bounds[:-1], bounds[1:])]


def prefill_flops(config, tokens, budgets, text_tokens: np.ndarray, stage: str, splits: tuple[int, ...], spec=None,
                  inputs: dict | None = None, pruning: np.ndarray | None = None) -> dict:
    """FLOPs of one generate call's prefill, per sample and in total (dict for `out.stats`).
    inputs: the processor outputs (image sizes / grids give exact vision-tower counts); pruning: the
    method's own FLOPs [B] where the engine counted them (in-tower methods: per crop / image)."""
    t = config.text
    per_segment = segment_tokens(stage, budgets, text_tokens)
    layers = _layer_counts(splits, t.num_hidden_layers)
    llm = sum(count * llm_layer_flops(t, n) for count, n in zip(layers, per_segment)) + head_flops(t)
    tower, projector = vision_flops(config, tokens, inputs)
    visual = (budgets.real + budgets.newlines).astype(float)
    if pruning is None:
        pruning = prune_flops(spec, visual, t.hidden_size, t, tokens=text_tokens + visual)
    total = llm + tower + projector + pruning
    return {
        "prefill_flops": float(np.sum(total)),
        "prefill_flops_per_sample": np.asarray(total, float),
        "llm_flops": float(np.sum(llm)),
        "vision_flops": float(np.sum(tower)),
        "projector_flops": float(np.sum(projector)),
        "prune_flops": float(np.sum(pruning)),
        "llm_tokens_per_layer": tuple(np.asarray(n) for n in per_segment),  # per segment
    }


def static_llm_flops(text, batch: int, lengths: tuple[int, ...], splits: tuple[int, ...], stage: str = BEFORE_LLM,
                     spec=None) -> float:
    """FLOPs of the compiled LLM prefill at its padded shapes (what XLA's cost analysis counts);
    an AT_LLM_LAYER method's own op runs inside it, over the first segment's tokens."""
    layers = _layer_counts(splits, text.num_hidden_layers)
    per_sample = sum(count * llm_layer_flops(text, n) for count, n in zip(layers, lengths))
    if stage == AT_LLM_LAYER:
        per_sample += prune_flops(spec, lengths[0], text.hidden_size, text, tokens=lengths[0])
    return float(batch * per_sample + head_flops(text, batch))
