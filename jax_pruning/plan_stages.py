"""Per-stage activation estimates of the memory planner (`jax_pruning.plan`): vision, selection,
prefill and decode on one device of the mesh. The assumptions are in plan.py's module docstring."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from jax_pruning.methods.declaration import AT_LLM_LAYER, BIAS_THEN_REMOVE, IN_VISION_TOWER
from models.tower_evidence import evidence_widths

if TYPE_CHECKING:
    from jax_pruning.plan import Tokens

CPU_QUERY_BLOCK = 128  # models.attention.QUERY_BLOCK
# float32 buffers of one query block's scores live at once in the CPU attention (XLA's memory analysis of
# the embedded tiny models' prefills): causal blocks are unrolled and overlap, the others go one at a time.
CPU_SCORE_BUFFERS = 3
CPU_SCORE_BUFFERS_MAPPED = 2


# ---- activations ------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Local:
    """Per-device widths: the model axis splits heads / MLP / vocab when the rules do."""

    heads: int
    kv_heads: int
    mlp: int
    vocab: int
    vision_heads: int
    vision_width: int  # vision q/k/v width (heads * head_dim) per device
    vision_mlp: int
    projector: int  # LLaVA projector's hidden / Qwen merger's fc1 width per device


def _local_widths(config, mesh) -> _Local:
    from models.sharding import default_rules, kv_heads_axis

    rules = default_rules(config)
    model = dict(mesh.shape).get("model", 1)
    text = config.text

    def split(logical, dim, unit_count=None):
        return (unit_count or dim) // model if rules.mesh_axis(logical, dim, mesh) else (unit_count or dim)

    vision = config.vision
    tower = getattr(vision, "tower", vision)
    if config.model_type == "llava_next":
        v_heads, v_hd, v_mlp = tower.num_attention_heads, tower.head_dim, tower.intermediate_size
        projector = text.hidden_size
    else:
        v_heads, v_hd, v_mlp = vision.num_heads, vision.head_dim, vision.intermediate_size
        projector = vision.hidden_size * vision.merge_unit
    v_local_heads = split("vision_heads", v_heads * v_hd, v_heads)
    return _Local(
        heads=split("heads", text.num_attention_heads * text.head_dim, text.num_attention_heads),
        kv_heads=text.num_key_value_heads // model if kv_heads_axis(config, mesh) else text.num_key_value_heads,
        mlp=split("mlp", text.intermediate_size),
        vocab=split("vocab", text.vocab_size),
        vision_heads=v_local_heads,
        vision_width=v_local_heads * v_hd,
        vision_mlp=split("vision_mlp", v_mlp),
        projector=split("vision_mlp", projector),
    )


def _scores(attention: str, b: int, heads: int, queries: int, keys: int, item: int, units: int = 1,
            causal: bool = False) -> int:
    """Bytes of the attention scores live at once for `units` independent attentions of b x heads."""
    if attention == "fused":
        return 0
    if attention == "cpu" and queries > CPU_QUERY_BLOCK:
        buffers = CPU_SCORE_BUFFERS if causal else CPU_SCORE_BUFFERS_MAPPED
        return buffers * b * heads * CPU_QUERY_BLOCK * keys * 4 * units
    return b * heads * queries * keys * (4 + item) * units  # logits (float32) + probabilities


def _llm_segment(c, loc: _Local, b: int, rows: int, item: int, attention: str, *, bias: bool = False,
                 causal: bool = True) -> dict:
    """Live bytes while the layers of one prefill segment run on `rows` query rows (keys = rows)."""
    d, hd = c.hidden_size, c.head_dim
    hidden = b * rows * d * item
    q = b * rows * loc.heads * hd * item
    kv = 2 * b * rows * loc.kv_heads * hd * item
    attn = q + kv + _scores(attention, b, loc.heads, rows, rows, item, causal=causal)
    if attention == "cpu" and rows > CPU_QUERY_BLOCK:
        attn += b * (-(-rows // CPU_QUERY_BLOCK) * CPU_QUERY_BLOCK) * rows  # the mask, re-laid out per block
    mlp = hidden + 3 * b * rows * loc.mlp * item  # normed input, gate, up, act(gate) * up
    return {
        "residual": hidden,
        "rope tables": 2 * b * rows * hd * 4,
        "attention mask": b * rows * rows + (b * rows * rows * 4 if bias else 0),
        "layer (attention phase)" if attn >= mlp else "layer (MLP phase)": max(attn, mlp),
    }


def _prefill(config, loc: _Local, tok: Tokens, b: int, item: int, attention: str, pruner) -> dict:
    c = config.text
    t, d = tok.length, c.hidden_size
    deepstack = len(getattr(config.vision, "deepstack_visual_indexes", ()) or ())
    rope_rows = 3 if c.uses_mrope else 1
    inputs = {
        "inputs_embeds": b * t * d * item,
        "positions and mask": b * t * 4 * (rope_rows + 1) + b * tok.visual_capacity * 12,
    }
    if deepstack:
        inputs["deepstack additions"] = deepstack * b * t * d * item
    hilo = tok.stage == BIAS_THEN_REMOVE
    bias = hilo and pruner is not None and float(pruner.bias) != 0.0
    first = _llm_segment(c, loc, b, tok.lengths[0], item, attention, bias=bias, causal=not hilo)
    segments = [first] + [_llm_segment(c, loc, b, n, item, attention) for n in tok.lengths[1:]]
    transient = {}
    if hilo:  # layers < L wrote text + R + C; compacted into new caches at L
        per_layer = 2 * b * (tok.length0 + tok.new_tokens) * loc.kv_heads * c.head_dim * item
        transient["Hi-Lo caches before compaction"] = tok.splits[0] * per_layer
    peak = max(segments, key=lambda s: sum(s.values()))
    parts = {**inputs, **peak, **transient, "logits": b * c.vocab_size * 4}
    return parts


def _decode(config, loc: _Local, tok: Tokens, b: int, item: int) -> dict:
    c = config.text
    slots = max(s for _, _, s in tok.segments)
    step = (b * c.hidden_size * item * 3 + b * loc.heads * slots * (4 + item) + 3 * b * loc.mlp * item
            + 2 * b * loc.vocab * 4 + b * slots * len(tok.segments))
    return {"first logits": b * c.vocab_size * 4, "one token": step}


def _peak(persistent: dict, phases: dict) -> dict:
    """persistent parts + the parts of the largest phase (each phase: {part: bytes})."""
    name = max(phases, key=lambda k: sum(phases[k].values()))
    return {**persistent, **{f"{name}: {part}": v for part, v in phases[name].items()}}


def _vision(config, loc: _Local, tok: Tokens, batch: int, data: int, item: int, attention: str) -> dict:
    from jax_pruning.engine.buckets import bucket

    b = -(-batch // data)
    d = config.text.hidden_size
    output = {"inputs_embeds (output)": b * tok.length * d * item}  # the stage's result, allocated throughout
    packing = {"language embeddings": b * tok.length * d * item,
               "packed visual features": b * tok.visual_capacity * d * item}
    if config.model_type == "llava_next":
        tower = config.vision.tower
        n = -(-bucket(batch * tok.crops, 1) // data)  # crops per device
        p, width, g2 = tower.num_patches + 1, tower.hidden_size, tower.num_patches
        hidden = n * p * width * item
        attn = 4 * n * p * loc.vision_width * item + _scores(attention, n, loc.vision_heads, p, p, item)  # q, k, v, out
        mlp = hidden + 2 * n * p * loc.vision_mlp * item  # normed input, fc1 output, activation
        persistent = {"pixels (float32)": n * tower.num_channels * tower.image_size ** 2 * 4, **output}
        phases = {
            "tower": {"residual": hidden, "layer": max(attn, mlp)},
            "projector": {"features": n * g2 * width * item, "hidden": 2 * n * g2 * loc.projector * item,
                          "output": n * g2 * d * item},
            "packing": {"projector output": n * g2 * d * item, **packing},
        }
        return _peak(persistent, phases)
    vision = config.vision
    units, p = b, tok.crops  # one unit per image, its patches (bucketed)
    width = vision.hidden_size
    hidden = units * p * width * item
    padding_mask = 0 if attention == "cpu" else units * p * p  # [U, 1, P, P] bool, built outside the kernel
    # the CPU path maps over units (one at a time); elsewhere all units' scores at once
    scores = _scores(attention, 1 if attention == "cpu" else units, loc.vision_heads, p, p, item)
    attn = 4 * units * p * loc.vision_width * item + padding_mask + scores
    mlp = hidden + (3 if vision.family == "qwen2_5_vl" else 2) * units * p * loc.vision_mlp * item
    merged = units * (p // vision.merge_unit)
    deepstack = len(vision.deepstack_visual_indexes)
    stacked = {"deepstack features": deepstack * merged * d * item} if deepstack else {}
    persistent = {"pixels (float32)": units * p * vision.patch_dim * 4,
                  "rope tables": 2 * units * p * vision.head_dim * 4, **output}
    if deepstack:
        persistent["deepstack additions (output)"] = deepstack * b * tok.length * d * item
        packing["deepstack zeros and scatter"] = 2 * b * tok.length * d * item
    phases = {
        "tower": {"residual": hidden, "block": max(attn, mlp), **stacked},
        "merger": {"input": merged * vision.merge_unit * width * item,
                   "hidden": 2 * merged * loc.projector * item, "output": merged * d * item, **stacked},
        "packing": {"merged features": merged * d * item, **stacked, **packing},
    }
    return _peak(persistent, phases)


@functools.lru_cache(maxsize=32)
def _selection_temp(spec, tok_key: tuple, hidden: int, dtype_name: str, samples: int) -> int:
    """XLA's temp bytes of the pre-LLM selection compiled (CPU, abstract inputs) for `samples` samples."""
    import jax
    import jax.numpy as jnp

    from jax_pruning.engine.select import _merge_group, _select_masks, selection_key

    nv, keep, tokens = tok_key
    S = jax.ShapeDtypeStruct
    x = S((samples, nv, hidden), getattr(jnp, dtype_name))
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        if spec.method.merge is not None:
            lowered = _merge_group.lower(spec.method.merge, x, S((samples, nv), bool), k=keep)
        else:
            maps = (S((samples, nv), bool), S((samples, nv), jnp.int8), S((samples, nv), jnp.int32),
                    S((samples, nv), jnp.int32))
            prompt = (S((samples, tokens, hidden), getattr(jnp, dtype_name)), S((samples, tokens), bool))
            time = (S((samples, nv), jnp.int32), S((samples, 1), jnp.int32), S((samples, nv), jnp.int32),
                    S((samples, nv), jnp.int32))  # item, per-item budgets, frame, previous slot
            lowered = _select_masks.lower(selection_key(spec), x, *maps, *[S((samples,), jnp.int32)] * 4, *prompt,
                                          time)
        analysis = lowered.compile().memory_analysis()
    return int(analysis.temp_size_in_bytes)


@functools.lru_cache(maxsize=32)
def _tower_selection_temp(spec, nv: int, widths: tuple[int, int, int], samples: int) -> int:
    """XLA's temp bytes of an in-tower selection compiled (CPU, abstract inputs) for `samples` samples, all of
    a sample's tokens in one group (the bound: groups split the work)."""
    import jax
    import jax.numpy as jnp

    from jax_pruning.engine.select import selection_key
    from jax_pruning.engine.tower import _tower_select

    heads, key_width, hidden = widths
    S = jax.ShapeDtypeStruct
    f32 = jnp.float32
    with jax.default_device(jax.devices("cpu")[0]):
        lowered = _tower_select.lower(selection_key(spec), S((samples, nv, heads), f32), S((samples, nv, key_width), f32),
                                      S((samples, nv, hidden), f32), S((samples, 1, nv), jnp.int32),
                                      S((samples, 1, nv), bool), S((samples, 1), jnp.int32), main=hidden)
        return int(lowered.compile().memory_analysis().temp_size_in_bytes)


def _select(config, tok: Tokens, b: int, item: int, dtype_name: str, pruner) -> dict:
    if pruner is None or tok.stage == AT_LLM_LAYER:  # no selection before the LLM
        return {}
    if pruner.method.stage == IN_VISION_TOWER:
        widths = evidence_widths(config)
        temp = b * _tower_selection_temp(pruner, tok.visual_capacity, widths, 2) // 2
        per_slot = widths[0] + widths[1] + widths[2]
        return {"inputs_embeds": b * tok.length * config.text.hidden_size * item,
                "tower evidence": b * tok.visual_capacity * per_slot * 4, "selection temporaries (XLA)": temp}
    d = config.text.hidden_size
    key = (tok.visual_capacity, max(tok.keep, 1), tok.length)
    # per sample as compiled for two (b = 1: for one); checked against a compile for 32 samples (MR-Pruner,
    # LLaVA-NeXT-8B shapes): 6,915 MiB either way
    if b == 1:
        temp = _selection_temp(pruner, key, d, dtype_name, 1)
    else:
        temp = b * _selection_temp(pruner, key, d, dtype_name, 2) // 2
    return {"inputs_embeds": b * tok.length * d * item, "visual features": b * tok.visual_capacity * d * item,
            "selection temporaries (XLA)": temp}


# ---- the plan -------------------------------------------------------------------------------------------

