"""Where every parameter lives on a device mesh: logical axes per layer type, mapped to mesh axes.

Each weight's axes are named once, by layer type, with *logical* names
(`embed`, `heads`, `kv_heads`, `mlp`, `vocab`, and the vision tower's
`vision_embed`, `vision_heads`, `vision_mlp`). A `ShardingRules` maps logical
names to mesh axes; the default is Megatron-style tensor parallelism on the
"model" axis:

  column-parallel   q/k/v, gate/up, vision qkv / fc1 / projector in  [embed, heads|mlp]
  row-parallel      o, down, vision proj / fc2                      [heads|mlp, embed]
  vocab-parallel    embedding [vocab, embed] and lm_head [embed, vocab]

and everything else (norms, biases of row-parallel layers, small tables)
replicated. With `fsdp=True` the `embed` axes go to "data" too, so the weights
are split over every device of a 2-D mesh (for models that do not fit the
model axis alone); XLA gathers them per layer.

A logical axis is split only when the dimension divides evenly, in whole
heads for the head axes: a GQA/MQA model with fewer KV heads than the model
axis keeps its K/V projections (and KV cache) replicated over "model" instead
of cutting a head in two. The computation is the same SPMD program whatever
the placement: sharding changes where bytes live, never the result.

This module imports no pruning code and no converter: `models.load(..., mesh=)`
and the memory planner both read it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# (regex on the '/'-joined param path, logical axis per dimension). First match wins; no match = replicated.
LOGICAL_AXES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    # language model (models/decoder.py)
    (r".*embed_tokens/embedding", ("vocab", "embed")),
    (r".*lm_head/kernel", ("embed", "vocab")),
    (r".*self_attn/q_proj/kernel", ("embed", "heads")),
    (r".*self_attn/q_proj/bias", ("heads",)),
    (r".*self_attn/[kv]_proj/kernel", ("embed", "kv_heads")),
    (r".*self_attn/[kv]_proj/bias", ("kv_heads",)),
    (r".*self_attn/o_proj/kernel", ("heads", "embed")),
    (r"(language_model/)?layers/\d+/mlp/(gate|up)_proj/kernel", ("embed", "mlp")),
    (r"(language_model/)?layers/\d+/mlp/down_proj/kernel", ("mlp", "embed")),
    # CLIP tower (LLaVA-NeXT): separate q/k/v, out_proj, fc1/fc2
    (r"vision_tower/.*self_attn/[qkv]_proj/kernel", ("vision_embed", "vision_heads")),
    (r"vision_tower/.*self_attn/[qkv]_proj/bias", ("vision_heads",)),
    (r"vision_tower/.*self_attn/out_proj/kernel", ("vision_heads", "vision_embed")),
    (r"vision_tower/.*mlp/fc1/kernel", ("vision_embed", "vision_mlp")),
    (r"vision_tower/.*mlp/fc1/bias", ("vision_mlp",)),
    (r"vision_tower/.*mlp/fc2/kernel", ("vision_mlp", "vision_embed")),
    # Qwen ViT blocks: fused qkv, proj, MLP (fc / linear_fc / SwiGLU)
    # fused [q | k | v]: split in whole heads (XLA regroups them for the (3, H, hd) view)
    (r"visual/blocks/\d+/attn/qkv/kernel", ("vision_embed", "vision_heads")),
    (r"visual/blocks/\d+/attn/qkv/bias", ("vision_heads",)),
    (r"visual/blocks/\d+/attn/proj/kernel", ("vision_heads", "vision_embed")),
    (r"visual/blocks/\d+/mlp/(fc1|linear_fc1|gate_proj|up_proj)/kernel", ("vision_embed", "vision_mlp")),
    (r"visual/blocks/\d+/mlp/(fc1|linear_fc1|gate_proj|up_proj)/bias", ("vision_mlp",)),
    (r"visual/blocks/\d+/mlp/(fc2|linear_fc2|down_proj)/kernel", ("vision_mlp", "vision_embed")),
    # projector / patch mergers: a 2-layer MLP, column- then row-parallel
    (r"multi_modal_projector/linear_1/kernel", ("vision_embed", "vision_mlp")),
    (r"multi_modal_projector/linear_1/bias", ("vision_mlp",)),
    (r"multi_modal_projector/linear_2/kernel", ("vision_mlp", "embed")),
    (r"visual/(merger|deepstack_merger_list/\d+)/(fc1|linear_fc1)/kernel", ("vision_mlp_in", "vision_mlp")),
    (r"visual/(merger|deepstack_merger_list/\d+)/(fc1|linear_fc1)/bias", ("vision_mlp",)),
    (r"visual/(merger|deepstack_merger_list/\d+)/(fc2|linear_fc2)/kernel", ("vision_mlp", "embed")),
)
_COMPILED = tuple((re.compile(p), axes) for p, axes in LOGICAL_AXES)

HEAD_AXES = ("heads", "kv_heads", "vision_heads")


@dataclasses.dataclass(frozen=True)
class ShardingRules:
    """Logical axis -> mesh axis (None = replicated) and the head sizes that make head axes whole."""

    axes: Mapping[str, str | None]
    head_dim: int = 1  # language model
    vision_head_dim: int = 1

    def mesh_axis(self, logical: str | None, dim: int, mesh: Mesh) -> str | None:
        """The mesh axis for one dimension, or None when it is absent or the dimension does not split evenly."""
        axis = self.axes.get(logical) if logical else None
        if axis is None or axis not in mesh.shape or mesh.shape[axis] == 1:
            return None
        size = mesh.shape[axis]
        unit = {"heads": self.head_dim, "kv_heads": self.head_dim, "vision_heads": self.vision_head_dim}.get(logical, 1)
        return axis if dim % unit == 0 and (dim // unit) % size == 0 else None


def default_rules(config, fsdp: bool = False) -> ShardingRules:
    """Tensor parallelism on "model"; with fsdp, the embed axes over "data" as well."""
    embed = "data" if fsdp else None
    axes = {
        "vocab": "model", "heads": "model", "kv_heads": "model", "mlp": "model",
        "vision_heads": "model", "vision_mlp": "model",
        "embed": embed, "vision_embed": embed, "vision_mlp_in": embed,
    }
    text = config.text
    vision = getattr(config, "vision", None)
    tower = getattr(vision, "tower", vision)  # LLaVA-NeXT wraps its CLIP config
    return ShardingRules(axes=axes, head_dim=text.head_dim, vision_head_dim=tower.head_dim if tower else 1)


def logical_axes(path: str, ndim: int) -> tuple[str | None, ...]:
    """Logical axis names of the param at `path` ('/'-joined nnx path); unnamed axes are None."""
    for regex, axes in _COMPILED:
        if regex.fullmatch(path) and len(axes) == ndim:
            return axes
    return (None,) * ndim


def partition_spec(path: str, shape: tuple[int, ...], mesh: Mesh, rules: ShardingRules) -> PartitionSpec:
    """The PartitionSpec of one param; a mesh axis is used at most once per spec."""
    used: set[str] = set()
    spec = []
    for logical, dim in zip(logical_axes(path, len(shape)), shape):
        axis = rules.mesh_axis(logical, dim, mesh)
        if axis in used:
            axis = None
        if axis is not None:
            used.add(axis)
        spec.append(axis)
    while spec and spec[-1] is None:
        spec.pop()
    return PartitionSpec(*spec)


def param_shardings(shapes: Mapping[str, tuple[int, ...]], mesh: Mesh, rules: ShardingRules) -> dict[str, NamedSharding]:
    """{param path: NamedSharding} for a flat shape table (`models.params.flat_param_shapes`)."""
    return {path: NamedSharding(mesh, partition_spec(path, tuple(shape), mesh, rules)) for path, shape in shapes.items()}


def kv_heads_axis(config, mesh: Mesh, rules: ShardingRules | None = None) -> str | None:
    """Mesh axis of the KV cache's head axis: the k/v projections' axis (None = replicated)."""
    rules = default_rules(config) if rules is None else rules
    text = config.text
    return rules.mesh_axis("kv_heads", text.num_key_value_heads * text.head_dim, mesh)


# ---- activations: placement under the mesh in context (`with jax.set_mesh(mesh)`) -----------------

DATA = "data"


def active_mesh() -> Mesh | None:
    """The concrete mesh set by `jax.set_mesh` (the engine sets it), or None: one device."""
    mesh = jax.sharding.get_mesh()
    return None if mesh is None or mesh.empty else mesh


def batch_spec(ndim: int, batch_axis: int = 0) -> PartitionSpec:
    """"data" at `batch_axis` (negative: from the end) of an ndim-D array, the rest unsplit."""
    return PartitionSpec(*([None] * (batch_axis % ndim) + [DATA]))


def place(x, spec: PartitionSpec = PartitionSpec()):
    """Host data (whole on every process) -> a global array at `spec` under the active mesh, each
    device receiving only its slice; without a mesh, a plain device array. None stays None."""
    if x is None:
        return None
    mesh = active_mesh()
    if mesh is None:
        return jnp.asarray(x)
    sharding = NamedSharding(mesh, spec)
    if isinstance(x, jax.Array) and (x.is_fully_addressable or x.sharding == sharding):
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def place_batch(x, batch_axis: int = 0):
    """`place` split over "data" along the declared batch axis (replicated when that axis does not
    divide evenly, e.g. 3 images on 2 devices: still correct, just not split)."""
    if x is None:
        return None
    mesh = active_mesh()
    data = 1 if mesh is None else mesh.shape.get(DATA, 1)
    if np.ndim(x) == 0 or np.shape(x)[batch_axis] % data:
        return place(x)
    return place(x, batch_spec(np.ndim(x), batch_axis))


def constrain(x, spec: PartitionSpec):
    """Inside jit: pin `x` to `spec` under the mesh in context; a no-op without a mesh or for None."""
    if x is None or jax.sharding.get_abstract_mesh().empty:
        return x
    return jax.lax.with_sharding_constraint(x, spec)


def constrain_batch(x, batch_axis: int = 0):
    """`constrain` split over "data" along `batch_axis` (left alone when it does not divide evenly)."""
    mesh = jax.sharding.get_abstract_mesh()
    if x is None or mesh.empty or x.shape[batch_axis] % dict(mesh.shape).get(DATA, 1):
        return x
    return constrain(x, batch_spec(x.ndim, batch_axis))


def kv_cache_spec(text_config) -> PartitionSpec:
    """KV cache [B, S, Hkv, hd] inside jit: batch on "data", heads on "model" when they split evenly."""
    mesh = jax.sharding.get_abstract_mesh()
    model = 1 if mesh.empty else dict(mesh.shape).get("model", 1)
    heads = "model" if model > 1 and text_config.num_key_value_heads % model == 0 else None
    return PartitionSpec(DATA, None, heads, None)


# ---- a model already in memory ------------------------------------------------------------------

def _flat_params(model):
    from flax import nnx

    return nnx.to_flat_state(nnx.state(model, nnx.Param))


def params_on_mesh(model, mesh: Mesh) -> bool:
    """Whether every param already lives on `mesh` (e.g. `models.load(path, mesh=mesh)`)."""
    for _, var in _flat_params(model):
        sharding = getattr(var.get_value(), "sharding", None)
        if not isinstance(sharding, NamedSharding) or sharding.mesh != mesh:
            return False
    return True


def shard_params(model, mesh: Mesh, fsdp: bool = False) -> None:
    """Place an in-memory model's params on `mesh` by the rules, in place (one param at a time)."""
    from flax import nnx

    rules = default_rules(model.config, fsdp)
    flat = _flat_params(model)
    for path, var in flat:
        value = var.get_value()
        spec = partition_spec("/".join(map(str, path)), tuple(value.shape), mesh, rules)
        var.set_value(jax.device_put(value, NamedSharding(mesh, spec)))
    nnx.update(model, nnx.from_flat_state(flat))
