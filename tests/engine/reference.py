"""A slow, cache-free reference of pruned greedy generation, written straight from the methods' specs (their module docstrings).

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

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.decoder import last_query_and_keys, run_layers
from models.rope import rope_tables
from models.visual_tokens import KIND_NEWLINE

KEPT, DROPPED, CANDIDATE, MERGED, ABSORBED = 1, 0, 2, 3, 4  # the engine's label values (checked in the tests)


def token_roles(prepared, labels, b: int):
    """Sample b's real tokens in order -> (rows [n], role [n]: 'text' / KEPT / DROPPED / CANDIDATE, image [n])."""
    mask = np.asarray(prepared.attention_mask[b]).astype(bool)
    vt = prepared.visual
    valid = np.asarray(vt.valid[b])
    index = np.asarray(vt.index[b])[valid]
    role = np.full(mask.shape, "text", dtype=object)
    image = np.full(mask.shape, -1)
    label = np.asarray(labels[b])[valid]
    role[index] = np.where(label == MERGED, KEPT, np.where(label == ABSORBED, DROPPED, label))  # a merged token is kept
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
    text = np.array([r == "text" for r in role])
    mask[np.ix_(text, cand)] = False
    bias_matrix = np.zeros((n, n), np.float32)
    if merge:
        opened = retained[:, None] & cand[None, :] & (image[:, None] == image[None, :])
        mask |= opened
        bias_matrix[opened] = bias
    return mask, bias_matrix


@nnx.jit
def _forward(lm, x, pos, masks, biases, additions, last):
    """Every layer on the same (unpruned-length) sequence, layer i under masks[i] / biases[i].
    -> (each layer's input and the final hidden state [n_layers + 1, 1, P, D], logits of row `last`)."""
    rope = rope_tables(lm.text_config, pos)
    states = [x]
    for i in range(lm.text_config.num_hidden_layers):
        x, _ = run_layers(lm, x, rope, masks[i][None, None], start=i, stop=i + 1, additions=additions,
                          bias=biases[i][None, None])
        states.append(x)
    return jnp.stack(states), lm.head(jax.lax.dynamic_slice_in_dim(x, last, 1, axis=1))[0, 0]


def _pad(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, size - a.shape[axis])
    return np.pad(a, widths)


def _run(lm, x, pos, layer_masks, layer_biases, additions, size: int):
    """x [1, n, D] (NumPy) under per-layer [n, n] masks/biases, zero-padded to `size` rows so that
    one compilation serves every step and case (padding rows see only themselves; nobody sees
    them). Host work stays in NumPy (eager JAX ops would compile per shape).
    -> (layer inputs + final state [n_layers + 1, 1, n, D], logits of the last row [V])."""
    n = x.shape[1]
    masks = np.broadcast_to(np.eye(size, dtype=bool), (len(layer_masks), size, size)).copy()
    biases = np.zeros((len(layer_masks), size, size), np.float32)
    for i, (m, b) in enumerate(zip(layer_masks, layer_biases)):
        masks[i, :n, :n] = m
        biases[i, :n, :n] = b
    add = None if additions is None else [_pad(a, size, 1) for a in additions]
    states, logits = _forward(lm, _pad(x, size, 1), _pad(pos, size, -1), masks, biases, add, n - 1)
    return np.asarray(states)[:, :, :n], np.asarray(logits)


def generate_one(lm, prepared, labels, b: int, max_new: int, *, mode: str = "pre", split: int = 0,
                 merge: bool = True, bias: float = 0.0, inputs_embeds=None) -> np.ndarray:
    """Greedy tokens [max_new] for sample b (mode: 'pre', 'fastv' or 'hilo'; no EOS).
    inputs_embeds [T, D] replaces the sample's embeddings (ToMe's merged features).

    Tokens removed at the split stay in the sequence but no query attends them in
    layers >= split (so they cannot influence anything kept: the same as removing them).
    """
    rows, role, image = token_roles(prepared, labels, b)
    is_text = np.array([r == "text" for r in role])
    kept = is_text | np.array([r == KEPT for r in role])
    enter = {"pre": kept, "fastv": np.ones(len(rows), bool),
             "hilo": kept | np.array([r == CANDIDATE for r in role])}[mode]
    rows0, role0, image0 = rows[enter], role[enter], image[enter]
    later = kept[enter]  # which entering rows go on past the split
    embeds = np.asarray(prepared.inputs_embeds[b] if inputs_embeds is None else inputs_embeds)[rows0]
    table = np.asarray(lm.embed_tokens.embedding[...])
    adds = None if prepared.layer_additions is None else np.asarray(prepared.layer_additions)[:, b, rows0]
    n_layers = lm.text_config.num_hidden_layers
    size = int(prepared.attention_mask.shape[1]) + max_new  # one padded shape for every step
    tokens = []
    for _ in range(max_new):
        x = np.concatenate([embeds, table[np.asarray(tokens, int)]])[None]
        n = x.shape[1]
        pos = _positions(prepared, b, rows0, len(tokens))
        add = None if adds is None else [_pad(a, n, 0)[None] for a in adds]  # generated tokens: zero
        role_s = np.concatenate([role0, np.full(len(tokens), "text", dtype=object)])
        image_s = np.concatenate([image0, np.full(len(tokens), -1)])
        causal = np.tril(np.ones((n, n), bool))
        low, low_bias = _hilo_mask(role_s, image_s, merge, bias) if mode == "hilo" else (causal, np.zeros((n, n)))
        survivors = np.concatenate([later, np.ones(len(tokens), bool)])
        high = (causal & survivors[None, :]) | np.eye(n, dtype=bool)
        masks = [low if i < split else high for i in range(n_layers)]
        biases = [low_bias if i < split else np.zeros((n, n)) for i in range(n_layers)]
        _, logits = _run(lm, x, pos, masks, biases, add, size)
        tokens.append(int(np.argmax(logits)))
    return np.asarray(tokens)


@functools.partial(nnx.jit, static_argnames="layer")
def _query_and_keys(lm, x, pos, last, *, layer: int):
    rope = rope_tables(lm.text_config, pos)
    return last_query_and_keys(lm.layers[layer], x, rope, jnp.reshape(last, (1,)))


def _prompt_states(lm, prepared, b: int, max_new: int):
    """Sample b's whole prompt through every layer -> (rows, positions, each layer's input states
    [n_layers + 1, 1, n, D], padded size)."""
    rows = np.flatnonzero(np.asarray(prepared.attention_mask[b]).astype(bool))
    n = len(rows)
    x = np.asarray(prepared.inputs_embeds)[b, rows][None]
    pos = _positions(prepared, b, rows, 0)
    adds = prepared.layer_additions
    add = None if adds is None else [np.asarray(a)[b, rows][None] for a in adds]
    causal = np.tril(np.ones((n, n), bool))
    layers = lm.text_config.num_hidden_layers
    size = int(prepared.attention_mask.shape[1]) + max_new
    states, _ = _run(lm, x, pos, [causal] * layers, [np.zeros((n, n))] * layers, add, size)
    return rows, pos, states, size


def _visual_rows(prepared, b: int, rows):
    """(sequence positions of the valid visual slots, which are newlines, their rows in `rows`)."""
    vt = prepared.visual
    valid = np.asarray(vt.valid[b])
    visual = np.asarray(vt.index[b])[valid]
    newline = np.asarray(vt.kind[b])[valid] == KIND_NEWLINE
    return visual, newline, np.searchsorted(rows, visual)


def fastv_choice(lm, prepared, b: int, layer: int, k: int, max_new: int = 0) -> np.ndarray:
    """FastV from its definition: the last prompt token's head-averaged softmax attention row at
    layer K over all prompt keys, top-k among the visual tokens (ties to the lower index);
    LLaVA-NeXT's newline tokens are always kept and not counted in k (the project's rule for
    every method). Returns the kept tokens' sequence positions, sorted. (max_new only sizes the
    padding, to share generate_one's compilation.)"""
    rows, pos, states, size = _prompt_states(lm, prepared, b, max_new)
    n = len(rows)
    # The layer's projections at the padded size (one compilation), real rows read back after.
    q, keys = _query_and_keys(lm, _pad(states[layer], size, 1), _pad(pos, size, -1), n - 1, layer=layer)
    q, keys = np.asarray(q[0], np.float64), np.asarray(keys[0, :n], np.float64)  # [H, hd], [n, Hkv, hd]
    heads, kv_heads = q.shape[0], keys.shape[1]
    logits = np.stack([keys[:, h // (heads // kv_heads)] @ q[h] for h in range(heads)]) / np.sqrt(q.shape[1])
    attn = np.exp(logits - logits.max(axis=1, keepdims=True))
    attn = (attn / attn.sum(axis=1, keepdims=True)).mean(axis=0)  # [n]
    visual, newline, where = _visual_rows(prepared, b, rows)
    order = sorted(np.flatnonzero(~newline), key=lambda i: (-attn[where[i]], i))
    return np.sort(np.concatenate([visual[order[:k]], visual[newline]]))


def layer_features(lm, prepared, b: int, layer: int, max_new: int = 0):
    """What an at-layer method reads for sample b at layer K: (rows, visual positions, newline flags,
    their rows, layer K's input through the final norm [n, D], layer K-1's keys after RoPE [n, Hkv*hd])."""
    rows, pos, states, size = _prompt_states(lm, prepared, b, max_new)
    n = len(rows)
    hidden = np.asarray(lm.norm(jnp.asarray(states[layer])))[0]
    _, keys = _query_and_keys(lm, _pad(states[layer - 1], size, 1), _pad(pos, size, -1), n - 1, layer=layer - 1)
    keys = np.asarray(keys[0, :n]).reshape(n, -1)
    visual, newline, where = _visual_rows(prepared, b, rows)
    return rows, visual, newline, where, hidden, keys


def tome_embeds(prepared, b: int, k: int):
    """Sample b's embeddings [T, D] after ToMe on its real non-newline visual tokens alone (no
    padding slots): each surviving token's row holds the size-weighted mean it represents.
    -> (embeds, survivors' sequence positions, sorted)."""
    from jax_pruning.methods import tome

    vt = prepared.visual
    embeds = np.array(prepared.inputs_embeds[b])
    content = np.asarray(vt.valid[b]) & (np.asarray(vt.kind[b]) != KIND_NEWLINE)
    where = np.asarray(vt.index[b])[content]
    merged, _, index, slot_valid = tome.merge(embeds[where], k)
    slot_valid = np.asarray(slot_valid)
    survivors = where[np.asarray(index)[slot_valid]]
    embeds[survivors] = np.asarray(merged)[slot_valid]
    return embeds, np.sort(survivors)
