"""The Qwen-VL vision tower (Qwen2-VL / Qwen2.5-VL / Qwen3-VL) in flax.nnx.

Input: padded `pixel_values` [Np, C*T*P*P] (the processor's flattened patches)
and a `VisionLayout` built on the host from `image_grid_thw`. Output: merged
visual tokens [Np // merge**2, out_hidden_size] in image order (the order the
`<|image_pad|>` tokens appear in the text), pads zeroed, plus the Qwen3-VL
deepstack features taken after the blocks at `deepstack_visual_indexes`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from models.qwen_vision.config import QwenVisionConfig
from models.qwen_vision.layers import VisionBlock, block_norm_kind, linear, norm, rotary_cos_sin, rotary_inv_freq
from models.qwen_vision.layout import VisionLayout, build_vision_layout, pad_pixel_values


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

    def __call__(self, pixel_values):  # [N, C*T*P*P] -> [N, D]
        kernel = self.kernel[...]
        # like HF, pixels are cast to the weights' dtype before the projection
        out = pixel_values.astype(kernel.dtype) @ kernel.reshape(-1, kernel.shape[-1])
        return out if self.bias is None else out + self.bias[...]


class PatchEmbed(nnx.Module):
    def __init__(self, config: QwenVisionConfig, rngs: nnx.Rngs, dtype=jnp.float32):
        self.proj = PatchProjection(config, rngs, bias=config.family == "qwen3_vl", dtype=dtype)

    def __call__(self, pixel_values):  # [N, C*T*P*P] -> [N, D]
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

    def __call__(self, x):  # [N, D] -> [N // unit, out]
        grouped = lambda y: y.reshape(y.shape[0] // self.unit, -1)  # noqa: E731
        gelu = lambda y: jax.nn.gelu(y, approximate=False)  # noqa: E731  (torch nn.GELU())
        if not self.qwen3:
            return self.fc2(gelu(self.fc1(grouped(self.ln_q(x)))))
        x = self.norm(grouped(x)) if self.postshuffle else grouped(self.norm(x))
        return self.linear_fc2(gelu(self.linear_fc1(x)))


class VisionOutput(NamedTuple):
    merged: jax.Array  # [Nm, out_hidden_size], pads zeroed
    deepstack: tuple  # Qwen3-VL: one [Nm, out_hidden_size] per deepstack index; else ()
    merged_valid: jax.Array  # [Nm] bool


class QwenVisionTower(nnx.Module):
    """HF `Qwen2VisionTransformerPretrainedModel` / `Qwen2_5_VisionTransformerPretrainedModel` /
    `Qwen3VLVisionModel`, with the packed sequence padded to a static capacity."""

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

    def __call__(self, pixel_values, layout: VisionLayout) -> VisionOutput:
        """pixel_values [Np, C*T*P*P] float; layout from `build_vision_layout` (same Np)."""
        cfg = self.config
        if pixel_values.ndim != 2 or pixel_values.shape[1] != cfg.patch_dim:
            raise ValueError(f"pixel_values must be [num_patches, {cfg.patch_dim}], got {pixel_values.shape}")
        if pixel_values.shape[0] != layout.patch_valid.shape[0]:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[0]} rows but the layout was built for "
                f"{layout.patch_valid.shape[0]} (use the same patch_capacity for both)"
            )
        x = self.patch_embed(pixel_values)
        if cfg.family == "qwen3_vl":
            table = self.pos_embed.embedding[...]
            pos = jnp.sum(table[layout.interp_index] * layout.interp_weight[..., None].astype(table.dtype), axis=1)
            x = x + pos.astype(x.dtype)
        cos, sin = rotary_cos_sin(layout.rope_hw, rotary_inv_freq(cfg))
        deepstack = []
        for i, block in enumerate(self.blocks):
            windowed = cfg.uses_window_attention and i not in cfg.fullatt_block_indexes
            x = block(
                x,
                cos,
                sin,
                layout.segment_ids,
                layout.window_index if windowed else None,
                layout.window_valid if windowed else None,
            )
            if i in cfg.deepstack_visual_indexes:
                merger = self.deepstack_merger_list[cfg.deepstack_visual_indexes.index(i)]
                deepstack.append(merger(x))
        keep = layout.merged_valid[:, None]
        merged = jnp.where(keep, self.merger(x), 0.0)
        return VisionOutput(merged, tuple(jnp.where(keep, f, 0.0) for f in deepstack), layout.merged_valid)


@nnx.jit
def _forward(tower: QwenVisionTower, pixel_values, layout: VisionLayout) -> VisionOutput:
    return tower(pixel_values, layout)


def encode_images(
    tower: QwenVisionTower,
    pixel_values,
    image_grid_thw,
    patch_capacity: int | None = None,
    window_capacity: int | None = None,
) -> VisionOutput:
    """Host entry point: validate, pad to the capacities, build the layout, run the jitted tower.

    Same capacities -> same shapes -> one compilation, whatever the image sizes.
    """
    if pixel_values is None:
        raise ValueError("pixel_values is required")
    pixels = pad_pixel_values(pixel_values, image_grid_thw, tower.config, patch_capacity)
    layout = build_vision_layout(image_grid_thw, tower.config, pixels.shape[0], window_capacity)
    return _forward(tower, jnp.asarray(pixels), layout)
