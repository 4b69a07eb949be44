"""`jp.generate`: pruned prefill + batched greedy decoding, jitted at bucketed shapes.

    out = jp.generate(model, inputs, pruner=jp.pruner("hilo", keep_ratio=0.25), max_new_tokens=16)
    out.tokens          # np.int32 [B, max_new_tokens], pad after EOS
    out.visual_tokens   # np.int32 [B]: visual tokens the LLM's last layers saw
    out.stats           # timings, FLOPs, budgets, compile counts

pruner=None is the unpruned model: the same tokens as HF `generate` (greedy).

What each method does here (budgets.py: counts; select.py: which tokens; prefill.py: where):
  mr_pruner, gprune  LLaVA-NeXT only (ValueError elsewhere): base (kind 0) vs tiles (kind 1),
                     before the LLM; newlines always kept, not counted in k.
  tome, random       before the LLM, any family (ToMe rewrites survivors with merged means).
  hilo               stage 1 before the LLM -> R, C; layers < L see text + R + C under its mask
                     (+ bias), C leaves the hidden states and every cache at L. candidates=False
                     (or candidate_ratio 0, or L = 0) is plain pre-LLM pruning.
  fastv              full prompt in layers < K, top-k by the last prompt token's attention at K.
With several images in a sample, a method runs over the sample's tokens together (budgets add up
per image for MR-Pruner; Hi-Lo's windows and its R -> C merge never cross images).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jax_pruning.engine import flops as flops_model
from jax_pruning.engine.budgets import MULTI_RESOLUTION, compute_budgets, multi_resolution_error
from jax_pruning.engine.buckets import bucket
from jax_pruning.engine.decode import decode
from jax_pruning.engine.prefill import prefill, segment_layout
from jax_pruning.engine.traces import compile_count
from jax_pruning.engine.select import global_rows, select_masks, tome_merge
from jax_pruning.engine.staging import stage
from jax_pruning.registry import PrunerSpec
from models.multimodal import place_visual
from models.visual_tokens import KIND_NEWLINE


KEPT, DROPPED, CANDIDATE = 1, 0, 2


@dataclasses.dataclass
class GenerateOutput:
    tokens: np.ndarray  # int32 [B, max_new_tokens]
    visual_tokens: np.ndarray  # int32 [B]
    stats: dict
    visual: object = None  # the model's VisualTokens map (grids, kinds, rows, cols) of this batch
    visual_labels: np.ndarray | None = None  # int8 [B, Nv]: KEPT / DROPPED / CANDIDATE per visual slot


def _mode(spec: PrunerSpec | None, n_layers: int) -> tuple[str, int]:
    """(prefill mode, split layer) of a pruner."""
    if spec is None:
        return "pre", 0
    if spec.name == "fastv":
        if spec.layer >= n_layers:
            raise ValueError(f"fastv: layer={spec.layer} but the LLM has {n_layers} layers (valid: 0..{n_layers - 1})")
        return "fastv", spec.layer
    if spec.name == "hilo":
        if spec.removal_layer >= n_layers:
            raise ValueError(
                f"hilo: removal_layer={spec.removal_layer} but the LLM has {n_layers} layers "
                f"(valid: 0..{n_layers - 1})"
            )
        with_candidates = spec.candidates and spec.candidate_ratio > 0 and spec.removal_layer > 0
        return ("hilo", spec.removal_layer) if with_candidates else ("pre", 0)
    return "pre", 0


def _select(spec, prepared, budgets):
    """Pre-LLM selection -> (embeds, keep [B, Nv], candidates [B, Nv])."""
    vt = prepared.visual
    embeds = prepared.inputs_embeds
    valid = np.asarray(vt.valid)
    none = jnp.zeros(valid.shape, bool)
    if spec is None or spec.name == "fastv":
        return embeds, jnp.asarray(valid), none
    index = jnp.asarray(vt.index)
    features = jnp.take_along_axis(embeds, index[..., None], axis=1)  # [B, Nv, D]
    if spec.name == "tome":
        keep, merged = tome_merge(features, valid, np.asarray(vt.kind), budgets.keep)
        return place_visual(embeds, merged, vt), keep, none
    rows = global_rows(np.asarray(vt.row), np.asarray(vt.image), valid)
    keep, cand = select_masks(spec, features, valid, vt.kind, rows, vt.col, budgets.keep, budgets.keep_low,
                              budgets.keep_high, budgets.candidates)
    return embeds, keep, cand


def _place(mesh, lm, batch: int, arrays):
    """Data parallelism: weights replicated, batched arrays split over the mesh's "data" axis."""
    from flax import nnx

    from jax_pruning.parallel import replicate, shard_batch

    nnx.update(lm, replicate(nnx.state(lm), mesh))
    return shard_batch(arrays, mesh, batch)


def generate(model, inputs: dict, pruner: PrunerSpec | None = None, max_new_tokens: int = 16, *,
             eos_token_id=None, pad_token_id: int | None = None, mesh=None) -> GenerateOutput:
    """Pruned greedy generation for a batch of processor outputs (see the module docstring).

    mesh: a `jax_pruning.parallel.data_mesh()`; the batch (a multiple of its device
    count) is split over the devices, the LLM weights replicated.
    """
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"generate: max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if pruner is not None and not isinstance(pruner, PrunerSpec):
        raise ValueError(f"generate: pruner must come from jax_pruning.pruner(...) or be None, got {pruner!r}")
    if not (hasattr(model, "prepare") and hasattr(model, "language_model")):
        raise ValueError(f"generate: model must be a multimodal model from models.load (with prepare and "
                         f"language_model), got {type(model).__name__}")
    if not isinstance(inputs, Mapping):
        raise ValueError(f"generate: inputs must be a dict of processor outputs, got {type(inputs).__name__}")
    config = model.config
    if pruner is not None and pruner.name in MULTI_RESOLUTION and config.model_type != "llava_next":
        raise multi_resolution_error(pruner.name)  # whatever this batch holds
    lm = model.language_model
    n_layers = config.text.num_hidden_layers
    eos = tuple(int(e) for e in np.atleast_1d(eos_token_id)) if eos_token_id is not None else config.eos_token_id
    pad = int(pad_token_id if pad_token_id is not None else (config.pad_token_id or 0))
    mode, split = _mode(pruner, n_layers)

    start = time.perf_counter()
    prepared = stage(model, inputs, pad)
    jax.block_until_ready(prepared.inputs_embeds)
    prepare_seconds = time.perf_counter() - start
    vt = prepared.visual
    budgets = compute_budgets(pruner, vt)

    start = time.perf_counter()
    embeds, keep, cand = _select(pruner, prepared, budgets)
    jax.block_until_ready((embeds, keep, cand))
    prune_seconds = time.perf_counter() - start

    mask = np.asarray(prepared.attention_mask).astype(bool)
    length = mask.shape[1]
    text = mask.sum(axis=1) - np.asarray(vt.valid).sum(axis=1)
    seen = text + budgets.seen
    entering = seen + (budgets.candidates if mode == "hilo" else 0)
    full = mask.sum(axis=1)
    length1 = min(bucket(int(seen.max(initial=1)), 16), length)
    length0 = min(bucket(int((full if mode == "fastv" else entering).max(initial=1)), 16), length)
    if mode == "pre":
        length1 = length0

    arrays = (embeds, prepared.position_ids, prepared.attention_mask, prepared.layer_additions,
              jnp.asarray(vt.index), jnp.asarray(vt.valid), jnp.asarray(vt.image), keep, cand,
              jnp.asarray(np.asarray(vt.valid) & (np.asarray(vt.kind) == KIND_NEWLINE)),
              jnp.asarray(budgets.keep), prepared.next_position)
    if mesh is not None:
        arrays = _place(mesh, lm, mask.shape[0], arrays)
    start = time.perf_counter()
    logits, segments, visual_seen, kept_tokens = prefill(
        lm, *arrays[:-1], mode=mode, split=split, length0=length0, length1=length1,
        max_new=int(max_new_tokens), bias_value=float(pruner.bias) if mode == "hilo" else 0.0,
        merge=bool(pruner.merge) if mode == "hilo" else True,
    )
    jax.block_until_ready(logits)
    prefill_seconds = time.perf_counter() - start
    # Keys each segment's cache holds per sample (read before decode takes the donated caches).
    kv_cache_tokens = [np.asarray(seg.key_valid.sum(axis=1)) for seg in segments]

    start = time.perf_counter()
    layout = tuple(segment_layout(mode, split, n_layers, length0, length1))
    tokens, _ = decode(lm, logits, segments, arrays[-1], layout=layout, max_new=int(max_new_tokens),
                       eos_ids=eos, pad_id=pad)
    tokens = np.asarray(tokens)
    decode_seconds = time.perf_counter() - start

    visual_seen = np.asarray(visual_seen).astype(np.int32)
    index = np.asarray(vt.index)
    kept = np.take_along_axis(np.asarray(kept_tokens), index, axis=1)
    labels = np.where(kept, KEPT, np.where(np.asarray(cand), CANDIDATE, DROPPED)).astype(np.int8)
    labels[~np.asarray(vt.valid)] = DROPPED
    stats = {
        "method": "none" if pruner is None else pruner.name,
        "keep_ratio": 1.0 if pruner is None else float(pruner.keep_ratio),
        "prepare_seconds": prepare_seconds,
        "prune_seconds": prune_seconds,
        "prefill_seconds": prefill_seconds,
        "decode_seconds": decode_seconds,
        "visual_tokens_before": budgets.real + budgets.newlines,
        "candidates": budgets.candidates,
        "newlines": budgets.newlines,
        "sequence_slots": (length0, length1),
        "compiles": compile_count(),
        "kv_cache_tokens": kv_cache_tokens,
        **flops_model.prefill_flops(config, vt, budgets, text, mode, split, pruner, inputs),
    }
    return GenerateOutput(tokens=tokens, visual_tokens=visual_seen, stats=stats, visual=vt, visual_labels=labels)
