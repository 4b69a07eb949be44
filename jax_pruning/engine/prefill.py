"""Pruned prefill: the LLM runs over only what the method keeps, and fills a KV cache with it.

A prefill has up to two segments of layers, each on its own compacted sequence
(kept tokens first, in original order, with their original position ids). The
stage is the method's declared one (jax_pruning.methods.declaration):

  BEFORE_LLM        (or no pruning): one segment, all layers, on text + kept visual.
  AT_LLM_LAYER      layers [0, L) on the full sequence; at layer L the method's
                    `llm_select` reads what it needs through a `LayerView` (FastV:
                    the last prompt token's attention row, one query row) and picks
                    k visual tokens; layers [L, N) run on text + those.
  BIAS_THEN_REMOVE  layers [0, L) on text + R + C under Hi-Lo's mask (text never sees
                    C; R sees the C of its image in both directions, + bias); at L the
                    candidates C leave the hidden states and, since no text query ever
                    attended them, every layer's cache too.

Only the last prompt position's logits are computed. Decoding (decode.py) then
continues over `Segment`s: a layer range, its caches, which slots hold keys,
and the slot where generated token s goes (base + s; see `segment_layout`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jax_pruning.engine.batch import PrefillInputs
from jax_pruning.engine.traces import TRACES
from jax_pruning.methods.declaration import BIAS_THEN_REMOVE
from models.decoder import KVCache, TextModel, causal_mask, last_query_and_keys, run_layers
from models.rope import rope_tables
from models.sharding import constrain, constrain_batch, kv_cache_spec



class Segment(NamedTuple):
    """Consecutive layers that share a compacted sequence (the first generated token's slot,
    `base`, is static and kept by the caller: see `segment_layout`)."""

    caches: list  # KVCache per layer of the segment
    key_valid: jax.Array  # bool [B, S]: slots holding real keys


def segment_layout(stage: str, splits: tuple[int, ...], n_layers: int, lengths: tuple[int, ...]):
    """[(start, stop, base slot)] of the segments `prefill` returns, in order (Hi-Lo's first segment is
    compacted to the second's length when its candidates leave)."""
    bounds = (0, *splits, n_layers)
    bases = (lengths[1], *lengths[1:]) if stage == BIAS_THEN_REMOVE else lengths
    return [(start, stop, base) for start, stop, base in zip(bounds[:-1], bounds[1:], bases)]


@dataclasses.dataclass(frozen=True)
class LayerView:
    """What an AT_LLM_LAYER method may read at its layer K (inside the jitted prefill; each piece is
    computed only when the method asks for it, so no method pays for another's needs).

    hidden [B, T, D]: the hidden states entering layer K; valid [B, T]: real tokens; visual [B, T]:
    the visual tokens the method may choose among; fixed [B, T]: visual tokens kept without scoring
    (LLaVA-NeXT newlines), not in `visual`.
    """

    model: Any
    layer: int
    hidden: jax.Array
    rope: Any
    valid: jax.Array
    visual: jax.Array
    fixed: jax.Array
    caches: list  # the KV caches of the segment just run (layers first_cached, first_cached + 1, ...)
    first_cached: int = 0

    def last_query_and_keys(self):
        """Layer K's query of the last prompt token [B, H, hd] and its keys [B, T, Hkv, hd] (after RoPE)."""
        last = jnp.sum(self.valid, axis=1) - 1
        return last_query_and_keys(self.model.layers[self.layer], self.hidden, self.rope, last)

    def final_norm(self):
        """The hidden states entering layer K through the LLM's final norm [B, T, D]."""
        return self.model.norm(self.hidden)

    def cached_keys(self, layer: int):
        """The keys layer `layer` < K wrote, [B, T, Hkv, hd] (after RoPE); a layer of the segment just run."""
        if not self.first_cached <= layer < self.first_cached + len(self.caches):
            raise ValueError(f"keys of layer {layer} are not cached at layer {self.layer} (the segment just run "
                             f"holds layers {self.first_cached}..{self.first_cached + len(self.caches) - 1})")
        return self.caches[layer - self.first_cached].k[:, : self.hidden.shape[1]]


def compact(keep, length: int):
    """keep bool [B, T] -> (index int32 [B, length] of kept rows first, in order; valid [B, length])."""
    index = jnp.argsort(~keep, axis=1, stable=True)[:, :length].astype(jnp.int32)
    return index, jnp.take_along_axis(keep, index, axis=1)


def _take(a, index, axis):  # gather rows of a along `axis` per sample (batch axis just before it)
    shape = [1] * a.ndim
    shape[axis - 1], shape[axis] = index.shape
    return jnp.take_along_axis(a, index.reshape(shape), axis=axis)


def _take_positions(positions, index):  # [B, T] or [3, B, T]
    return _take(positions, index, positions.ndim - 1)


def _scatter_tokens(values, visual_index, visual_valid, length, fill):
    """Per-slot values [B, Nv] -> per-token [B, T] (non-visual tokens get `fill`)."""
    batch = values.shape[0]
    out = jnp.full((batch, length), fill, values.dtype)
    target = jnp.where(visual_valid, visual_index, length)
    return out.at[jnp.arange(batch)[:, None], target].set(values, mode="drop")


def _hilo_mask(valid, is_visual, is_cand, image, bias_value: float, merge: bool):
    """Hi-Lo's layers < L: causal, text never attends C; R attends its image's C both ways (+ bias)."""
    slots = jnp.broadcast_to(jnp.arange(valid.shape[1]), valid.shape)
    mask = causal_mask(slots, valid)[:, 0]  # [B, T, T]
    text_q = ~is_visual
    mask = mask & ~(text_q[:, :, None] & is_cand[:, None, :])
    bias = None
    if merge:
        retained_q = is_visual & ~is_cand
        opened = retained_q[:, :, None] & is_cand[:, None, :] & (image[:, :, None] == image[:, None, :])
        opened = opened & valid[:, None, :]
        mask = mask | opened
        if bias_value:
            bias = jnp.where(opened, jnp.float32(bias_value), 0.0)[:, None]
    return mask[:, None], bias


def _empty_caches(model: TextModel, batch: int, capacity: int, count: int, dtype):
    c = model.text_config
    shape = (batch, capacity, c.num_key_value_heads, c.head_dim)
    zeros = lambda: constrain(jnp.zeros(shape, dtype), kv_cache_spec(c))  # noqa: E731
    return [KVCache(zeros(), zeros()) for _ in range(count)]


def constrain_segments(model: TextModel, segments: list) -> list:
    """Caches batch on "data" and KV heads on "model"; key_valid batch on "data" (no-ops on one device)."""
    spec = kv_cache_spec(model.text_config)
    return [Segment([KVCache(constrain(c.k, spec), constrain(c.v, spec)) for c in seg.caches],
                    constrain_batch(seg.key_valid)) for seg in segments]


def _room(key_valid, max_new: int):  # [B, S] -> [B, S + max_new]: slots for the generated tokens
    return jnp.pad(key_valid, ((0, 0), (0, max_new)))


def _additions(additions, index):
    return None if additions is None else _take(additions, index, 2)


def prefill_impl(
    model: TextModel,
    inputs: PrefillInputs,
    *,
    stage: str,
    splits: tuple[int, ...],
    lengths: tuple[int, ...],
    max_new: int,
    bias_value: float = 0.0,
    merge: bool = True,
    chooser=None,
):
    """-> (last-position logits float32 [B, V], [Segment, ...], visual tokens in the last segment [B],
    bool [B, T]: which original tokens the last layers saw).

    splits: the layers where tokens leave (BEFORE_LLM: none; BIAS_THEN_REMOVE: L; AT_LLM_LAYER: one per
    selection, ascending); lengths: the sequence slots of each segment (one more than splits).
    `prefill` is this function under `nnx.jit` (everything after `*` static). Under a mesh the inputs
    are split over "data" (their declared axes) and the caches come out batch on "data", KV heads on
    "model" (models.sharding.kv_cache_spec); the weights stay where `models.load(mesh=)` put them.
    chooser: the AT_LLM_LAYER method's spec (keep_ratio normalised away: the budgets of the selection
    at splits[s] are `inputs.llm_keep[:, s]`).
    """
    TRACES["prefill"] += 1
    inputs = inputs.constrained()
    embeds, positions, mask, additions = inputs.embeds, inputs.positions, inputs.mask, inputs.additions
    visual_index, visual_valid, visual_image = inputs.visual_index, inputs.visual_valid, inputs.visual_image
    keep_visual, cand_visual, fixed_visual = inputs.keep_visual, inputs.cand_visual, inputs.fixed_visual
    batch, length = embeds.shape[:2]
    n_layers = model.text_config.num_hidden_layers
    mask = mask.astype(bool)
    is_visual = _scatter_tokens(visual_valid, visual_index, visual_valid, length, False)
    entering = _scatter_tokens(keep_visual | cand_visual, visual_index, visual_valid, length, False)
    is_cand = _scatter_tokens(cand_visual, visual_index, visual_valid, length, False)
    is_fixed = _scatter_tokens(fixed_visual, visual_index, visual_valid, length, False)
    image = _scatter_tokens(visual_image, visual_index, visual_valid, length, -1)

    # The running sequence: `origin` maps each slot to its original position, the rest follow it.
    origin, valid = compact(mask & (~is_visual | entering), lengths[0])
    x = _take(embeds, origin, 1)
    rope = rope_tables(model.text_config, _take_positions(positions, origin))
    add = _additions(additions, origin)
    vis, cand, fixed, img = (_take(a, origin, 1) & valid if a.dtype == bool else _take(a, origin, 1)
                             for a in (is_visual, is_cand, is_fixed, image))
    hilo = stage == BIAS_THEN_REMOVE
    if hilo:
        attn_mask, bias = _hilo_mask(valid, vis, cand, img, bias_value, merge)
    else:
        attn_mask, bias = causal_mask(jnp.broadcast_to(jnp.arange(lengths[0]), valid.shape), valid), None

    bounds = (0, *splits, n_layers)
    segments = []
    for s, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        if s > 0:  # tokens leave at layer `start`
            if hilo:  # candidates leave the hidden states and, never attended by text, every cache
                index, valid_next = compact(valid & ~cand, lengths[s])
                pad = lambda c: jnp.pad(_take(c, index, 1), ((0, 0), (0, max_new), (0, 0), (0, 0)))  # noqa: E731
                segments[-1] = Segment([KVCache(pad(c.k), pad(c.v)) for c in segments[-1].caches],
                                       _room(valid_next, max_new))
            else:
                view = LayerView(model, start, x, rope, valid, vis & ~fixed, fixed, segments[-1].caches,
                                 bounds[s - 1])
                chosen = chooser.method.llm_select(chooser.options, view, inputs.llm_keep[:, s - 1])
                chosen = (chosen & view.visual) | fixed
                index, valid_next = compact(valid & (~vis | chosen), lengths[s])
            x, add = _take(x, index, 1), _additions(add, index)
            rope = tuple(_take(r, index, 1) for r in rope)
            origin, vis, cand, fixed = (_take(a, index, 1) for a in (origin, vis, cand, fixed))
            valid = valid_next
            vis, cand, fixed = vis & valid, cand & valid, fixed & valid
            attn_mask, bias = causal_mask(jnp.broadcast_to(jnp.arange(lengths[s]), valid.shape), valid), None
        caches = _empty_caches(model, batch, lengths[s] + max_new, stop - start, embeds.dtype)
        x, caches = run_layers(model, x, rope, attn_mask, start=start, stop=stop, caches=caches, write_index=0,
                               additions=add, bias=bias, causal=not (hilo and s == 0))  # Hi-Lo's R sees later C
        segments.append(Segment(caches, _room(valid, max_new)))
    last = jnp.sum(valid, axis=1) - 1
    logits = model.head(_take(x, last[:, None], 1))[:, 0]
    visual_seen = jnp.sum(vis & valid, axis=1)
    origin = jnp.where(valid, origin, length)  # original position of each last-segment slot
    kept = jnp.zeros((batch, length), bool).at[jnp.arange(batch)[:, None], origin].set(True, mode="drop")
    return (constrain_batch(logits), constrain_segments(model, segments), constrain_batch(visual_seen),
            constrain_batch(kept))


PREFILL_STATIC = ("stage", "splits", "lengths", "max_new", "bias_value", "merge", "chooser")
prefill = nnx.jit(prefill_impl, static_argnames=PREFILL_STATIC)
