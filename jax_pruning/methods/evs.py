"""EVS (Efficient Video Sampling): drop video tokens that repeat the same cell of the previous temporal patch.

Paper: Bagrov et al., "Efficient Video Sampling: Pruning Temporally Redundant
Tokens for Faster VLM Inference" (arXiv 2510.14624, NVIDIA, 2025). Why: in a
video most cells change little from one frame to the next; a token nearly
equal to the token at the same place one temporal patch earlier adds almost
nothing, and dropping it is free of any text or attention.

Upstream read: vLLM's `vllm/multimodal/evs.py` at commit
094f117823287790739d3022162a3f30f13d758b (`compute_retained_tokens_count`,
`compute_retention_mask`), which vLLM applies to Qwen2.5-VL / Qwen3-VL video
embeddings after the merger:
* per video of T x h x w merged tokens: dissimilarity = 1 - cosine(token at
  (t, i, j), token at (t - 1, i, j)) for t >= 1; the first temporal patch gets
  255 (always kept);
* keep the top max(h*w, int(T*h*w*(1 - q))) tokens by dissimilarity (stable
  descending sort: ties to the lower index), q the pruning rate; the kept tokens
  keep their own M-RoPE positions.

This implementation
-------------------
* keep_ratio plays 1 - q: a video of n tokens and T temporal patches keeps
  max(n // T, int(n * keep_ratio)) tokens (budget per video, `Budget.items`);
  images in the same sample are kept whole (they have no previous patch);
  LLaVA-NeXT, which takes no video, is refused.
* `metric="cosine"` (upstream) or `"l2"` (the Euclidean distance to the
  previous token: the paper's alternative).
* The first temporal patch gets +inf instead of 255 (the same order for cosine,
  whose dissimilarity is at most 2; also right for l2). Zero vectors: cosine
  with norms clamped at 1e-8 as torch's cosine_similarity does.
* `select` runs per sample over all its videos at once (one sort keyed by
  (video, -dissimilarity, slot)), each video keeping its own budget; padding
  never kept.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from jax_pruning.methods import declaration

METRICS = ("cosine", "l2")
_EPS = 1e-8


def dissimilarity(x: Float[Array, "N D"], previous: Int[Array, "N"], metric: str = "cosine") -> Float[Array, "N"]:
    """How much each token differs from the same cell one temporal patch earlier (+inf where none)."""
    x = jnp.asarray(x, jnp.float32)
    before = x[jnp.maximum(previous, 0)]
    if metric == "cosine":
        norm = jnp.maximum(jnp.linalg.norm(x, axis=-1), _EPS) * jnp.maximum(jnp.linalg.norm(before, axis=-1), _EPS)
        score = 1.0 - jnp.sum(x * before, axis=-1) / norm
    else:
        score = jnp.linalg.norm(x - before, axis=-1)
    return jnp.where(previous >= 0, score, jnp.inf)


def select(x: Float[Array, "N D"], previous: Int[Array, "N"], item: Int[Array, "N"], item_keep: Int[Array, "I"],
           valid: Bool[Array, "N"], metric: str = "cosine") -> Bool[Array, "N"]:
    """Keep mask: per image / video `item`, its item_keep[item] most changed tokens (first patches first).

    previous [N]: the slot of the same cell one temporal patch earlier (-1: none); jittable, vmappable,
    budgets may be traced.
    """
    n = x.shape[0]
    score = jnp.where(valid, dissimilarity(x, previous, metric), -jnp.inf)
    group = jnp.where(valid, item, jnp.iinfo(jnp.int32).max)
    slots = jnp.arange(n, dtype=jnp.int32)
    order = jnp.lexsort((slots, -score, group))  # by item, then most changed, then lower slot
    ranked = group[order]
    start = jnp.searchsorted(ranked, ranked, side="left")
    rank = jnp.zeros((n,), jnp.int32).at[order].set(slots - start.astype(jnp.int32))
    budget = jnp.asarray(item_keep)[jnp.clip(item, 0, jnp.asarray(item_keep).shape[0] - 1)]
    return valid & (rank < budget)


def _budget(spec, counts: declaration.TokenCounts) -> declaration.Budget:
    width = max((len(items) for items in counts.items), default=0)
    per_item = np.zeros((len(counts.items), max(width, 1)), np.int64)
    for b, items in enumerate(counts.items):
        for i, (tokens, frames) in enumerate(items):
            per_item[b, i] = max(tokens // frames, int(tokens * float(spec.keep_ratio))) if frames > 1 else tokens
    return declaration.Budget(per_item.sum(axis=1), items=per_item)


def _select_sample(options, s: declaration.SelectionInputs):
    return select(s.x, s.previous, s.item, s.item_keep, s.valid, options["metric"]), jnp.zeros_like(s.valid)


def _flops(spec, n, width: int, text, tokens):
    """One comparison per token with its predecessor: a dot product and two norms (cosine) of width d."""
    return 6.0 * np.asarray(n, float) * width


METHOD = declaration.Method(
    name="evs",
    stage=declaration.BEFORE_LLM,
    options={"metric": ("cosine", declaration.choice(*METRICS))},
    select=_select_sample,
    budget=_budget,
    flops=_flops,
    video_only=True,
)
