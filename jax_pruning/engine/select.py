"""Pre-LLM selection: each method's keep / candidate masks over a batch's visual slots.

Input is what the LLM would see: the post-projector (LLaVA) / post-merger (Qwen)
features at each visual slot, with the model's `VisualTokens` map, and per-sample
budgets from `budgets.py` (traced, so one compilation serves every budget).
Newline tokens (LLaVA-NeXT) are always kept and never scored.
ToMe's merge schedule is static in k, so it runs once per distinct budget
(samples sharing a budget are vmapped together) and rewrites the features of
the tokens it keeps with the merged averages. That is the one place where an
evaluation compiles per distinct budget rather than per bucket (counted as
"tome" in `compile_count()`; a traced-target ToMe would remove it).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jax_pruning.engine.traces import TRACES
from jax_pruning.methods import gprune, hilo, mr_pruner, random as random_method, tome
from jax_pruning.registry import PrunerSpec
from models.sharding import constrain_batch, place_batch
from models.visual_tokens import KIND_BASE, KIND_NEWLINE, KIND_TILE

PRE_LLM = ("mr_pruner", "gprune", "tome", "random", "hilo")


def global_rows(row: np.ndarray, image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[B, Nv] rows offset per image so that windows never span two images of a sample."""
    out = np.array(row, np.int32)
    for b in range(row.shape[0]):
        offset = 0
        for i in np.unique(image[b][valid[b]]):
            sel = valid[b] & (image[b] == i)
            out[b, sel] = row[b, sel] + offset
            offset += int(row[b, sel].max()) + 1
    return np.where(valid, out, 0)


def _one_sample(spec: PrunerSpec, x, valid, kind, row, col, keep, keep_low, keep_high, cand, sample):
    """x [Nv, D] -> (keep mask [Nv], candidate mask [Nv]) for one sample."""
    newline = valid & (kind == KIND_NEWLINE)
    content = valid & (kind != KIND_NEWLINE)
    none = jnp.zeros_like(valid)
    o = spec.options
    if spec.name == "random":
        chosen = random_method.select(jax.random.fold_in(jax.random.key(o["seed"]), sample), keep, content)
        return chosen | newline, none
    if spec.name == "mr_pruner":
        low, high = mr_pruner.select(
            x, x, keep, o["variant"], low_valid=content & (kind == KIND_BASE),
            high_valid=content & (kind == KIND_TILE), threshold=o["threshold"],
            cross_threshold=o["cross_threshold"], temperature=o["temperature"], alpha=o["alpha"], beta=o["beta"],
            intra=o["intra"], cross=o["cross"], informativeness=o["informativeness"],
        )
        return low | high | newline, none
    if spec.name == "gprune":
        low, high = gprune.select_multires(
            x, x, keep_low, keep_high, low_valid=content & (kind == KIND_BASE),
            high_valid=content & (kind == KIND_TILE), threshold=o["threshold"],
            temperature=o["temperature"], steps=o["steps"],
        )
        return low | high | newline, none
    if spec.name == "hilo":
        retained, candidates, _ = hilo.select(
            x, row, col, keep, cand, valid=content, window=o["window"], threshold=o["threshold"],
            coarse=o["coarse"], candidates=o["candidates"],
        )
        return retained | newline, candidates
    raise ValueError(f"no pre-LLM selection for method {spec.name!r}")


# Options that only the host-side budgets or the prefill read: normalised away before the
# spec becomes a static jit argument, so a keep_ratio sweep or a Hi-Lo bias / merge / removal
# layer ablation reuses one compiled selection.
_NOT_SELECTION = {"keep_ratio": 1.0, "candidate_ratio": 1.0, "bias": 0.0, "merge": True, "removal_layer": 2}


def selection_key(spec: PrunerSpec) -> PrunerSpec:
    """The spec with every option the selection does not read set to a fixed value."""
    return spec.replace(**{k: v for k, v in _NOT_SELECTION.items() if k in spec.options})


def select_masks(spec: PrunerSpec, x, valid, kind, row, col, keep, keep_low, keep_high, cand):
    """[B, Nv, D] features + [B, Nv] maps + [B] budgets -> keep, candidate masks [B, Nv]."""
    return _select_masks(selection_key(spec), x, valid, kind, row, col, keep, keep_low, keep_high, cand)


@functools.partial(jax.jit, static_argnames="spec")
def _select_masks(spec: PrunerSpec, x, valid, kind, row, col, keep, keep_low, keep_high, cand):
    """[B, Nv, D] features + [B, Nv] maps + [B] budgets -> keep, candidate masks [B, Nv]."""
    TRACES["select"] += 1
    sample = jnp.arange(x.shape[0])
    one = functools.partial(_one_sample, spec)
    keep, cand = jax.vmap(one)(x, valid, kind, row, col, keep, keep_low, keep_high, cand, sample)
    return constrain_batch(keep), constrain_batch(cand)  # split over "data" under a mesh


@functools.partial(jax.jit, static_argnames="k")
def _tome_group(x, content, k: int):
    TRACES["tome"] += 1
    def one(xs, valid):
        merged, _, index, slot_valid = tome.merge(xs, k, valid=valid)
        keep = jnp.zeros(xs.shape[0], bool).at[index].max(slot_valid)
        out = xs.at[jnp.where(slot_valid, index, xs.shape[0])].set(merged.astype(xs.dtype), mode="drop")
        return keep, out

    keep, out = jax.vmap(one)(x, content)
    return constrain_batch(keep), constrain_batch(out)


def tome_merge(x: jax.Array, valid: np.ndarray, kind: np.ndarray, keep: np.ndarray):
    """ToMe per budget group -> (keep mask [B, Nv], features [B, Nv, D] with merged values)."""
    content = np.asarray(valid) & (np.asarray(kind) != KIND_NEWLINE)
    newline = np.asarray(valid) & (np.asarray(kind) == KIND_NEWLINE)
    keep_mask = place_batch(np.zeros(content.shape, bool))
    features = x
    for k in np.unique(keep):
        rows = np.flatnonzero(keep == k)
        if k == 0:
            continue
        group_keep, group_x = _tome_group(x[rows], place_batch(content[rows]), int(k))
        keep_mask = keep_mask.at[rows].set(group_keep)
        features = features.at[rows].set(group_x)
    return keep_mask | place_batch(newline), features
