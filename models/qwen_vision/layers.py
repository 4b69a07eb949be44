"""Building blocks of the Qwen ViTs: activations, norms, MLPs, 2-D rotary
embedding and per-unit (one frame of one image) / per-window attention.

Every function works on a leading unit axis, x [U, P, D], and never mixes
units: the unit axis is a pure batch axis (linear cost, splittable over devices).

Module attribute names mirror the HF parameter names (`qkv`, `proj`, `fc1`,
`gate_proj`, `linear_fc1`, ...) so the key map is a plain rename table.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.attention import attention
from models.qwen_vision.config import QwenVisionConfig


def activation(name: str):
    """HF ACT2FN entries used by the Qwen vision towers."""
    table = {
        "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
        "silu": jax.nn.silu,
        "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
        "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    }
    if name not in table:
        raise ValueError(f"unsupported vision hidden_act {name!r}; expected one of {sorted(table)}")
    return table[name]


def linear(in_features: int, out_features: int, rngs: nnx.Rngs, bias: bool = True, dtype=jnp.float32) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, use_bias=bias, param_dtype=dtype, rngs=rngs)


def norm(kind: str, features: int, rngs: nnx.Rngs, dtype=jnp.float32) -> nnx.Module:
    """eps 1e-6 everywhere in the Qwen ViTs; exact two-pass variance like torch."""
    if kind == "layernorm":
        return nnx.LayerNorm(features, epsilon=1e-6, use_fast_variance=False, param_dtype=dtype, rngs=rngs)
    return nnx.RMSNorm(features, epsilon=1e-6, use_fast_variance=False, param_dtype=dtype, rngs=rngs)


def block_norm_kind(config: QwenVisionConfig) -> str:
    return "rmsnorm" if config.family == "qwen2_5_vl" else "layernorm"


class VisionMLP(nnx.Module):
    """fc1/act/fc2 (Qwen2-VL), linear_fc1/act/linear_fc2 (Qwen3-VL), SwiGLU with bias (Qwen2.5-VL)."""

    def __init__(self, config: QwenVisionConfig, rngs: nnx.Rngs, dtype=jnp.float32):
        d, f = config.hidden_size, config.intermediate_size
        self.family = config.family
        self.act = activation(config.hidden_act)
        if config.family == "qwen2_vl":
            self.fc1, self.fc2 = linear(d, f, rngs, dtype=dtype), linear(f, d, rngs, dtype=dtype)
        elif config.family == "qwen3_vl":
            self.linear_fc1, self.linear_fc2 = linear(d, f, rngs, dtype=dtype), linear(f, d, rngs, dtype=dtype)
        else:
            self.gate_proj, self.up_proj = linear(d, f, rngs, dtype=dtype), linear(d, f, rngs, dtype=dtype)
            self.down_proj = linear(f, d, rngs, dtype=dtype)

    def __call__(self, x):  # [..., D] -> [..., D]
        if self.family == "qwen2_vl":
            return self.fc2(self.act(self.fc1(x)))
        if self.family == "qwen3_vl":
            return self.linear_fc2(self.act(self.linear_fc1(x)))
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


def rotary_inv_freq(config: QwenVisionConfig) -> np.ndarray:
    """[head_dim // 4] float32: the same frequencies serve rows and columns."""
    spatial_dim = config.head_dim // 2
    exponents = np.arange(0, spatial_dim, 2, dtype=np.float32) / np.float32(spatial_dim)
    return (1.0 / np.power(np.float32(config.rope_theta), exponents)).astype(np.float32)


def rotary_cos_sin(rope_hw, inv_freq):
    """rope_hw [..., 2] int -> cos, sin [..., head_dim]; float32 at HIGHEST precision (angles grow with size)."""
    freqs = rope_hw.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [..., 2, hd/4]
    freqs = freqs.reshape(*freqs.shape[:-2], -1)  # [..., hd/2]: row freqs then column freqs
    angles = jnp.concatenate([freqs, freqs], axis=-1)  # [..., hd]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x, cos, sin):
    """x [..., H, hd], cos/sin [..., hd]; rotate-half convention, computed in float32."""
    dtype = x.dtype
    x = x.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x * cos[..., None, :] + rotated * sin[..., None, :]).astype(dtype)


def unit_attention(q, k, v, patch_valid, scale: float):
    """Full attention within each unit: q, k, v [U, P, H, hd]; patch_valid [U, P] -> [U, P, H, hd].

    Padding patches form their own segment (-1): real patches never see them, and an
    all-padding unit still has a finite softmax. `attention`'s CPU path builds that mask
    per query block, never a [U, P, P] tensor. On the CPU the units go one at a time
    (lax.map): a unit's keys, values and scores then stay in cache and the time is linear
    in U (a query block over all units at once: 3.6x slower at U = 64, P = 256).
    Elsewhere, and under a mesh (where a loop over the split unit axis would gather it), all
    units go to `attention` as one batch.
    """
    segments = jnp.where(patch_valid, 0, -1)
    if jax.default_backend() != "cpu" or not jax.sharding.get_abstract_mesh().empty:
        # (under a mesh the units are split over "data": each device batches its own)
        return attention(q, k, v, segment_ids=segments, scale=scale)
    one = lambda a: attention(*(t[None] for t in a[:3]), segment_ids=a[3][None], scale=scale)[0]  # noqa: E731
    return jax.lax.map(one, (q, k, v, segments))


def window_attention(q, k, v, window_index, window_valid, scale: float):
    """One unit: q, k, v [P, H, hd]; window_index/valid [Wc, L] -> [P, H, hd].

    Patches are gathered into the window table (HF's "window reordering"), attend
    inside each window, and are scattered back to patch order (the "un-reordering");
    pad slots of the table go to an out-of-range row and are dropped.
    """
    qw, kw, vw = (t[window_index] for t in (q, k, v))  # [Wc, L, H, hd]
    mask = window_valid[:, None, :, None] & window_valid[:, None, None, :]  # [Wc, 1, L, L]
    out_w = jax.nn.dot_product_attention(qw, kw, vw, mask=mask, scale=scale)
    target = jnp.where(window_valid, window_index, q.shape[0]).reshape(-1)
    return jnp.zeros_like(q).at[target].set(out_w.reshape(-1, *q.shape[1:]), mode="drop")


class VisionAttention(nnx.Module):
    """Multi-head self-attention within one unit (or one window of it), never across units.

    Full blocks: `unit_attention`. Window blocks (Qwen2.5): `window_attention`, mapped over units.
    """

    def __init__(self, config: QwenVisionConfig, rngs: nnx.Rngs, dtype=jnp.float32):
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.qkv = linear(config.hidden_size, 3 * config.hidden_size, rngs, dtype=dtype)
        self.proj = linear(config.hidden_size, config.hidden_size, rngs, dtype=dtype)

    def _qkv(self, x, cos, sin):  # x [U, P, D] -> q, k, v [U, P, H, hd]
        qkv = self.qkv(x).reshape(*x.shape[:-1], 3, self.num_heads, self.head_dim)
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def queries_and_keys(self, x, cos, sin):
        """x [U, P, D] (after norm1) -> (q, k after the rotary embedding, k before it), each [U, P, H, hd]:
        what in-tower pruning reads from a block (models.tower_evidence)."""
        qkv = self.qkv(x).reshape(*x.shape[:-1], 3, self.num_heads, self.head_dim)
        q, k = qkv[..., 0, :, :], qkv[..., 1, :, :]
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), k

    def __call__(self, x, cos, sin, patch_valid, window_index=None, window_valid=None):
        """x [U, P, D]; cos/sin [U, P, hd]; patch_valid [U, P]; window_index/valid [U, Wc, L] for a window block."""
        q, k, v = self._qkv(x, cos, sin)
        scale = self.head_dim**-0.5
        if window_index is None:
            out = unit_attention(q, k, v, patch_valid, scale)
        else:
            out = jax.vmap(partial(window_attention, scale=scale))(q, k, v, window_index, window_valid)
        return self.proj(out.reshape(*x.shape[:-1], -1))


class VisionBlock(nnx.Module):
    def __init__(self, config: QwenVisionConfig, rngs: nnx.Rngs, dtype=jnp.float32):
        kind = block_norm_kind(config)
        self.norm1 = norm(kind, config.hidden_size, rngs, dtype)
        self.norm2 = norm(kind, config.hidden_size, rngs, dtype)
        self.attn = VisionAttention(config, rngs, dtype)
        self.mlp = VisionMLP(config, rngs, dtype)

    def __call__(self, x, cos, sin, patch_valid, window_index=None, window_valid=None):  # [U, P, D]
        x = x + self.attn(self.norm1(x), cos, sin, patch_valid, window_index, window_valid)
        return x + self.mlp(self.norm2(x))
