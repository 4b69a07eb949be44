"""The Qwen-VL vision tower (Qwen2-VL / Qwen2.5-VL / Qwen3-VL) in flax.nnx.

Input: `pixel_values` [U, P, C*T*P*P] (the processor's flattened patches, one
row per attention unit = frame of an image, see layout.py) and a `VisionLayout`
built on the host from `image_grid_thw`. Every block runs on [U, P, D] and
never mixes units. Output: merged visual tokens flattened to
[U * Pm, out_hidden_size] (Pm = P // merge**2; row u * Pm + j is token j of
unit u), pads zeroed, plus the Qwen3-VL deepstack features taken after the
blocks at `deepstack_visual_indexes`. The real rows, in order, are the visual
tokens in image order (the order of the `<|image_pad|>` tokens in the text):
`np.flatnonzero(layout.merged_valid)`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from models.qwen_vision.config import QwenVisionConfig
from models.qwen_vision.layers import VisionBlock, block_norm_kind, linear, norm, rotary_cos_sin, rotary_inv_freq
from models.qwen_vision.layout import VisionLayout, build_vision_layout, pad_pixel_values
from models.qwen_vision.received import received_attention
from models.sharding import constrain_batch


class PatchProjection(nnx.Module):
    """Conv3d with stride == kernel == (T, P, P) on pre-cut patches is one matmul.

    The kernel keeps the conv's axes as [C, T, P, P, D] (a pure permutation of
    torch's [D, C, T, P, P], so conversion is a transpose with a shape check) and
    is flattened to [C*T*P*P, D] at use, matching the processor's patch rows.
    """

    def __init__(self, config: QwenVisionConfig, rngs: nnx.Rngs, bias: bool, dtype=jnp.float32):
        shape = (config.in_channels, config.temporal_patch_size, config.patch_size, config.patch_size)
        init = nnx.initializers.lecun_normal(in_axis=(0, 1, 2, 3), out_axis=4)
        self.kernel = nnx.Param(init(rngs.params(), (*shape, config.hidden_size), dtype))
        self.bias = nnx.Param(jnp.zeros((config.hidden_size,), dtype)) if bias else None

    def __call__(self, pixel_values):  # [..., C*T*P*P] -> [..., D]
        kernel = self.kernel[...]
        # like HF, pixels are cast to the weights' dtype before the projection
        out = pixel_values.astype(kernel.dtype) @ kernel.reshape(-1, kernel.shape[-1])
        return out if self.bias is None else out + self.bias[...]


class PatchEmbed(nnx.Module):
    def __init__(self, config: QwenVisionConfig, rngs: nnx.Rngs, dtype=jnp.float32):
        self.proj = PatchProjection(config, rngs, bias=config.family == "qwen3_vl", dtype=dtype)

    def __call__(self, pixel_values):  # [..., C*T*P*P] -> [..., D]
        return self.proj(pixel_values)


class PatchMerger(nnx.Module):
    """Norm, then concatenate each merge x merge block of patches, then a 2-layer GELU MLP.

    `postshuffle` (Qwen3-VL deepstack mergers) normalises after the concatenation.
    Names: ln_q/fc1/fc2 for Qwen2/2.5 (HF `mlp.0`/`mlp.2`), norm/linear_fc1/linear_fc2 for Qwen3.
    """

    def __init__(self, config: QwenVisionConfig, rngs: nnx.Rngs, postshuffle: bool = False, dtype=jnp.float32):
        self.unit, self.postshuffle = config.merge_unit, postshuffle
        self.qwen3 = config.family == "qwen3_vl"
        d, wide, out = config.hidden_size, config.hidden_size * config.merge_unit, config.out_hidden_size
        first, second = linear(wide, wide, rngs, dtype=dtype), linear(wide, out, rngs, dtype=dtype)
        if self.qwen3:
            self.norm = norm("layernorm", wide if postshuffle else d, rngs, dtype)
            self.linear_fc1, self.linear_fc2 = first, second
        else:
            self.ln_q = norm(block_norm_kind(config), d, rngs, dtype)
            self.fc1, self.fc2 = first, second

    def __call__(self, x):  # [U, P, D] -> [U, P // unit, out]
        return self.mlp(self.mlp_input(x))

    def mlp_input(self, x):  # [U, P, D] -> [U, P // unit, unit * D]: normalised, each merge block concatenated
        grouped = lambda y: y.reshape(*y.shape[:-2], y.shape[-2] // self.unit, -1)  # noqa: E731
        if not self.qwen3:
            return grouped(self.ln_q(x))
        return self.norm(grouped(x)) if self.postshuffle else grouped(self.norm(x))

    def mlp(self, x):  # [..., unit * D] -> [..., out]
        gelu = lambda y: jax.nn.gelu(y, approximate=False)  # noqa: E731  (torch nn.GELU())
        if not self.qwen3:
            return self.fc2(gelu(self.fc1(x)))
        return self.linear_fc2(gelu(self.linear_fc1(x)))


class VisionOutput(NamedTuple):
    merged: jax.Array  # [U * Pm, out_hidden_size], row u * Pm + j = token j of unit u; pads zeroed
    deepstack: tuple  # Qwen3-VL: one [U * Pm, out_hidden_size] per deepstack index; else ()
    merged_valid: jax.Array  # [U * Pm] bool
    evidence: tuple | None = None  # with evidence=True: (attention [U*Pm, H], keys [U*Pm, hd], hidden [U*Pm, W])


class QwenVisionTower(nnx.Module):
    """HF `Qwen2VisionTransformerPretrainedModel` / `Qwen2_5_VisionTransformerPretrainedModel` /
    `Qwen3VLVisionModel`, batched by attention unit at static capacities."""

    def __init__(self, config: QwenVisionConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.config = config
        self.patch_embed = PatchEmbed(config, rngs, dtype)
        if config.family == "qwen3_vl":
            self.pos_embed = nnx.Embed(config.num_position_embeddings, config.hidden_size, param_dtype=dtype, rngs=rngs)
        self.blocks = nnx.List([VisionBlock(config, rngs, dtype) for _ in range(config.depth)])
        self.merger = PatchMerger(config, rngs, dtype=dtype)
        if config.deepstack_visual_indexes:
            self.deepstack_merger_list = nnx.List(
                [PatchMerger(config, rngs, postshuffle=True, dtype=dtype) for _ in config.deepstack_visual_indexes]
            )

    def __call__(self, pixel_values, layout: VisionLayout, evidence: bool = False) -> VisionOutput:
        """pixel_values [U, P, C*T*P*P] float; layout from `build_vision_layout` (same U, P).

        evidence: also return, per merged token, what in-tower pruning reads (models.tower_evidence): the
        mean attention its patches receive in the last block (summed over the merge block, per head),
        that block's pre-rotary keys averaged over heads and over the merge block, and the mergers' MLP
        inputs (main merger first, then each deepstack merger's), concatenated.
        """
        cfg = self.config
        if pixel_values.ndim != 3 or pixel_values.shape[2] != cfg.patch_dim:
            raise ValueError(f"pixel_values must be [units, patches, {cfg.patch_dim}], got {pixel_values.shape}")
        if pixel_values.shape[:2] != layout.patch_valid.shape:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[:2]} units x patches but the layout was built for "
                f"{layout.patch_valid.shape} (use the same capacities for both)"
            )
        x = constrain_batch(self.patch_embed(pixel_values))  # [U, P, D], units split over "data" under a mesh
        if cfg.family == "qwen3_vl":
            table = self.pos_embed.embedding[...]
            weight = layout.interp_weight[..., None].astype(table.dtype)
            x = x + jnp.sum(table[layout.interp_index] * weight, axis=-2).astype(x.dtype)  # [U, P, 4, D] -> [U, P, D]
        cos, sin = rotary_cos_sin(layout.rope_hw, rotary_inv_freq(cfg))  # [U, P, hd]
        deepstack, deepstack_inputs, found = [], [], None
        for i, block in enumerate(self.blocks):
            if evidence and i == len(self.blocks) - 1:
                found = self._last_block_evidence(block, x, cos, sin, layout.patch_valid)
            windowed = cfg.uses_window_attention and i not in cfg.fullatt_block_indexes
            x = block(
                x,
                cos,
                sin,
                layout.patch_valid,
                layout.window_index if windowed else None,
                layout.window_valid if windowed else None,
            )
            if i in cfg.deepstack_visual_indexes:
                merger = self.deepstack_merger_list[cfg.deepstack_visual_indexes.index(i)]
                deepstack_inputs.append(merger.mlp_input(x))
                deepstack.append(merger.mlp(deepstack_inputs[-1]))
        keep = layout.merged_valid[..., None]
        flat = lambda f: jnp.where(keep, f, 0.0).reshape(-1, f.shape[-1])  # noqa: E731  [U, Pm, out] -> [U * Pm, out]
        merged_valid = layout.merged_valid.reshape(-1)
        merger_input = self.merger.mlp_input(x)
        if evidence:
            attention, keys = found
            found = (flat(attention), flat(keys), flat(jnp.concatenate([merger_input, *deepstack_inputs], axis=-1)))
        return VisionOutput(flat(self.merger.mlp(merger_input)), tuple(flat(f) for f in deepstack), merged_valid,
                            found)

    def _last_block_evidence(self, block, x, cos, sin, patch_valid):
        """-> (received attention per merged token [U, Pm, H], pre-rotary keys [U, Pm, hd]), from the block's input."""
        unit = self.config.merge_unit
        q, k, raw_keys = block.attn.queries_and_keys(block.norm1(x), cos, sin)
        received = jax.vmap(received_attention)(q, k, patch_valid)  # [U, H, P]
        u, heads, p = received.shape
        attention = received.reshape(u, heads, p // unit, unit).sum(axis=-1).transpose(0, 2, 1)
        keys = jnp.mean(raw_keys.astype(jnp.float32), axis=2)  # [U, P, hd]
        return attention, keys.reshape(u, p // unit, unit, -1).mean(axis=2)

    def project_hidden(self, hidden):
        """Merger MLP inputs [..., W] (as `evidence` lays them out, e.g. VisionZip's merged tokens) ->
        (LLM features [..., out], the deepstack features [n, ..., out] or None)."""
        mergers = [self.merger, *(self.deepstack_merger_list if self.config.deepstack_visual_indexes else ())]
        parts = jnp.split(hidden, len(mergers), axis=-1)
        out = [m.mlp(part) for m, part in zip(mergers, parts)]
        return out[0], (jnp.stack(out[1:]) if len(out) > 1 else None)


@nnx.jit
def _forward(tower: QwenVisionTower, pixel_values, layout: VisionLayout) -> VisionOutput:
    return tower(pixel_values, layout)


def encode_images(
    tower: QwenVisionTower,
    pixel_values,
    image_grid_thw,
    *,
    unit_capacity: int | None = None,
    unit_patch_capacity: int | None = None,
    unit_window_capacity: int | None = None,
) -> VisionOutput:
    """Host entry point: validate, lay out by unit at the capacities (layout.py), run the jitted tower.

    Same capacities -> same shapes -> one compilation, whatever the image sizes.
    """
    if pixel_values is None:
        raise ValueError("pixel_values is required")
    caps = dict(unit_capacity=unit_capacity, unit_patch_capacity=unit_patch_capacity)
    pixels = pad_pixel_values(pixel_values, image_grid_thw, tower.config, **caps)
    layout = build_vision_layout(image_grid_thw, tower.config, **caps, unit_window_capacity=unit_window_capacity)
    return _forward(tower, jnp.asarray(pixels), layout)
