"""`jp.generate`: pruned prefill + batched greedy decoding, jitted at bucketed shapes.

    out = jp.generate(model, inputs, pruner=jp.pruner("hilo", keep_ratio=0.25), max_new_tokens=16)
    out.tokens          # np.int32 [B, max_new_tokens], pad after EOS
    out.visual_tokens   # np.int32 [B]: visual tokens the LLM's last layers saw
    out.stats           # timings, FLOPs, budgets, compile counts

pruner=None is the unpruned model: the same tokens as HF `generate` (greedy).

Each method declares where it acts (`jax_pruning.methods.declaration`); this module reads that
declaration and never a method's name (budgets.py: counts; select.py: which tokens; prefill.py: where):
  BEFORE_LLM        a selection (or a merge, ToMe) over the features the LLM would see; the LLM
                    runs on text + kept tokens. Multi-resolution methods (MR-Pruner, G-Prune) need
                    LLaVA-NeXT's base image + anyres tiles (ValueError elsewhere).
  IN_VISION_TOWER   per crop / image from the tower's own attention row, keys and projector inputs
                    (VisionZip, VisPruner; engine/tower.py); the LLM then runs as BEFORE_LLM.
  AT_LLM_LAYER      full prompt in layers < K, the method's selection at K (FastV).
  BIAS_THEN_REMOVE  Hi-Lo: R, C before the LLM; layers < L see text + R + C under its mask (+ bias),
                    C leaves the hidden states and every cache at L (without C: BEFORE_LLM).
LLaVA-NeXT's newline tokens are always kept, never scored, never counted in k. With several images
in a sample, a method runs over the sample's tokens together (budgets add up per image for
MR-Pruner; Hi-Lo's windows and its R -> C merge never cross images).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jax_pruning.engine import flops as flops_model
from jax_pruning.engine.batch import PrefillInputs
from jax_pruning.engine.budgets import compute_budgets, segment_tokens, sequence_slots
from jax_pruning.engine.decode import decode
from jax_pruning.engine.prefill import prefill, segment_layout
from jax_pruning.engine.traces import compile_count
from jax_pruning.engine.select import global_rows, instruction_tokens, merge_tokens, previous_slots, select_masks
from jax_pruning.engine.tower import tower_select
from jax_pruning.methods.declaration import (AT_LLM_LAYER, BEFORE_LLM, BIAS_THEN_REMOVE, IN_VISION_TOWER,
                                             multi_resolution_error)
from jax_pruning.engine import staging
from jax_pruning.parallel import padded_batch_size, to_host
from jax_pruning.registry import PrunerSpec
from models.multimodal import place_visual
from models.sharding import active_mesh, params_on_mesh, place_batch, shard_params
from models.visual_tokens import KIND_NEWLINE


# Per visual slot (GenerateOutput.visual_labels): MERGED is a kept slot holding a merged token (ToMe,
# VisionZip's contextual tokens), ABSORBED a dropped token folded into one.
KEPT, DROPPED, CANDIDATE, MERGED, ABSORBED = 1, 0, 2, 3, 4


@dataclasses.dataclass
class GenerateOutput:
    tokens: np.ndarray  # int32 [B, max_new_tokens]
    visual_tokens: np.ndarray  # int32 [B]
    stats: dict
    visual: object = None  # the model's VisualTokens map (grids, kinds, rows, cols) of this batch
    visual_labels: np.ndarray | None = None  # int8 [B, Nv]: KEPT / DROPPED / CANDIDATE / MERGED / ABSORBED per slot


def stage_of(spec: PrunerSpec | None, n_layers: int) -> tuple[str, tuple[int, ...]]:
    """(stage the prefill runs, the layers where tokens leave) of a pruner on an n_layers LLM
    (ValueError for a layer the model does not have)."""
    if spec is None:
        return BEFORE_LLM, ()
    return spec.method.stage_for(spec, n_layers)


def check_family(spec: PrunerSpec | None, config) -> None:
    """Refuse a method this model family cannot run, whatever the batch holds."""
    if spec is not None and spec.method.multi_resolution and config.model_type != "llava_next":
        raise multi_resolution_error(spec.name)
    if spec is not None and spec.method.video_only and config.model_type == "llava_next":
        raise ValueError(f"{spec.name} prunes video tokens (the same cell one temporal patch apart); LLaVA-NeXT "
                         f"takes no video. Use it with a Qwen-VL model and pixel_values_videos.")


def _select(spec, stage: str, model, prepared, budgets, mask: np.ndarray):
    """Before-LLM selection -> (embeds, layer additions, keep [B, Nv], candidates [B, Nv], an in-tower
    method's FLOPs [B] or None, merged / absorbed [B, Nv] host masks or None), split over "data" under a mesh."""
    vt = prepared.visual
    embeds, additions = prepared.inputs_embeds, prepared.layer_additions
    valid = np.asarray(vt.valid)
    none = place_batch(np.zeros(valid.shape, bool))
    if spec is None or stage == AT_LLM_LAYER:
        return embeds, additions, place_batch(valid), none, None, None
    if spec.method.stage == IN_VISION_TOWER:
        embeds, additions, keep, flops, holds, absorbed = tower_select(spec, model, prepared, budgets.keep)
        return embeds, additions, keep, none, flops, (holds, absorbed)
    index = place_batch(vt.index)
    features = jnp.take_along_axis(embeds, index[..., None], axis=1)  # [B, Nv, D]
    if spec.method.merge is not None:
        keep, merged, holds, absorbed = merge_tokens(spec, features, valid, np.asarray(vt.kind), budgets.keep)
        return place_visual(embeds, merged, jax.tree.map(place_batch, vt)), additions, keep, none, None, (holds,
                                                                                                      absorbed)
    frame = np.zeros(valid.shape, np.int32) if vt.frame is None else np.where(valid, np.asarray(vt.frame), 0)
    rows = global_rows(np.asarray(vt.row), np.asarray(vt.image), valid, frame)
    text = instruction_tokens(mask, np.asarray(vt.index), valid)
    time = tuple(map(place_batch, (vt.image, budgets.items, frame, previous_slots(np.asarray(vt.image), vt.frame,
                                                                                  valid))))
    keep, cand = select_masks(spec, features, *map(place_batch, (valid, vt.kind, rows, vt.col, budgets.keep,
                                                                budgets.keep_low, budgets.keep_high,
                                                                budgets.candidates)), embeds, place_batch(text),
                              time)
    return embeds, additions, keep, cand, None, None


def _check_rows(inputs) -> None:
    """Refuse, naming the input, what would otherwise crash inside jax or answer from nothing."""
    if "input_ids" not in inputs:
        return  # staging names every missing key
    ids = np.asarray(inputs["input_ids"])
    if ids.ndim != 2:
        raise ValueError(f"generate: input_ids must be [batch, tokens], got shape {ids.shape}")
    if ids.shape[0] == 0:
        raise ValueError("generate: the batch is empty (input_ids has 0 rows)")
    if ids.shape[1] == 0:
        raise ValueError("generate: input_ids has no tokens (an empty prompt)")
    if inputs.get("attention_mask") is not None:
        mask = np.asarray(inputs["attention_mask"])
        if mask.shape == ids.shape and not mask.any(axis=1).all():
            rows = np.flatnonzero(~mask.any(axis=1)).tolist()
            raise ValueError(f"generate: attention_mask rows {rows} attend no token (empty prompts?); every row "
                             f"needs at least one")


_WARNED_LONG = set()


class RowsError(ValueError):
    """A problem confined to some batch rows (`rows`): an evaluation records those samples as failed
    with this message and goes on with the others."""

    def __init__(self, message: str, rows: list[int]):
        super().__init__(message)
        self.rows = rows


class PromptTooLong(RowsError):
    """Prompt + max_new_tokens past max_position_embeddings; `rows` are the batch rows that do not fit."""


class NonFinite(RowsError):
    """NaN or inf in a row's embeddings or prefill logits: any selection made from them is meaningless."""


def _check_length(config, next_position: np.ndarray, max_new: int) -> None:
    """Prompt + new tokens must fit max_position_embeddings: refused, or warned once where RoPE is scaled."""
    text = config.text
    longest = int(np.max(next_position, initial=0)) + max_new
    limit = int(text.max_position_embeddings)
    if longest <= limit:
        return
    rows = np.flatnonzero(np.asarray(next_position) + max_new > limit).tolist()
    message = (f"generate: the longest prompt reaches position {int(np.max(next_position)) - 1} and "
               f"max_new_tokens={max_new} would take it to {longest}, past max_position_embeddings={limit} "
               f"of config.json")
    if text.rope_kind == "llama3" or float(text.rope_factor) != 1.0:
        if (limit, longest) not in _WARNED_LONG:
            _WARNED_LONG.add((limit, longest))
            warnings.warn(message + f" (RoPE is scaled: {text.rope_kind}, factor {text.rope_factor}; going on)")
        return
    raise PromptTooLong(message + f" (rows {rows}); shorten the prompt or lower max_new_tokens", rows)


@jax.jit
def _finite_rows(x):  # [B, ...] -> bool [B]
    return jnp.isfinite(x).reshape(x.shape[0], -1).all(axis=1)


def _check_finite(embeds, real_batch: int) -> None:
    """The vision side's output must be finite: a NaN would otherwise flow into every method's scores."""
    finite = to_host(_finite_rows(embeds))[:real_batch]
    if not finite.all():
        rows = np.flatnonzero(~finite).tolist()
        raise NonFinite(f"generate: the input embeddings of rows {rows} hold NaN or inf after the vision tower "
                        f"(check the weights' dtype range and pixel_values)", rows)


def _check_finite_logits(logits, real_batch: int, pruner) -> None:
    """The prefill's flag: a row whose hidden states overflowed inside the LLM (where an at-layer method
    scores) ends in non-finite logits; refuse it instead of answering from a meaningless selection."""
    finite = to_host(_finite_rows(logits))[:real_batch]
    if not finite.all():
        rows = np.flatnonzero(~finite).tolist()
        where = "" if pruner is None else f" (with {pruner.name}, whose selection then saw them too)"
        raise NonFinite(f"generate: the LLM's hidden states of rows {rows} overflowed to NaN or inf during the "
                        f"prefill{where}; check the weights' dtype range (float16 overflows; use bfloat16 or float32)",
                        rows)


def _pad_rows(inputs: dict, rows: int, pad: int) -> dict:
    """`rows` extra text-only rows (one attended pad token each), so the batch splits evenly over "data";
    their outputs are dropped."""
    if rows == 0:
        return inputs
    ids = np.asarray(inputs["input_ids"])
    mask = np.asarray(inputs.get("attention_mask", np.ones_like(ids)))
    extra_mask = np.zeros((rows, ids.shape[1]), mask.dtype)
    extra_mask[:, -1] = 1
    out = dict(inputs, input_ids=np.concatenate([ids, np.full((rows, ids.shape[1]), pad, ids.dtype)]),
               attention_mask=np.concatenate([mask, extra_mask]))
    if inputs.get("mm_token_type_ids") is not None:
        types = np.asarray(inputs["mm_token_type_ids"])
        out["mm_token_type_ids"] = np.concatenate([types, np.zeros((rows, types.shape[1]), types.dtype)])
    return out


def _first_rows(tree, batch: int):
    """Every [B, ...] array of an array or a dataclass of arrays cut to its first `batch` rows."""
    if dataclasses.is_dataclass(tree):
        return dataclasses.replace(tree, **{f.name: getattr(tree, f.name)[:batch] for f in dataclasses.fields(tree)
                                            if f.init and hasattr(getattr(tree, f.name), "shape")})
    return tree[:batch]


def generate(model, inputs: dict, pruner: PrunerSpec | None = None, max_new_tokens: int = 16, *,
             eos_token_id=None, pad_token_id: int | None = None, mesh=None) -> GenerateOutput:
    """Pruned greedy generation for a batch of processor outputs (see the module docstring).

    mesh: a `jax_pruning.parallel.make_mesh(data=D, model=M)` mesh. Every stage (vision, selection,
    prefill, decode) runs as one SPMD program over it: the batch (padded with dropped text-only rows
    to a multiple of D) and the vision crops / images split over "data", the weights as
    `models.load(path, mesh=mesh)` placed them (a model loaded without a mesh is placed here by the
    same rules), the KV cache batch on "data" and heads on "model". Results equal the one-device run.
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
    _check_rows(inputs)
    config = model.config
    check_family(pruner, config)
    n_layers = config.text.num_hidden_layers
    eos = tuple(int(e) for e in np.atleast_1d(eos_token_id)) if eos_token_id is not None else config.eos_token_id
    pad = int(pad_token_id if pad_token_id is not None else (config.pad_token_id or 0))
    stage, splits = stage_of(pruner, n_layers)
    if mesh is None:
        return _generate(model, inputs, pruner, int(max_new_tokens), eos, pad, stage, splits)
    with jax.set_mesh(mesh):
        if not params_on_mesh(model, mesh):
            shard_params(model, mesh)
        return _generate(model, inputs, pruner, int(max_new_tokens), eos, pad, stage, splits)


def _generate(model, inputs, pruner, max_new_tokens: int, eos, pad: int, stage: str,
              splits: tuple[int, ...]) -> GenerateOutput:
    config = model.config
    lm = model.language_model
    n_layers = config.text.num_hidden_layers
    real_batch = int(np.shape(inputs["input_ids"])[0]) if "input_ids" in inputs else 0
    rows = padded_batch_size(real_batch, active_mesh()) - real_batch
    inputs = _pad_rows(inputs, rows, pad)

    start = time.perf_counter()
    in_tower = pruner is not None and pruner.method.stage == IN_VISION_TOWER
    prepared = staging.stage(model, inputs, pad, evidence=in_tower and stage != AT_LLM_LAYER)
    jax.block_until_ready(prepared.inputs_embeds)
    prepare_seconds = time.perf_counter() - start
    vt = prepared.visual
    _check_length(config, to_host(prepared.next_position)[:real_batch], max_new_tokens)
    _check_finite(prepared.inputs_embeds, real_batch)
    budgets = compute_budgets(pruner, vt, n_stages=len(splits))

    mask = to_host(prepared.attention_mask).astype(bool)
    start = time.perf_counter()
    embeds, additions, keep, cand, tower_flops, merges = _select(pruner, stage, model, prepared, budgets, mask)
    jax.block_until_ready((embeds, keep, cand))
    prune_seconds = time.perf_counter() - start

    length = mask.shape[1]
    text = mask.sum(axis=1) - np.asarray(vt.valid).sum(axis=1)
    lengths = sequence_slots(length, segment_tokens(stage, budgets, text))

    batch = PrefillInputs(
        embeds=embeds, positions=prepared.position_ids, mask=prepared.attention_mask,
        additions=additions, visual_index=vt.index, visual_valid=vt.valid, visual_image=vt.image,
        keep_visual=keep, cand_visual=cand, fixed_visual=np.asarray(vt.valid) & (np.asarray(vt.kind) == KIND_NEWLINE),
        llm_keep=budgets.stage_keep,
    ).placed()
    next_position = place_batch(prepared.next_position)
    start = time.perf_counter()
    hilo = stage == BIAS_THEN_REMOVE
    logits, segments, visual_seen, kept_tokens = prefill(
        lm, batch, stage=stage, splits=splits, lengths=lengths,
        max_new=max_new_tokens, bias_value=float(pruner.bias) if hilo else 0.0,
        merge=bool(pruner.merge) if hilo else True,
        chooser=pruner.replace(keep_ratio=1.0) if stage == AT_LLM_LAYER else None,
    )
    jax.block_until_ready(logits)
    prefill_seconds = time.perf_counter() - start
    _check_finite_logits(logits, real_batch, pruner)
    # Keys each segment's cache holds per sample (read before decode takes the donated caches).
    kv_cache_tokens = [to_host(seg.key_valid.sum(axis=1))[:real_batch] for seg in segments]

    start = time.perf_counter()
    layout = tuple(segment_layout(stage, splits, n_layers, lengths))
    finished = place_batch(np.arange(len(mask)) >= real_batch)  # rows that only even the batch out
    tokens, _, steps = decode(lm, logits, segments, next_position, finished, layout=layout,
                              max_new=max_new_tokens, eos_ids=eos, pad_id=pad)
    tokens = to_host(tokens)[:real_batch]
    decode_seconds = time.perf_counter() - start

    visual_seen = to_host(visual_seen).astype(np.int32)[:real_batch]
    index = np.asarray(vt.index)
    kept = np.take_along_axis(to_host(kept_tokens), index, axis=1)
    labels = np.where(kept, KEPT, np.where(to_host(cand), CANDIDATE, DROPPED)).astype(np.int8)
    if merges is not None:
        holds, absorbed = merges
        labels = np.where(kept & holds, MERGED, np.where(~kept & absorbed, ABSORBED, labels)).astype(np.int8)
    labels[~np.asarray(vt.valid)] = DROPPED
    if rows:  # drop the rows that only evened the batch out
        vt, budgets, text, labels = (_first_rows(x, real_batch) for x in (vt, budgets, text, labels))
    stats = {
        "method": "none" if pruner is None else pruner.name,
        "keep_ratio": 1.0 if pruner is None else float(pruner.keep_ratio),
        "prepare_seconds": prepare_seconds,
        "prune_seconds": prune_seconds,
        "prefill_seconds": prefill_seconds,
        "decode_seconds": decode_seconds,
        "decode_steps": int(to_host(steps)) + 1,  # tokens generated per row before every row had stopped
        "visual_tokens_before": budgets.real + budgets.newlines,
        "candidates": budgets.candidates,
        "newlines": budgets.newlines,
        "sequence_slots": lengths,
        "compiles": compile_count(),
        "kv_cache_tokens": kv_cache_tokens,
        **flops_model.prefill_flops(config, vt, budgets, text, stage, splits, pruner, inputs,
                                    pruning=None if tower_flops is None else _first_rows(tower_flops, real_batch)),
    }
    return GenerateOutput(tokens=tokens, visual_tokens=visual_seen, stats=stats, visual=vt, visual_labels=labels)
