"""The attention each patch receives, averaged over the query patches: the Qwen ViT's stand-in for a [CLS] row.

In-tower pruning (VisionZip, VisPruner) ranks tokens by the attention the
[CLS] query gives them; the Qwen ViTs have no CLS token, so the tower hands
over the mean over query patches of the softmax row each query gives every
key (the stand-in VisPruner's upstream SigLIP path uses:
`attentions[-1].mean(dim=-2)`). Query rows are processed `block` at a time,
so at most H x block x P probabilities exist at once, never P x P.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

BLOCK = 256  # query rows per block

_HIGHEST = jax.lax.Precision.HIGHEST


@functools.partial(jax.jit, static_argnames="block")
def received_attention(
    q: Float[Array, "P H hd"], k: Float[Array, "P H hd"], valid: Bool[Array, "P"], *, block: int = BLOCK
) -> Float[Array, "H P"]:
    """Per head, the mean over valid queries of softmax(q_i . k_j / sqrt(hd)) over valid keys j [H, P].

    Pass q and k as the block's attention uses them (after the rotary embedding). Invalid keys get 0
    (padding may hold junk, even NaN); no valid token at all gives zeros.
    """
    n, heads, head_dim = q.shape
    block = max(1, min(block, n))
    q = jnp.where(valid[:, None, None], jnp.asarray(q, jnp.float32), 0.0)
    k = jnp.where(valid[:, None, None], jnp.asarray(k, jnp.float32), 0.0)
    n_blocks = -(-n // block)
    pad = n_blocks * block - n
    q_blocks = jnp.concatenate([q, jnp.zeros((pad, heads, head_dim), jnp.float32)]).reshape(
        n_blocks, block, heads, head_dim)
    row_blocks = jnp.concatenate([valid, jnp.zeros((pad,), jnp.bool_)]).reshape(n_blocks, block)
    scale = 1.0 / jnp.sqrt(jnp.float32(head_dim))

    def step(total, blk):
        q_b, row_b = blk
        logits = jnp.einsum("bhd,nhd->hbn", q_b, k, precision=_HIGHEST) * scale  # [H, block, P]
        logits = jnp.where(valid[None, None, :], logits, -jnp.inf)
        row_max = jnp.max(logits, axis=-1, keepdims=True)
        row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
        e = jnp.where(valid[None, None, :], jnp.exp(logits - row_max), 0.0)
        denom = jnp.sum(e, axis=-1, keepdims=True)
        probs = e / jnp.where(denom > 0, denom, 1.0)
        return total + jnp.sum(jnp.where(row_b[None, :, None], probs, 0.0), axis=1), None

    total, _ = jax.lax.scan(step, jnp.zeros((heads, n), jnp.float32), (q_blocks, row_blocks))
    return total / jnp.maximum(jnp.sum(valid.astype(jnp.float32)), 1.0)
