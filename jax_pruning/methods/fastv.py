"""FastV baseline: rank visual tokens by the last prompt token's attention at layer K.

Only one query row per head is computed (q_last · K^T, [H, T]); the full
attention matrix is never formed. The engine calls `scores` with the layer-K
query of the last prompt token and that layer's keys (after RoPE), then
`select` to keep the top-k visual tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from jax_pruning.methods import declaration
from jax_pruning.ops import checks
from jax_pruning.ops.selection import topk_mask

_HIGHEST = jax.lax.Precision.HIGHEST


def scores(
    q_last: Float[Array, "H hd"],
    keys: Float[Array, "T Hkv hd"],
    key_valid: Bool[Array, "T"] | None = None,
) -> Float[Array, "T"]:
    """Head-averaged attention of the last query over all keys, float32 [T].

    Per head h: softmax over the valid keys of q_h · k_{t, h // (H // Hkv)} / sqrt(hd)
    (grouped-query attention), then the mean over heads. Invalid keys (padding,
    or keys the query may not see) get 0 and take no probability mass; with no
    valid key at all the result is all zeros (eager calls raise instead).
    """
    where = "fastv.scores"
    checks.check_array(q_last, "q_last", where, rank=2, kind="float")
    checks.check_array(keys, "keys", where, rank=3, kind="float")
    heads, head_dim = q_last.shape
    length, kv_heads, key_dim = keys.shape
    if key_dim != head_dim:
        raise ValueError(f"{where}: head size of `q_last` ({head_dim}) and `keys` ({key_dim}) differ")
    if kv_heads < 1 or heads % kv_heads:
        raise ValueError(
            f"{where}: query heads ({heads}) must be a multiple of key/value heads ({kv_heads})"
        )
    checks.check_mask(key_valid, "key_valid", where, length)
    checks.check_finite(q_last, "q_last", where)
    checks.check_finite(keys, "keys", where)
    if key_valid is not None and not checks.is_traced(key_valid) and not bool(jnp.any(key_valid)):
        raise ValueError(f"{where}: `key_valid` has no True entry (nothing to attend to)")
    if key_valid is None:
        key_valid = jnp.ones((length,), jnp.bool_)
    return _scores(q_last, keys, key_valid)


@jax.jit
def _scores(q_last, keys, key_valid):
    heads, head_dim = q_last.shape
    kv_heads = keys.shape[1]
    q = jnp.asarray(q_last, jnp.float32).reshape(kv_heads, heads // kv_heads, head_dim)
    k = jnp.asarray(keys, jnp.float32)
    logits = jnp.einsum("kgd,tkd->kgt", q, k, precision=_HIGHEST) / jnp.sqrt(jnp.float32(head_dim))
    logits = jnp.where(key_valid, logits, -jnp.inf)  # [Hkv, G, T]
    row_max = jnp.max(logits, axis=-1, keepdims=True)
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
    e = jnp.where(key_valid, jnp.exp(logits - row_max), 0.0)
    total = jnp.sum(e, axis=-1, keepdims=True)
    probs = e / jnp.where(total > 0, total, 1.0)
    return jnp.mean(probs.reshape(heads, -1), axis=0)


def select(scores: Float[Array, "T"], visual: Bool[Array, "T"], k) -> Bool[Array, "T"]:
    """Keep mask over the sequence: the k visual tokens with the highest scores.

    Non-visual positions are never kept by this mask (the engine keeps text
    itself); ties go to the lower index; k may be a Python int or a traced count.
    """
    where = "fastv.select"
    checks.check_array(scores, "scores", where, rank=1, kind="float")
    checks.check_mask(visual, "visual", where, scores.shape[0])
    checks.check_count(k, "k", where, upper=scores.shape[0])
    checks.check_finite(scores, "scores", where)
    return topk_mask(scores, k, visual)


def score_flops(text, tokens):
    """FLOPs of the score row at layer K: the layer's keys for all `tokens` (recomputed beside the
    layer's own attention), the last prompt token's query, and q_last . K^T."""
    q_width, kv_width = text.num_attention_heads * text.head_dim, text.num_key_value_heads * text.head_dim
    return 2.0 * np.multiply(tokens, text.hidden_size * kv_width) + 2.0 * text.hidden_size * q_width \
        + 2.0 * np.multiply(tokens, q_width)


def llm_select(options, view, keep):
    """At layer K: the last prompt token's attention row over the visual keys -> top-k per sample."""
    q_last, keys = view.last_query_and_keys()  # [B, H, hd], [B, T, Hkv, hd]
    row = jax.vmap(scores)(q_last, keys, view.valid)
    return jax.vmap(select)(row, view.visual, keep)


METHOD = declaration.Method(
    name="fastv",
    stage=declaration.AT_LLM_LAYER,
    options={"layer": (2, declaration.LAYER)},
    layer_option="layer",
    llm_select=llm_select,
    flops=lambda spec, n, width, text, tokens: score_flops(text, tokens),
)
