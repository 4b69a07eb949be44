"""In-tower selection (VisionZip, VisPruner): per crop / image, from the tower's own attention, before the LLM.

The model's `prepare(evidence=True)` hands over, per visual slot, the tower's
attention row, keys and projector inputs (models.tower_evidence). Here the
slots are regrouped into [B, G, n] (G crops or images per sample, n slots per
crop or image, both rounded up to buckets), each sample's budget is split
over its crops / images in proportion to their tokens (largest remainder,
ties to the earlier one), the method's `tower_select` runs on every group
(vmapped), and the merged tokens it forms are projected by the model
(`project_hidden`) and written at their slots (Qwen3-VL: the deepstack
features too).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_pruning.engine.buckets import bucket
from jax_pruning.engine.select import selection_key
from jax_pruning.engine.traces import TRACES
from jax_pruning.methods.declaration import TowerInputs
from jax_pruning.registry import PrunerSpec
from jax_pruning.parallel import to_host
from models.sharding import constrain_batch, place_batch
from models.visual_tokens import KIND_NEWLINE


class Groups(NamedTuple):
    """Host plan: slot [B, G, n] (0 where padding), valid [B, G, n], keep [B, G] budgets, sizes [B, G]."""

    slot: np.ndarray
    valid: np.ndarray
    keep: np.ndarray
    sizes: np.ndarray


def split_budget(keep: int, sizes: np.ndarray) -> np.ndarray:
    """keep tokens over groups of `sizes` in proportion (largest remainder, ties to the lower index)."""
    sizes = np.asarray(sizes, np.int64)
    total = int(sizes.sum())
    if total == 0:
        return np.zeros_like(sizes)
    out, remainder = np.divmod(keep * sizes, total)  # exact integers: equal shares tie exactly
    order = np.argsort(-remainder, kind="stable")
    out[order[: keep - int(out.sum())]] += 1
    return np.minimum(out, sizes)


def plan_groups(group: np.ndarray, keep: np.ndarray) -> Groups:
    """Per-slot group ids [B, Nv] (-1: none) and budgets [B] -> the [B, G, n] regrouping."""
    group = np.asarray(group)
    batch = group.shape[0]
    n_groups = int(group.max(initial=-1)) + 1
    sizes = np.stack([np.bincount(g[g >= 0], minlength=n_groups) for g in group]) if n_groups else \
        np.zeros((batch, 0), np.int64)
    g_cap, n_cap = bucket(max(n_groups, 1), 1), bucket(int(sizes.max(initial=1)), 16)
    slot = np.zeros((batch, g_cap, n_cap), np.int32)
    valid = np.zeros((batch, g_cap, n_cap), bool)
    budgets = np.zeros((batch, g_cap), np.int32)
    padded_sizes = np.zeros((batch, g_cap), np.int64)
    for b in range(batch):
        padded_sizes[b, :n_groups] = sizes[b]
        budgets[b, :n_groups] = split_budget(int(keep[b]), sizes[b])
        for g in range(n_groups):
            where = np.flatnonzero(group[b] == g)
            slot[b, g, : len(where)] = where
            valid[b, g, : len(where)] = True
    return Groups(slot, valid, budgets, padded_sizes)


def _take(a, slot):  # a [B, Nv, ...], slot [B, G, n] -> [B, G, n, ...]
    return jax.vmap(lambda x, s: x[s])(a, slot)


@functools.partial(jax.jit, static_argnames=("spec", "main"))
def _tower_select(spec: PrunerSpec, attention, keys, hidden, slot, valid, keep, *, main: int):
    """-> keep mask [B, Nv], merged projector inputs [B, G*C, P], their slots [B, G*C], merged_valid [B, G*C],
    absorbed [B, Nv] (tokens folded into a merged one)."""
    TRACES["select"] += 1
    n_slots = attention.shape[1]
    gathered = TowerInputs(_take(attention, slot), _take(keys, slot), _take(hidden, slot), None, valid, keep)
    gathered = gathered._replace(features=gathered.hidden[..., :main])
    one = lambda inputs: spec.method.tower_select(spec.options, inputs)  # noqa: E731
    choice = jax.vmap(jax.vmap(one))(gathered)
    kept = choice.keep & valid
    batch = attention.shape[0]
    rows = jnp.arange(batch)[:, None, None]
    mask = jnp.zeros((batch, n_slots), bool).at[rows, jnp.where(kept, slot, n_slots)].set(True, mode="drop")
    at = jnp.take_along_axis(slot, choice.merged_at, axis=2)  # [B, G, C]
    merged_valid = choice.merged_valid & jnp.take_along_axis(valid, choice.merged_at, axis=2)
    mask = mask.at[rows, jnp.where(merged_valid, at, n_slots)].set(True, mode="drop")
    absorbed = jnp.zeros((batch, n_slots), bool)
    if choice.absorbed is not None:
        absorbed = absorbed.at[rows, jnp.where(choice.absorbed & valid, slot, n_slots)].set(True, mode="drop")
    flat = lambda a: a.reshape(batch, -1, *a.shape[3:])  # noqa: E731
    return (constrain_batch(mask), constrain_batch(flat(choice.merged)), constrain_batch(flat(at)),
            constrain_batch(flat(merged_valid)), constrain_batch(absorbed))


@nnx.jit
def _write_merged(model, embeds, additions, merged, at, merged_valid, index):
    """Project the merged tokens and write them (and their deepstack features) at their sequence positions."""
    features, extra = model.project_hidden(merged)
    length = embeds.shape[1]
    rows = jnp.arange(embeds.shape[0])[:, None]
    target = jnp.where(merged_valid, jnp.take_along_axis(index, at, axis=1), length)
    embeds = embeds.at[rows, target].set(features.astype(embeds.dtype), mode="drop")
    if additions is not None and extra is not None:
        additions = additions.at[:, rows, target].set(extra.astype(additions.dtype), mode="drop")
    return constrain_batch(embeds), (None if additions is None else constrain_batch(additions, batch_axis=1))


def tower_select(spec: PrunerSpec, model, prepared, keep: np.ndarray):
    """-> (inputs_embeds, layer_additions, keep mask [B, Nv] with newlines, the method's FLOPs [B], merged
    [B, Nv]: slots holding a merged token, absorbed [B, Nv]: tokens folded into one)."""
    evidence, vt = prepared.evidence, prepared.visual
    if evidence is None:
        raise ValueError(f"{spec.name} selects inside the vision tower but the model returned no tower evidence "
                         f"(prepare(evidence=True))")
    groups = plan_groups(evidence.group, keep)
    mask, merged, at, merged_valid, absorbed = _tower_select(
        selection_key(spec), evidence.attention, evidence.keys, evidence.hidden,
        *map(place_batch, (groups.slot, groups.valid, groups.keep)), main=int(evidence.main))
    embeds, additions = prepared.inputs_embeds, prepared.layer_additions
    if merged.shape[1]:
        embeds, additions = _write_merged(model, embeds, additions, merged, at, merged_valid, place_batch(vt.index))
    newline = np.asarray(vt.valid) & (np.asarray(vt.kind) == KIND_NEWLINE)
    flops = np.zeros(len(keep))
    if spec.method.tower_flops is not None:
        flops = np.asarray(spec.method.tower_flops(spec.options, groups.sizes, groups.keep, evidence.widths), float)
    ok, at_host = to_host(merged_valid), to_host(at)
    holds = np.zeros(mask.shape, bool)
    holds[np.nonzero(ok)[0], at_host[ok]] = True  # the slots VisionZip's contextual tokens were written to
    return embeds, additions, mask | place_batch(newline), flops, holds, to_host(absorbed)
