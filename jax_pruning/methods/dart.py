"""DART: keep the visual tokens that duplicate a few pivot tokens the least.

Paper: Wen et al., "Stop Looking for Important Tokens in Multimodal Language
Models: Duplication Matters More" (EMNLP 2025). Why: instead of ranking tokens
by attention importance, DART picks a handful of *pivot* tokens and, for each
pivot, keeps the visual tokens least similar to it, so the kept set covers
what the pivots do not already say (low duplication). No attention matrix is
needed, which suits fused attention kernels.

Upstream read (public code of the paper, github ZichenWen1/DART, read from the
history of its fork xqy1111111/DART, where the authors' commits are intact):
`llava/model/language_model/modeling_llama_self.py` (class `DART`, `forward`
and `get_retained_image_token`; last changed in 9fee9fa199d5, identical at the
last upstream commit 5a19452fc173, 2025-08-31), its evaluation driver
`llava/eval/model_vqa_loader.py` and `scripts/v1_5/eval/*.sh` (defaults), and
`Qwen2-VL/Qwen2VL_DART/modeling_qwen2_vl_self.py` (same algorithm).

Upstream algorithm (LLaVA-1.5, batch 1, prefill only)
-----------------------------------------------------
* Pruning happens before decoder layer K (0-based layer index; default
  K = 2, `--pruned_layer 2`). Everything comes from layer K-1's outputs:
  - keys: the key states returned by layer K-1's attention, i.e. k_proj of the
    input-normed hidden states, AFTER RoPE (original positions), shape
    [heads, T, head_dim], permuted and flattened per token to [T, H*hd]
    (heads concatenated). The SDPA/eager paths return them after `repeat_kv`
    (GQA keys repeated per query head), the flash path before; the L1 norm of
    a repeated key is the group size times that of the unrepeated one, so the
    pivot ranking is the same either way.
  - hidden: layer K-1's output (= layer K's input hidden states) passed
    through the model's FINAL RMSNorm (`self.norm`, weight included). Cosine
    similarity removes the per-token RMS factor but not the norm weight, so
    h * final_norm.weight is equivalent.
* Pivots: the L1 norm (p=1, not L2) of each token's flattened key.
  `pivot_image_token` (default 4) image pivots = the image tokens with the
  largest key L1 norm; `pivot_text_token` (default 4) text pivots = the
  largest among the tokens AFTER the image block (question + assistant
  prefix; the system prompt before the image is never a pivot).
* Per-pivot quota: TOKEN_TOPK = ceil(M // (P_img + P_txt)) = floor(M / P) with
  M = `max_num_trunction` (default 128; the budget `image_len * (1 -
  reduction_ratio)` is used only when it is None). LLaVA-NeXT and Qwen2-VL use
  int(budget / P), also a floor.
* Candidates = the image tokens minus the image pivots. For each pivot, in the
  iteration order of a Python `set` of the pivot indices, the TOKEN_TOPK
  candidates with the lowest cosine similarity to the pivot (topk of the
  negated cosine over the hidden states above) are kept and removed from the
  candidates, so the per-pivot picks are disjoint and no fill/trim step is
  needed. Text pivots are then removed from the kept set; IMAGE PIVOTS STAY.
  Kept image tokens = P_img + P * TOKEN_TOPK (4 + 8 * 16 = 132 for M = 128).
* Text is kept whole; only the prefill (sequence length > 1) is pruned; the
  kept tokens keep their original position ids from layer K on, and layers
  below K keep the full sequence.

This implementation (exact budget, static shapes, deterministic order)
---------------------------------------------------------------------
`select` returns exactly min(k, n_visual) kept visual positions:
* image pivots: the min(image_pivots, n_visual) valid visual tokens with the
  largest key L1 norm (ties: lower index); text pivots: the
  min(text_pivots, n_text) largest among the valid non-visual tokens after the
  last valid visual token. With no such text (or `text_pivots=0`) only image
  pivots are used (upstream would crash in `topk` on an empty text block).
* image pivots are kept first; if k < #image pivots only the k with the
  largest L1 norm are kept and nothing else;
* the rest, r = k - #image pivots, is split over the P_eff pivots actually
  found: each gets r // P_eff and the first r % P_eff (in processing order)
  one more. So select(k = P_img + P * q) equals upstream with TOKEN_TOPK = q
  (any M in [P*q, P*(q+1))), e.g. k = 132 reproduces the default run;
* pivots are processed in ascending position order (image pivots, then text
  pivots). Upstream uses CPython set order (for 8 pivots: a 32-slot hash
  table, i.e. ascending by position mod 32, collisions probed linearly). The
  order matters when two pivots' least-similar lists overlap (the earlier
  pivot claims the token), which is common: pivots of one cluster share them;
* equal similarities go to the lower index (upstream `torch.topk` ties are
  unspecified); zero hidden rows have cosine 0 with everything.
Similarities are [P, T] (pivots x tokens); no T x T matrix is formed.
Invalid positions (`valid` False) are never pivots and never kept; their
values are zeroed before use, so garbage (even NaN) there is harmless.
Eager calls raise ValueError on non-finite values at valid positions; traced
calls skip the value checks.
"""

from __future__ import annotations

import numbers
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from jax_pruning.methods import declaration
from jax_pruning.ops import checks
from jax_pruning.ops.graph import cosine_similarity
from jax_pruning.ops.selection import rank_order, topk_mask

IMAGE_PIVOTS = 4  # upstream --pivot_image_token default
TEXT_PIVOTS = 4  # upstream --pivot_text_token default
PRUNE_LAYER = 2  # upstream --pruned_layer default (K, 0-based)


def _check_pivot_count(value, name: str, where: str, low: int):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{where}: `{name}` must be a Python int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{where}: `{name}` must be >= {low}, got {value}")


def select(
    hidden: Float[Array, "T D"],
    keys: Float[Array, "T HK"],
    visual: Bool[Array, "T"],
    k,
    *,
    valid: Bool[Array, "T"] | None = None,
    image_pivots: int = IMAGE_PIVOTS,
    text_pivots: int = TEXT_PIVOTS,
) -> Bool[Array, "T"]:
    """Keep mask over the sequence: exactly min(k, n_visual) visual tokens (see module docstring).

    hidden: layer K's input hidden states after the model's final RMSNorm [T, D];
    keys: layer K-1's key states after RoPE, heads concatenated [T, H*hd];
    visual: visual-token positions; k: Python int or integer scalar (traced is
    fine); valid: real (non-padding) positions, default all. Non-visual
    positions are never kept by this mask (the engine keeps text itself).
    """
    where = "dart.select"
    checks.check_array(hidden, "hidden", where, rank=2, kind="float")
    checks.check_array(keys, "keys", where, rank=2, kind="float")
    length = hidden.shape[0]
    if keys.shape[0] != length:
        raise ValueError(f"{where}: `keys` must have {length} rows like `hidden`, got shape {tuple(keys.shape)}")
    checks.check_mask(visual, "visual", where, length)
    checks.check_mask(valid, "valid", where, length)
    checks.check_count(k, "k", where, upper=length)
    _check_pivot_count(image_pivots, "image_pivots", where, 1)
    _check_pivot_count(text_pivots, "text_pivots", where, 0)
    valid = np.ones((length,), np.bool_) if valid is None else valid
    if not any(checks.is_traced(x) for x in (hidden, keys, valid)):  # garbage at padding is allowed
        real = np.asarray(valid)[:, None]
        checks.check_finite(np.where(real, np.asarray(hidden), 0), "hidden", where)
        checks.check_finite(np.where(real, np.asarray(keys), 0), "keys", where)
    if isinstance(k, numbers.Integral):
        k = min(int(k), length)
    return _select(hidden, keys, visual, jnp.asarray(k, jnp.int32), valid,
                   image_pivots=image_pivots, text_pivots=text_pivots)


@partial(jax.jit, static_argnames=("image_pivots", "text_pivots"))
def _select(hidden, keys, visual, k, valid, *, image_pivots, text_pivots):
    length = hidden.shape[0]
    hidden = jnp.where(valid[:, None], jnp.asarray(hidden, jnp.float32), 0.0)  # padding may hold NaN
    keys = jnp.where(valid[:, None], jnp.asarray(keys, jnp.float32), 0.0)
    index = jnp.arange(length, dtype=jnp.int32)
    visual = visual & valid
    n_visual = jnp.sum(visual.astype(jnp.int32))
    last_visual = jnp.max(jnp.where(visual, index, -1))
    text = valid & ~visual & (index > last_visual)
    n_text = jnp.sum(text.astype(jnp.int32))
    l1 = jnp.sum(jnp.abs(keys), axis=-1)

    n_img_slots, n_txt_slots = min(image_pivots, length), min(text_pivots, length)
    img_pos = rank_order(l1, visual)[:n_img_slots]  # largest key L1 first
    img_ok = jnp.arange(n_img_slots) < n_visual
    txt_pos = rank_order(l1, text)[:n_txt_slots]
    txt_ok = jnp.arange(n_txt_slots) < n_text
    n_img = jnp.minimum(n_img_slots, n_visual)
    n_pivots = n_img + jnp.minimum(n_txt_slots, n_text)

    budget = jnp.minimum(k, n_visual)
    is_pivot = jnp.zeros((length,), jnp.bool_).at[img_pos].set(img_ok)
    keep = jnp.zeros((length,), jnp.bool_).at[img_pos].set(img_ok & (jnp.arange(n_img_slots) < budget))

    # Pivots in ascending position order, missing ones (position = length) last.
    pivots = jnp.sort(jnp.concatenate([jnp.where(img_ok, img_pos, length), jnp.where(txt_ok, txt_pos, length)]))
    slot = jnp.arange(pivots.shape[0], dtype=jnp.int32)
    rest = jnp.maximum(budget - n_img, 0)
    per = jnp.maximum(n_pivots, 1)
    quota = jnp.where(pivots < length, rest // per + (slot < rest % per).astype(jnp.int32), 0)
    sims = cosine_similarity(hidden[jnp.minimum(pivots, length - 1)], hidden)  # [P, T]

    def claim(state, pivot):
        keep, free = state
        sim, q = pivot
        picked = topk_mask(-sim, q, free)  # least similar first, ties to the lower index
        return (keep | picked, free & ~picked), None

    (keep, _), _ = jax.lax.scan(claim, (keep, visual & ~is_pivot), (sims, quota))
    return keep & visual


def _llm_select(options, view, keep):
    """At layer K: layer K-1's cached keys and layer K's input through the final norm (see `select`).
    LLaVA-NeXT newlines are neither pivots nor text: they are kept by the engine."""
    hidden = view.final_norm()  # [B, T, D]
    keys = view.cached_keys(options["layer"] - 1)  # [B, T, Hkv, hd]
    keys = keys.reshape(keys.shape[:2] + (-1,))
    one = lambda h, k, vis, n, valid: _select(h, k, vis, n, valid, image_pivots=options["image_pivots"],  # noqa: E731
                                              text_pivots=options["text_pivots"])
    return jax.vmap(one)(hidden, keys, view.visual, keep, view.valid & ~view.fixed)


def _flops(spec, n, width, text, tokens):
    """Pivot similarities: (image + text pivots) x prompt tokens cosines of width d."""
    pivots = spec.image_pivots + spec.text_pivots
    return 2.0 * pivots * np.asarray(tokens, float) * width


METHOD = declaration.Method(
    name="dart",
    stage=declaration.AT_LLM_LAYER,
    options={
        "layer": (PRUNE_LAYER, declaration.integer("an integer >= 1 (DART reads layer K-1's keys)", 1)),
        "image_pivots": (IMAGE_PIVOTS, declaration.integer("an integer >= 1", 1)),
        "text_pivots": (TEXT_PIVOTS, declaration.integer("an integer >= 0", 0)),
    },
    layer_option="layer",
    llm_select=_llm_select,
    flops=_flops,
)
