"""`jaxprune plan`: the per-device memory of a pruned `jp.generate` on a device mesh, computed abstractly.

    import jax_pruning as jp
    from jax_pruning.plan import plan_memory
    p = plan_memory("llava-next-8b", mesh="data=2,model=4", batch_size=32, device_memory="16GiB",
                    pruner=jp.pruner("mr_pruner", keep_ratio=0.1))
    print(p.table())            # weights / KV cache / activations / total per device, fits or not
    p.fits, p.largest_batch     # largest batch (a multiple of the data axis) that fits

Nothing is allocated and no device is needed: the parameter table comes from
`models.params.abstract_model` (under `nnx.eval_shape`) and the mesh is a
`jax.sharding.AbstractMesh`, so a 2 x 4 or a 8 x 8 mesh can be planned on one CPU.
Every figure is per device; "b" below is the batch per device (B / D, the batch
is split over "data"), "/M" a dimension split over the "model" axis.

Weights. Every param of the model at --dtype, placed by models/sharding.py
(`default_rules(config, fsdp)`, `partition_spec`): a param takes prod(dim / mesh
size of its spec's axis) elements per device, so tensor-parallel layers shrink
by M, small tensors (norms, biases of row-parallel layers, position tables)
stay replicated, and with fsdp the embed axes are split over "data" too.

KV cache. What the engine allocates (engine/generate.py, prefill.py): one k and
one v [b, S, Hkv(/M), hd] per layer at --dtype, S = the bucketed sequence slots
of the layer's segment + new tokens. The kept-token counts come from the
engine's own `budgets.compute_budgets` run on a synthetic token map of the image
(one image per sample), the slots from `budgets.sequence_slots` and the segments
from `prefill.segment_layout`: pre-LLM pruning (and none) keeps text + kept
visual tokens in every layer; FastV the full prompt in layers < K and the pruned
one after; Hi-Lo text + R in every layer after its compaction at L (its layers
< L held text + R + C until then: counted as a prefill transient). KV heads are
split over "model" when `sharding.kv_heads_axis` says so, else replicated.

Activations, per stage (the stages run one after another; each one's peak
counts with what is resident at that time):
  vision   LLaVA-NeXT: the batch's crops (1 + tiles per image, bucketed as
           staging.py does) split over "data", [crops, 577, 1024] through the CLIP
           tower: input pixels (float32), the residual, the normed input, q/k/v
           and the attention output (heads /M), the attention scores (see
           below), the MLP's fc1 output and activation (/M); then the projector
           ([crops, 576, D(/M)] x 3) and the packed inputs_embeds [b, T, D].
           Qwen: one unit per image, [patches, width] through the ViT with the
           full-attention blocks' scores and padding mask [units, P, P] (window
           blocks are smaller), the patch merger, and the inputs_embeds (+ the
           deepstack additions [3, b, T, D] for Qwen3-VL).
  select   pre-LLM selection (mr_pruner, gprune, hilo, tome, random): the
           inputs_embeds, the gathered visual features [b, Nv, D] and the
           selection's own temporaries, taken from XLA's memory analysis of
           `engine.select` compiled (on the CPU, from abstract inputs) for two
           samples, scaled to b (the selection is vmapped over the batch, its
           graphs are [Nv, Nv] per sample: linear in b); the selection runs
           on every device of the model axis alike (not split over "model").
  prefill  (while the KV cache it writes is resident) its inputs (inputs_embeds
           [b, T, D], positions, mask, deepstack additions), then per segment of
           L query rows: the residual [b, L, D], RoPE tables (float32), the
           causal mask [b, L, L] (bool; Hi-Lo adds a float32 bias when its bias
           is set), and the larger of the attention phase (normed input, q, k,
           v, output, scores) and the MLP phase (normed input, gate, up and
           their product [b, L, I/M]); Hi-Lo's uncompacted caches; the
           last-position logits [b, V] (float32).
  decode   (with the KV cache) the first logits, one token's hidden states,
           attention row [b, H/M, 1, S] and logits [b, V/M] (float32): small.

Attention scores (--attention):
  xla    what models/attention.py runs on GPU and TPU today: it calls
         `jax.nn.dot_product_attention` without `implementation=`, which in this
         JAX takes the XLA path (jax/_src/nn/functions.py: "defaults to XLA for
         now") and materialises the logits [b, H/M, L, S] in float32 plus the
         probabilities at --dtype, per layer. This is the default.
  fused  a flash-attention kernel (cuDNN / Pallas): no [L, S] score buffer (the
         masks the engine builds explicitly are still counted).
  cpu    the CPU path of models/attention.py: queries in blocks of 128, with
         CPU_SCORE_BUFFERS (causal: unrolled blocks overlap) or
         CPU_SCORE_BUFFERS_MAPPED (one block at a time) float32 buffers of one
         block's scores [b, H/M, 128, S] live at once, figures read off XLA's
         memory analysis of the embedded tiny models; up to 128 queries, the
         XLA path as above.

Total = weights + max(vision, select, KV + prefill, KV + decode), against
--device-memory: the memory XLA can use on one device (on GPUs JAX preallocates
75% of it by default: XLA_PYTHON_CLIENT_MEM_FRACTION). With fsdp every stage
also holds two gathered layers' weights (the running one and the prefetched
next). Not counted: XLA's own workspace (cuBLAS / cuDNN scratch), fragmentation,
collectives' buffers, and buffers of other programs kept alive by the caller.
The model is an estimate, checked against XLA's memory analysis on the CPU
(tests/test_plan.py): the weights and the KV cache exactly, the prefill's
and the vision stage's activations within 25% (--attention cpu). Nothing here
has been measured on a GPU or TPU.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from jax.sharding import AbstractMesh

from jax_pruning.parallel import mesh_axis_sizes
from jax_pruning.plan_stages import _decode, _local_widths, _prefill, _select, _vision

GiB = 1 << 30
ATTENTION = ("xla", "fused", "cpu")
QWEN_DEFAULT_VISUAL_TOKENS = 1280
DEFAULT_PROMPT_TOKENS = 60  # a VQA question with its chat template (benchmarks/shapes.py PROMPT_TOKENS)
DEFAULT_NEW_TOKENS = 16  # jp.generate's default
MAX_SEARCH_BATCH = 1 << 20

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_DTYPES = ("bfloat16", "float32", "float16")


# ---- parsing -----------------------------------------------------------------------------------------

def parse_memory(text) -> int:
    """'16GiB' / '80GB' / '141 GiB' / '512MiB' / a plain byte count -> bytes (GB = 1e9, GiB = 2^30)."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"device memory {text!r}: expected a size like 16GiB, 80GB, 141GiB or 512MiB")
        value, unit = float(match.group(1)), match.group(2).lower()
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"device memory {text!r} must be positive")
    return size


def parse_mesh(mesh) -> AbstractMesh:
    """'data=D,model=M' (either order; a missing axis is 1), a {axis: size} dict, or a (concrete or
    abstract) mesh with axes among "data" and "model" -> AbstractMesh (sizes (D, M), names ("data", "model"))."""
    if isinstance(mesh, str):
        sizes = mesh_axis_sizes(mesh)
        if None in sizes.values():
            raise ValueError(f"mesh {mesh!r}: the planner needs whole numbers (no 'all'), e.g. data=2,model=4")
    elif isinstance(mesh, Mapping):
        sizes = dict(mesh)
    elif hasattr(mesh, "shape"):
        sizes = dict(mesh.shape)
    else:
        raise ValueError(f"mesh {mesh!r}: expected 'data=D,model=M', a dict or a jax mesh")
    unknown = sorted(set(sizes) - {"data", "model"})
    if unknown:
        raise ValueError(f"mesh axes {unknown}: only 'data' and 'model' are known")
    for name, size in sizes.items():
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ValueError(f"mesh axis {name}={size!r}: sizes must be integers >= 1")
    return AbstractMesh((int(sizes.get("data", 1)), int(sizes.get("model", 1))), ("data", "model"))


def _dtype(dtype):
    import jax.numpy as jnp

    name = getattr(dtype, "__name__", None) or str(np.dtype(dtype) if not isinstance(dtype, str) else dtype)
    if name not in _DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(_DTYPES)}")
    return getattr(jnp, name)


def resolve_model(model) -> tuple[str, Any, int]:
    """A preset name, a model folder (or its config.json) or a ModelConfig -> (name, ModelConfig,
    default visual tokens per sample)."""
    from jax_pruning import presets
    from models.config import ModelConfig, load_config

    if isinstance(model, ModelConfig):
        name, config = model.model_type, model
    elif isinstance(model, str) and model in presets.PRESETS:
        preset = presets.get(model)
        return model, load_config(preset.config), preset.visual_tokens
    elif isinstance(model, (str, Path)) and Path(model).exists():
        name, config = str(model), load_config(model)
    else:
        raise ValueError(f"model {str(model)!r} is neither a model folder nor a known preset; known presets: "
                         f"{', '.join(presets.names())}")
    if not config.is_multimodal:
        raise ValueError(f"{name}: model_type {config.model_type!r} has no vision tower to plan for")
    return name, config, _default_visual_tokens(config)


def _default_visual_tokens(config) -> int:
    if config.model_type == "llava_next":
        from models.llava_layout import max_tokens_per_image

        return max_tokens_per_image(config.vision)
    return QWEN_DEFAULT_VISUAL_TOKENS


# ---- weights ---------------------------------------------------------------------------------------

_STACK = re.compile(r"^(?P<head>(?:.*/)?)(?P<kind>layers|blocks)/0/(?P<tail>.*)$")


def _reduced(config):
    """The same model with one LLM layer and one vision block (every other param unchanged)."""
    from models.vision_config import LlavaNextVisionConfig

    vision = config.vision
    if isinstance(vision, LlavaNextVisionConfig):
        vision = dataclasses.replace(vision, tower=dataclasses.replace(vision.tower, num_hidden_layers=1),
                                     feature_layers=(-1,), feature_layer_is_list=False)
    elif vision is not None:
        vision = dataclasses.replace(vision, depth=1, fullatt_block_indexes=(),
                                     deepstack_visual_indexes=(0,) * len(vision.deepstack_visual_indexes))
    return dataclasses.replace(config, text=dataclasses.replace(config.text, num_hidden_layers=1), vision=vision)


def _stack_depths(config) -> tuple[int, int]:
    vision = config.vision
    tower = getattr(vision, "tower", None)
    depth = tower.num_hidden_layers if tower is not None else getattr(vision, "depth", 0)
    return config.text.num_hidden_layers, depth


@functools.lru_cache(maxsize=16)
def param_table(config, dtype_name: str = "bfloat16") -> dict[str, tuple[tuple[int, ...], str]]:
    """{param path: (shape, dtype name)} of the whole model, exactly as `abstract_model(config, dtype)`
    has it. Built from a one-layer abstract model whose `layers/0` and `blocks/0` entries are repeated
    for every layer (all layers of a stack are alike): `nnx.eval_shape` of a whole 8B model takes ~20 s
    here, most of it in flax's per-param bookkeeping."""
    from flax import nnx

    from models.params import abstract_model

    model = abstract_model(_reduced(config), _dtype(dtype_name))
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    text_layers, vision_depth = _stack_depths(config)
    table = {}
    for path, var in flat:
        key = "/".join(str(p) for p in path)
        value = var.get_value()
        entry = (tuple(int(d) for d in value.shape), np.dtype(value.dtype).name)
        match = _STACK.match(key)
        if match is None:
            table[key] = entry
            continue
        vision = match["head"].startswith(("vision_tower/", "visual/"))
        for i in range(vision_depth if vision else text_layers):
            table[f"{match['head']}{match['kind']}/{i}/{match['tail']}"] = entry
    return table


def _local_elements(shape, spec, mesh_shape) -> int:
    n = 1
    for i, dim in enumerate(shape):
        axis = spec[i] if i < len(spec) else None
        names = axis if isinstance(axis, tuple) else ((axis,) if axis else ())
        div = math.prod(mesh_shape[a] for a in names)
        n *= -(-dim // div)
    return n


def weight_bytes(config, mesh, dtype="bfloat16", fsdp: bool = False) -> dict:
    """Parameters and bytes: total, per device under the mesh's placement, replicated part, and the
    largest LLM layer / vision block once gathered over "data" (what fsdp materialises per layer)."""
    from models.sharding import default_rules, partition_spec

    mesh = parse_mesh(mesh)
    table = param_table(config, _dtype(dtype).__name__)
    rules = default_rules(config, fsdp=fsdp)
    tp_rules = default_rules(config, fsdp=False)
    shape = dict(mesh.shape)
    total = per_device = replicated = count = 0
    layer = {"llm": 0, "vision": 0}
    for path, (dims, dtype_name) in table.items():
        item = np.dtype(dtype_name).itemsize
        n = math.prod(dims)
        count += n
        total += n * item
        spec = partition_spec(path, dims, mesh, rules)
        local = _local_elements(dims, spec, shape) * item
        per_device += local
        if not any(spec):
            replicated += n * item
        if re.search(r"(?:^|/)(layers|blocks)/0/", path):  # one layer of a stack, gathered over "data"
            vision = path.startswith(("vision_tower/", "visual/"))
            tp_local = _local_elements(dims, partition_spec(path, dims, mesh, tp_rules), shape) * item
            layer["vision" if vision else "llm"] += tp_local
    return {"parameters": count, "total": total, "per_device": per_device, "replicated": replicated,
            "gathered_llm_layer": layer["llm"], "gathered_vision_block": layer["vision"]}


# ---- tokens, budgets, slots ------------------------------------------------------------------------------

def _llava_tokens(config, visual_tokens: int):
    """One sample's VisualTokens for a square anyres image of about `visual_tokens` tokens: base g x g +
    an r x r tile grid with its newline column, r the largest with g^2 + r (r + 1) <= N (672 x 672 with
    the real pinpoints: r = 48, 2,928 tokens); crops 1 + ceil(r / g)^2."""
    from models.llava_layout import ImageGrid, image_tokens, max_tokens_per_image
    from models.visual_tokens import pack_visual_tokens

    vision = config.vision
    g = vision.tower.grid_side
    most = max_tokens_per_image(vision)
    if visual_tokens > most:
        raise ValueError(f"{visual_tokens} visual tokens: one LLaVA-NeXT image gives at most {most} with this "
                         f"model's pinpoints {list(vision.image_grid_pinpoints)}")
    rest = visual_tokens - g * g
    if rest < 2:
        raise ValueError(f"{visual_tokens} visual tokens: a LLaVA-NeXT image has its {g * g} base tokens plus "
                         f"at least a 1 x 1 tile grid with its newline ({g * g + 2})")
    r = int((math.isqrt(4 * rest + 1) - 1) // 2)
    crops_side = -(-r // g)
    grid = ImageGrid(crops_side, crops_side, r, r, 0, 0, g)
    tokens, _ = pack_visual_tokens([image_tokens(grid)], [1])
    return tokens, grid.num_crops


def _qwen_tokens(visual_tokens: int):
    from models.visual_tokens import VisualTokens

    n = int(visual_tokens)
    if n < 1:
        raise ValueError(f"visual tokens must be >= 1, got {visual_tokens}")
    ones = np.ones((1, n), bool)
    zeros = np.zeros((1, n), np.int32)
    return VisualTokens(index=np.arange(n, dtype=np.int32)[None], valid=ones, kind=zeros.astype(np.int8),
                        row=zeros, col=np.arange(n, dtype=np.int32)[None], image=zeros,
                        grid_rows=np.zeros((1, 1, 2), np.int32), grid_cols=np.zeros((1, 1, 2), np.int32),
                        frames=np.ones((1, 1), np.int32), frame=zeros, video=np.full((1, n), -1, np.int32))


@dataclasses.dataclass(frozen=True)
class Tokens:
    """Per-sample token counts and the engine's static sizes for one planned batch."""

    text: int
    visual: int  # visual tokens per sample (LLaVA-NeXT newlines included)
    visual_capacity: int  # Nv: bucketed visual slots
    length: int  # T: the staged (bucketed) prompt length
    seen: int  # tokens the last layers see: text + kept visual (+ newlines)
    candidates: int  # Hi-Lo's C (layers < L only)
    keep: int  # visual tokens the selection keeps (newlines excluded)
    stage: str  # the stage the prefill runs (jax_pruning.methods.declaration)
    splits: tuple  # LLM layers where tokens leave
    lengths: tuple  # sequence slots of each prefill segment
    segments: tuple  # ((start, stop, capacity S), ...) of the KV cache
    new_tokens: int
    crops: int  # LLaVA-NeXT: crops per image; Qwen: patches per image (bucketed)

    @property
    def length0(self) -> int:
        """Slots of the first prefill segment."""
        return self.lengths[0]

    @property
    def length1(self) -> int:
        """Slots of the last prefill segment."""
        return self.lengths[-1]


def plan_tokens(config, visual_tokens: int, prompt_tokens: int, new_tokens: int, pruner=None) -> Tokens:
    """The engine's own arithmetic on a synthetic batch of identical samples."""
    from jax_pruning.engine.buckets import bucket
    from jax_pruning.engine.budgets import compute_budgets, segment_tokens, sequence_slots
    from jax_pruning.engine.generate import check_family, stage_of
    from jax_pruning.engine.prefill import segment_layout

    if prompt_tokens < 1:
        raise ValueError(f"prompt tokens must be >= 1, got {prompt_tokens}")
    if new_tokens < 1:
        raise ValueError(f"new tokens must be >= 1, got {new_tokens}")
    check_family(pruner, config)
    if config.model_type == "llava_next":
        tokens, crops = _llava_tokens(config, visual_tokens)
    else:
        tokens = _qwen_tokens(visual_tokens)
        crops = bucket(int(visual_tokens) * config.vision.merge_unit, 16)
    n_visual = int(tokens.valid.sum())
    n_layers = config.text.num_hidden_layers
    stage, splits = stage_of(pruner, n_layers)
    budgets = compute_budgets(pruner, tokens, n_stages=len(splits))
    full = prompt_tokens + n_visual
    length = bucket(full, 16)
    seen = prompt_tokens + int(budgets.seen[0])
    lengths = sequence_slots(length, segment_tokens(stage, budgets, np.array([prompt_tokens])))
    segments = tuple((start, stop, base + new_tokens)
                     for start, stop, base in segment_layout(stage, splits, n_layers, lengths))
    return Tokens(text=prompt_tokens, visual=n_visual, visual_capacity=bucket(n_visual, 16), length=length,
                  seen=seen, candidates=int(budgets.candidates[0]), keep=int(budgets.keep[0]), stage=stage,
                  splits=splits, lengths=lengths, segments=segments, new_tokens=new_tokens,
                  crops=crops)


@dataclasses.dataclass
class MemoryPlan:
    model: str
    mesh: dict
    dtype: str
    batch_size: int
    method: str
    keep_ratio: float
    fsdp: bool
    attention: str
    tokens: Tokens
    parameters: int
    weights_total: int  # whole model, all devices together
    weights: int  # per device
    kv_cache: int
    stages: dict  # stage -> {part: bytes}
    peak_stage: str
    activations: int  # the peak stage's activations
    total: int
    device_memory: int | None
    fits: bool | None
    largest_batch: int | None

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["tokens"] = dataclasses.asdict(self.tokens)
        out["stage_totals"] = {k: sum(v.values()) for k, v in self.stages.items()}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def table(self) -> str:
        def gib(x):
            return f"{x / GiB:8.2f} GiB"

        mesh = ",".join(f"{k}={v}" for k, v in self.mesh.items())
        t = self.tokens
        method = "none" if self.method == "none" else f"{self.method} keep={self.keep_ratio:g}"
        kv_layers = ", ".join(f"layers {a}-{b - 1}: {s} slots" for a, b, s in t.segments)
        lines = [
            f"{self.model}  mesh {mesh}  {self.dtype}{'  fsdp' if self.fsdp else ''}  batch {self.batch_size} "
            f"({self.batch_size // self.mesh['data']} per device)  {method}  attention={self.attention}",
            f"tokens per sample: {t.text} text + {t.visual} visual -> {t.seen} seen by the last layers; "
            f"sequence slots {t.length} staged, {t.length0}/{t.length1} in the prefill; KV {kv_layers}",
            f"parameters {self.parameters / 1e9:.2f} B = {self.weights_total / GiB:.2f} GiB in all",
            "",
            "per device",
            f"  weights          {gib(self.weights)}",
            f"  KV cache         {gib(self.kv_cache)}",
            f"  activations      {gib(self.activations)}   (peak stage: {self.peak_stage})",
        ]
        for stage, parts in self.stages.items():
            if parts:
                lines.append(f"    {stage:<14} {gib(sum(parts.values()))}   "
                             + ", ".join(f"{k} {v / GiB:.2f}" for k, v in parts.items() if v >= GiB / 1000))
        if self.device_memory:
            lines.append(f"  total            {gib(self.total)} of {self.device_memory / GiB:.2f} GiB "
                         f"({100 * self.total / self.device_memory:.0f}%)")
            lines.append("")
            lines.append("fits" if self.fits else "does not fit")
            lines.append(f"largest batch that fits: {self.largest_batch}"
                         + ("" if self.largest_batch else " (the weights and one batch per device do not fit)"))
        else:
            lines.append(f"  total            {gib(self.total)}")
        return "\n".join(lines)


def _estimate(config, mesh, batch, tok, dtype_name, fsdp, attention, pruner, weights) -> tuple[int, dict, str, int]:
    import jax.numpy as jnp

    item = np.dtype(jnp.dtype(dtype_name)).itemsize
    data = dict(mesh.shape)["data"]
    b = batch // data
    loc = _local_widths(config, mesh)
    hd = config.text.head_dim
    kv = sum((stop - start) * 2 * b * s * loc.kv_heads * hd * item for start, stop, s in tok.segments)
    stages = {"vision": _vision(config, loc, tok, batch, data, item, attention),
              "select": _select(config, tok, b, item, dtype_name, pruner),
              "prefill": _prefill(config, loc, tok, b, item, attention, pruner),
              "decode": _decode(config, loc, tok, b, item)}
    if fsdp and data > 1:
        stages["vision"]["gathered weights (fsdp)"] = 2 * weights["gathered_vision_block"]
        for stage in ("prefill", "decode"):
            stages[stage]["gathered weights (fsdp)"] = 2 * weights["gathered_llm_layer"]
    resident = {"vision": 0, "select": 0, "prefill": kv, "decode": kv}
    peak_stage = max(stages, key=lambda s: resident[s] + sum(stages[s].values()))
    activations = sum(stages[peak_stage].values())
    return kv, stages, peak_stage, weights["per_device"] + resident[peak_stage] + activations


def plan_memory(model, *, mesh="data=1,model=1", batch_size: int = 1, device_memory=None,
                visual_tokens: int | None = None, prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
                new_tokens: int = DEFAULT_NEW_TOKENS, pruner=None, dtype="bfloat16", fsdp: bool = False,
                attention: str = "xla") -> MemoryPlan:
    """Plan one generate call (see the module docstring). model: a preset name, a model folder or a
    ModelConfig; mesh: 'data=D,model=M', a dict or a mesh; device_memory: bytes or '16GiB' (None: no
    verdict, no search); pruner: `jp.pruner(...)` or None."""
    from jax_pruning.registry import PrunerSpec

    name, config, default_visual = resolve_model(model)
    mesh = parse_mesh(mesh)
    dtype_name = _dtype(dtype).__name__
    if attention not in ATTENTION:
        raise ValueError(f"attention {attention!r}: expected one of {', '.join(ATTENTION)}")
    if pruner is not None and not isinstance(pruner, PrunerSpec):
        raise ValueError(f"pruner must come from jax_pruning.pruner(...) or be None, got {pruner!r}")
    data = dict(mesh.shape)["data"]
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1 or batch_size % data:
        raise ValueError(f"batch size {batch_size} must be a positive multiple of the data axis ({data})")
    memory = None if device_memory is None else parse_memory(device_memory)
    tok = plan_tokens(config, default_visual if visual_tokens is None else int(visual_tokens), int(prompt_tokens),
                      int(new_tokens), pruner)
    weights = weight_bytes(config, mesh, dtype_name, fsdp)
    estimate = functools.partial(_estimate, config, mesh, tok=tok, dtype_name=dtype_name, fsdp=fsdp,
                                 attention=attention, pruner=pruner, weights=weights)
    kv, stages, peak_stage, total = estimate(batch=int(batch_size))
    largest = fits = None
    if memory is not None:
        fits = total <= memory
        largest = _largest_batch(lambda batch: estimate(batch=batch)[3], data, memory)
    return MemoryPlan(
        model=name, mesh=dict(mesh.shape), dtype=dtype_name, batch_size=int(batch_size),
        method="none" if pruner is None else pruner.name,
        keep_ratio=1.0 if pruner is None else float(pruner.keep_ratio), fsdp=bool(fsdp), attention=attention,
        tokens=tok, parameters=weights["parameters"], weights_total=weights["total"], weights=weights["per_device"],
        kv_cache=kv, stages=stages, peak_stage=peak_stage, activations=sum(stages[peak_stage].values()),
        total=total, device_memory=memory, fits=fits, largest_batch=largest,
    )


def _largest_batch(total_at, data: int, memory: int) -> int:
    """The largest multiple of `data` whose total fits (0 if none); totals grow with the batch."""
    if total_at(data) > memory:
        return 0
    low, high = 1, 2
    while high * data <= MAX_SEARCH_BATCH and total_at(high * data) <= memory:
        low, high = high, high * 2
    if high * data > MAX_SEARCH_BATCH:
        return low * data
    while high - low > 1:  # total_at(low) fits, total_at(high) does not
        mid = (low + high) // 2
        low, high = (mid, high) if total_at(mid * data) <= memory else (low, mid)
    return low * data
