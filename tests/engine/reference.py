"""A slow, cache-free reference of pruned greedy generation, written straight from METHODS.md.

Per sample, per generated token, it re-runs the whole language model on the
explicit token lists the spec names — no KV cache, no compaction, no buckets:

  pre-LLM pruning: every layer sees text + kept visual tokens;
  FastV at K:      layers < K see the whole prompt, layers >= K text + kept;
  Hi-Lo at L:      layers < L see text + R + C under the Hi-Lo mask (text and
                   generated queries never see C; R sees every C of its image,
                   + bias), layers >= L see text + R.

Kept tokens keep their original position ids; generated token s sits at
next_position + s. Which visual tokens are kept / candidates is taken from the
engine's labels (the selection itself is each method's own test); FastV's
choice is recomputed here from its definition (`fastv_choice`).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.decoder import last_query_and_keys, run_layers
from models.rope import rope_tables
from models.visual_tokens import KIND_NEWLINE

KEPT, DROPPED, CANDIDATE = 1, 0, 2  # the engine's label values (checked in the tests)


def token_roles(prepared, labels, b: int):
    """Sample b's real tokens in order -> (rows [n], role [n]: 'text' / KEPT / DROPPED / CANDIDATE, image [n])."""
    mask = np.asarray(prepared.attention_mask[b]).astype(bool)
    vt = prepared.visual
    valid = np.asarray(vt.valid[b])
    index = np.asarray(vt.index[b])[valid]
    role = np.full(mask.shape, "text", dtype=object)
    image = np.full(mask.shape, -1)
    role[index] = np.asarray(labels[b])[valid]
    image[index] = np.asarray(vt.image[b])[valid]
    rows = np.flatnonzero(mask)
    return rows, role[rows], image[rows]


def _positions(prepared, b: int, rows, generated: int):
    pos = np.asarray(prepared.position_ids)  # [B, T] or [3, B, T]
    nxt = int(np.asarray(prepared.next_position)[b])
    new = np.arange(nxt, nxt + generated)
    if pos.ndim == 3:
        return np.concatenate([pos[:, b, rows], np.broadcast_to(new, (3, generated))], axis=1)[:, None]
    return np.concatenate([pos[b, rows], new])[None]


def _hilo_mask(role, image, merge: bool, bias: float):
    """[n, n] bool mask + float bias from the spec (queries on rows, keys on columns)."""
    n = len(role)
    mask = np.tril(np.ones((n, n), bool))
    cand = np.array([r == CANDIDATE for r in role])
    retained = np.array([r == KEPT for r in role])
    text = ~cand & ~retained & np.array([r != DROPPED for r in role])
    mask[np.ix_(text, cand)] = False
    bias_matrix = np.zeros((n, n), np.float32)
    if merge:
        opened = retained[:, None] & cand[None, :] & (image[:, None] == image[None, :])
        mask |= opened
        bias_matrix[opened] = bias
    return mask, bias_matrix


def _pad_rows(a, size: int, axis: int):
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, size - a.shape[axis])
    return jnp.pad(a, widths)


@functools.partial(nnx.jit, static_argnames=("start", "stop"))
def _run_jit(lm, x, pos, mask, bias, additions, *, start, stop):
    rope = rope_tables(lm.text_config, pos)
    out, _ = run_layers(lm, x, rope, mask[None, None], start=start, stop=stop, additions=additions, bias=bias)
    return out


def _run(lm, x, pos, mask, start, stop, additions, bias=None, size: int = 0):
    """Layers [start, stop) on n real rows, zero-padded to `size` rows so that one compilation
    serves every step (padding rows attend only to themselves and nobody attends them)."""
    n = x.shape[1]
    size = max(size, n)
    full = np.eye(size, dtype=bool)
    full[:n, :n] = mask
    bias = None if bias is None or not bias.any() else jnp.asarray(_pad_rows(_pad_rows(bias, size, 0), size, 1))[None, None]
    add = None if additions is None else [_pad_rows(a, size, 1) for a in additions]
    out = _run_jit(lm, _pad_rows(x, size, 1), _pad_rows(jnp.asarray(pos), size, -1), jnp.asarray(full), bias, add,
                   start=start, stop=stop)
    return out[:, :n]


def generate_one(lm, prepared, labels, b: int, max_new: int, *, mode: str = "pre", split: int = 0,
                 merge: bool = True, bias: float = 0.0) -> np.ndarray:
    """Greedy tokens [max_new] for sample b (mode: 'pre', 'fastv' or 'hilo'; no EOS)."""
    rows, role, image = token_roles(prepared, labels, b)
    is_text = np.array([r == "text" for r in role])
    kept = is_text | np.array([r == KEPT for r in role])
    enter = {"pre": kept, "fastv": np.ones(len(rows), bool),
             "hilo": kept | np.array([r == CANDIDATE for r in role])}[mode]
    rows0, role0, image0 = rows[enter], role[enter], image[enter]
    later = kept[enter]  # which of the first segment's rows go on past the split
    embeds = jnp.asarray(prepared.inputs_embeds)[b, rows0]
    adds = prepared.layer_additions
    size = int(prepared.attention_mask.shape[1]) + max_new  # one padded shape for every step
    tokens = []
    for s in range(max_new):
        new = lm.embed(jnp.asarray(tokens, jnp.int32)[None])[0] if tokens else embeds[:0]
        x = jnp.concatenate([embeds, new])[None]
        n = x.shape[1]
        pos = _positions(prepared, b, rows0, len(tokens))
        add = None if adds is None else [jnp.concatenate([a[b, rows0], jnp.zeros_like(new)])[None] for a in adds]
        role_s = np.concatenate([role0, np.full(len(tokens), "text", dtype=object)])
        image_s = np.concatenate([image0, np.full(len(tokens), -1)])
        if mode == "hilo":
            mask, bias_matrix = _hilo_mask(role_s, image_s, merge, bias)
        else:
            mask, bias_matrix = np.tril(np.ones((n, n), bool)), None
        x = _run(lm, x, pos, mask, 0, split, add, bias_matrix, size)
        keep = np.concatenate([later, np.ones(len(tokens), bool)])
        x = x[:, keep]
        pos = pos[..., keep]
        add = None if add is None else [a[:, keep] for a in add]
        m = int(keep.sum())
        x = _run(lm, x, pos, np.tril(np.ones((m, m), bool)), split, None, add, size=size)
        tokens.append(int(jnp.argmax(lm.head(x[:, -1:])[0, 0])))
    return np.asarray(tokens)


def fastv_choice(lm, prepared, b: int, layer: int, k: int, max_new: int = 0) -> np.ndarray:
    """FastV from its definition: the last prompt token's head-averaged softmax attention row at
    layer K over all prompt keys, top-k among the visual tokens (ties to the lower index);
    LLaVA-NeXT's newline tokens are always kept and not counted in k (the project's rule for
    every method). Returns the kept tokens' sequence positions, sorted. (max_new only sizes the
    padding, to share generate_one's compilation.)"""
    rows = np.flatnonzero(np.asarray(prepared.attention_mask[b]).astype(bool))
    n = len(rows)
    x = jnp.asarray(prepared.inputs_embeds)[b, rows][None]
    pos = _positions(prepared, b, rows, 0)
    adds = prepared.layer_additions
    add = None if adds is None else [a[b, rows][None] for a in adds]
    x = _run(lm, x, pos, np.tril(np.ones((n, n), bool)), 0, layer, add, size=int(prepared.attention_mask.shape[1]) + max_new)
    rope = rope_tables(lm.text_config, jnp.asarray(pos))
    q, keys = last_query_and_keys(lm.layers[layer], x, rope, jnp.asarray([n - 1]))
    q, keys = np.asarray(q[0], np.float64), np.asarray(keys[0], np.float64)  # [H, hd], [n, Hkv, hd]
    heads, kv_heads = q.shape[0], keys.shape[1]
    logits = np.stack([keys[:, h // (heads // kv_heads)] @ q[h] for h in range(heads)]) / np.sqrt(q.shape[1])
    attn = np.exp(logits - logits.max(axis=1, keepdims=True))
    attn = (attn / attn.sum(axis=1, keepdims=True)).mean(axis=0)  # [n]
    vt = prepared.visual
    valid = np.asarray(vt.valid[b])
    visual = np.asarray(vt.index[b])[valid]
    newline = np.asarray(vt.kind[b])[valid] == KIND_NEWLINE
    where = np.searchsorted(rows, visual)
    order = sorted(np.flatnonzero(~newline), key=lambda i: (-attn[where[i]], i))
    return np.sort(np.concatenate([visual[order[:k]], visual[newline]]))
