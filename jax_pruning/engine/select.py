"""Pre-LLM selection: each method's keep / candidate masks over a batch's visual slots.

Input is what the LLM would see: the post-projector (LLaVA) / post-merger (Qwen)
features at each visual slot, with the model's `VisualTokens` map, and per-sample
budgets from `budgets.py` (traced, so one compilation serves every budget).
Newline tokens (LLaVA-NeXT) are always kept and never scored.
A merging method (ToMe: its merge schedule is static in k) runs once per
distinct budget (samples sharing a budget are vmapped together) and rewrites
the features of the tokens it keeps with the merged averages. That is the one
place where an evaluation compiles per distinct budget rather than per bucket
(counted as "merge" in `compile_count()`; a traced-target ToMe would remove it).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jax_pruning.engine.traces import TRACES
from jax_pruning.methods.declaration import SelectionInputs
from jax_pruning.registry import PrunerSpec
from jax_pruning.parallel import to_host
from models.sharding import constrain_batch, place_batch
from models.visual_tokens import KIND_BASE, KIND_NEWLINE, KIND_TILE


def global_rows(row: np.ndarray, image: np.ndarray, valid: np.ndarray, frame: np.ndarray | None = None) -> np.ndarray:
    """[B, Nv] rows offset per image so that windows never span two images of a sample. A video's rows are
    spatial (row within its temporal patch; `frame` says which patch), so its patches share the rows."""
    out = np.array(row, np.int32)
    frame = np.zeros_like(out) if frame is None else np.asarray(frame)
    for b in range(row.shape[0]):
        offset = 0
        for i in np.unique(image[b][valid[b]]):
            sel = valid[b] & (image[b] == i)
            patches = int(frame[b, sel].max()) + 1
            height = (int(row[b, sel].max()) + 1) // patches  # row = patch * h + r
            out[b, sel] = row[b, sel] - frame[b, sel] * height + offset
            offset += height
    return np.where(valid, out, 0)


def instruction_tokens(mask: np.ndarray, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """bool [B, T]: each sample's real text tokens after its last visual token (all its real text
    tokens when none follow); mask [B, T], index / valid [B, Nv] the visual slots."""
    mask = np.asarray(mask).astype(bool)
    visual = np.zeros_like(mask)
    rows = np.broadcast_to(np.arange(len(mask))[:, None], index.shape)
    visual[rows[valid], np.asarray(index)[valid]] = True
    text = mask & ~visual
    last = np.where(valid, index, -1).max(axis=1, initial=-1)
    after = text & (np.arange(mask.shape[1])[None, :] > last[:, None])
    return np.where(after.any(axis=1, keepdims=True), after, text)


def previous_slots(image: np.ndarray, frame: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
    """[B, Nv] the slot of the same spatial cell one temporal patch earlier in the same video, -1 where none
    (first temporal patches, images, padding): the j-th token of patch t pairs with the j-th of t - 1."""
    out = np.full(np.shape(valid), -1, np.int32)
    if frame is None:
        return out
    frame = np.asarray(frame)
    for b in range(out.shape[0]):
        for i in np.unique(image[b][valid[b]]):
            slots = [np.flatnonzero(valid[b] & (image[b] == i) & (frame[b] == t))
                     for t in range(int(frame[b][valid[b] & (image[b] == i)].max()) + 1)]
            for before, now in zip(slots[:-1], slots[1:]):
                if len(before) == len(now):
                    out[b, now] = before
    return out


def _one_sample(spec: PrunerSpec, x, valid, kind, row, col, keep, keep_low, keep_high, cand, sample, text,
                text_valid, item=None, item_keep=None, frame=None, previous=None):
    """x [Nv, D] -> (keep mask [Nv], candidate mask [Nv]) for one sample: the method's own selection
    over the scorable tokens, newlines added back."""
    newline = valid & (kind == KIND_NEWLINE)
    content = valid & (kind != KIND_NEWLINE)
    inputs = SelectionInputs(x=x, valid=content, low=kind == KIND_BASE, high=kind == KIND_TILE, row=row, col=col,
                             keep=keep, keep_low=keep_low, keep_high=keep_high, candidates=cand, sample=sample,
                             text=text, text_valid=text_valid, item=item, item_keep=item_keep, frame=frame,
                             previous=previous)
    chosen, candidates = spec.method.select(spec.options, inputs)
    return (chosen & content) | newline, candidates & content


def selection_key(spec: PrunerSpec) -> PrunerSpec:
    """The spec with every option the selection does not read set to a fixed value (keep_ratio and
    the method's `selection_ignores`), so a sweep over them reuses one compiled selection."""
    return spec.replace(keep_ratio=1.0, **spec.method.selection_ignores)


def select_masks(spec: PrunerSpec, x, valid, kind, row, col, keep, keep_low, keep_high, cand, text, text_valid,
                 time=None):
    """[B, Nv, D] features + [B, Nv] maps + [B] budgets + the prompt [B, T, D] and its instruction
    tokens [B, T] (+ time: (item [B, Nv], item_keep [B, I], frame [B, Nv], previous [B, Nv])) -> keep,
    candidate masks [B, Nv]."""
    return _select_masks(selection_key(spec), x, valid, kind, row, col, keep, keep_low, keep_high, cand, text,
                         text_valid, time)


@functools.partial(jax.jit, static_argnames="spec")
def _select_masks(spec: PrunerSpec, x, valid, kind, row, col, keep, keep_low, keep_high, cand, text, text_valid,
                  time=None):
    TRACES["select"] += 1
    sample = jnp.arange(x.shape[0])
    one = functools.partial(_one_sample, spec)
    keep, cand = jax.vmap(one)(x, valid, kind, row, col, keep, keep_low, keep_high, cand, sample, text, text_valid,
                               *(time or ()))
    return constrain_batch(keep), constrain_batch(cand)  # split over "data" under a mesh


@functools.partial(jax.jit, static_argnames=("merge", "k"))
def _merge_group(merge, x, content, k: int):
    TRACES["merge"] += 1
    keep, out, holds, absorbed = jax.vmap(lambda xs, valid: merge(xs, valid, k))(x, content)
    return constrain_batch(keep), constrain_batch(out), constrain_batch(holds), constrain_batch(absorbed)


def merge_tokens(spec: PrunerSpec, x: jax.Array, valid: np.ndarray, kind: np.ndarray, keep: np.ndarray):
    """A merging method (static k) per budget group -> (keep mask [B, Nv], features [B, Nv, D] with the
    merged values, merged [B, Nv]: kept slots holding several tokens, absorbed [B, Nv]: tokens merged away)."""
    content = np.asarray(valid) & (np.asarray(kind) != KIND_NEWLINE)
    newline = np.asarray(valid) & (np.asarray(kind) == KIND_NEWLINE)
    keep_mask = place_batch(np.zeros(content.shape, bool))
    holds, absorbed = np.zeros(content.shape, bool), np.zeros(content.shape, bool)
    features = x
    for k in np.unique(keep):
        rows = np.flatnonzero(keep == k)
        if k == 0:
            continue
        group_keep, group_x, group_holds, group_absorbed = _merge_group(spec.method.merge, x[rows],
                                                                        place_batch(content[rows]), int(k))
        keep_mask = keep_mask.at[rows].set(group_keep)
        features = features.at[rows].set(group_x)
        holds[rows], absorbed[rows] = to_host(group_holds), to_host(group_absorbed) & content[rows]
    return keep_mask | place_batch(newline), features, holds, absorbed
