"""Scaled dot-product attention: fused kernels where XLA has them, query blocks on the CPU.

On GPU/TPU `jax.nn.dot_product_attention` dispatches to fused kernels. On the
CPU, XLA materialises the whole [heads, T, S] score tensor and then streams
it through the softmax several times; for prompts of thousands of tokens that
is memory-bound (measured 305 ms for T = 1342, 8 heads, hd 32, against 30 ms
for PyTorch's SDPA). Processing 128 queries at a time keeps each block's
scores in cache: 65 ms, identical results (max-abs 1e-7). Only the rows a
block needs are ever formed, never a full attention matrix. When the caller
promises causality (`causal=True`: no query sees a key at a higher index),
block i reads only the keys up to its last row, which halves the work.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

QUERY_BLOCK = 128


def _blocked(q, k, v, mask, bias, scale: float, block: int, segment_ids=None, causal: bool = False):
    """q [B, T, H, hd]; k, v [B, S, Hkv, hd]; mask bool [B, 1, T, S] or None; bias [B, 1, T, S] or None;
    segment_ids int [B, T] (T == S): queries see only keys of their own segment, the mask built per block.
    causal: block i attends keys [0, (i + 1) * block) only (blocks unrolled, each with its static key prefix).

    A block's rows are its queries times the query heads sharing one KV head, so each block is one plain
    [rows, hd] x [hd, keys] GEMM per KV head on pre-transposed keys (half the time of a batched einsum
    that XLA re-lays out per block)."""
    batch, length, heads, head_dim = q.shape
    keys, kv_heads = k.shape[1], k.shape[2]
    groups = heads // kv_heads
    n = -(-length // block)
    pad = n * block - length
    rows = (0, 0), (0, pad), (0, 0), (0, 0)
    q = jnp.pad(q, rows).reshape(batch, n, block, kv_heads, groups, head_dim)
    q = q.transpose(1, 0, 3, 2, 4, 5).reshape(n, batch, kv_heads, block * groups, head_dim)
    k_t = k.transpose(0, 2, 3, 1)  # [B, Hkv, hd, S]
    v = v.transpose(0, 2, 1, 3)  # [B, Hkv, S, hd]
    by_block = lambda a: jnp.pad(a, ((0, 0), (0, 0), (0, pad), (0, 0))).reshape(batch, 1, n, block, -1)
    mask = None if mask is None else by_block(mask)  # [B, 1, n, block, S]
    bias = None if bias is None else by_block(bias)
    if segment_ids is not None:
        query_segments = jnp.pad(segment_ids, ((0, 0), (0, pad)), constant_values=-1).reshape(batch, n, block)

    def one(i, end: int):  # query block i over keys [0, end) -> [B, Hkv, block * G, hd]
        scores = (q[i] @ k_t[..., :end]).astype(jnp.float32) * scale
        scores = scores.reshape(batch, kv_heads, block, groups, end)
        if bias is not None:
            scores = scores + bias[:, :, i, :, None, :end]
        if mask is not None:
            scores = jnp.where(mask[:, :, i, :, None, :end], scores, jnp.finfo(jnp.float32).min)
        if segment_ids is not None:
            same = query_segments[:, i, :, None] == segment_ids[:, None, :end]  # [B, block, end]
            scores = jnp.where(same[:, None, :, None], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype).reshape(batch, kv_heads, block * groups, end)
        return probs @ v[:, :, :end]

    if causal:
        out = jnp.stack([one(i, min(keys, (i + 1) * block)) for i in range(n)])
    else:
        out = jax.lax.map(lambda i: one(i, keys), jnp.arange(n))  # [n, B, Hkv, block * G, hd]
    out = out.reshape(n, batch, kv_heads, block, groups, head_dim).transpose(1, 0, 3, 2, 4, 5)
    return out.reshape(batch, n * block, heads, head_dim)[:, :length]


def attention(q, k, v, *, mask=None, bias=None, scale: float | None = None, segment_ids=None,
              causal: bool = False):
    """Attention of q [B, T, H, hd] over k, v [B, S, Hkv, hd] -> [B, T, H, hd].

    causal: the caller's promise that `mask` hides every key at an index above the query's
    (a prefill in slot order); the CPU path then skips those keys instead of masking them.

    segment_ids [B, T] (self-attention only): block-diagonal attention within segments (e.g. the
    images of a Qwen vision batch) without ever forming the T x T mask on the CPU.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if jax.default_backend() == "cpu" and q.shape[1] > QUERY_BLOCK:
        return _blocked(q, k, v, mask, bias, scale, QUERY_BLOCK, segment_ids, causal)
    if segment_ids is not None:
        same = (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]
        mask = same if mask is None else mask & same
    return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=scale)
