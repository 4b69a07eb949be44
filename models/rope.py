"""Rotary position embeddings for every text family: default, llama3 scaling, M-RoPE.

Tables are computed in float32 at HIGHEST precision whatever the model dtype:
positions reach thousands, and a bfloat16 angle would be off by whole radians.
M-RoPE (Qwen-VL) takes 3-D position ids (temporal, height, width) and gives
each rotary frequency the position of one axis: Qwen2/2.5-VL in contiguous
sections, Qwen3-VL interleaved (t h w t h w ...) up to each section's length.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from models.config import TextConfig


def inverse_frequencies(config: TextConfig) -> np.ndarray:  # [head_dim // 2] float32
    dim = config.head_dim
    inv = 1.0 / (np.float32(config.rope_theta) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
    inv = inv.astype(np.float32)
    if config.rope_kind != "llama3":
        return inv
    factor, low, high = config.rope_factor, config.rope_low_freq_factor, config.rope_high_freq_factor
    old_len = config.rope_original_max_position
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old_len / low, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def frequency_axes(config: TextConfig) -> np.ndarray:  # [head_dim // 2] int: which M-RoPE axis drives each frequency
    half = config.head_dim // 2
    section = config.mrope_section
    if config.rope_kind == "mrope":  # HF: the i-th split of the frequencies takes axis i % 3 (any number of splits)
        return np.repeat(np.arange(len(section)) % 3, section)[:half]
    axes = np.zeros(half, dtype=np.int64)
    if config.rope_kind == "mrope_interleaved":  # HF's slices stop at half: oversized sections are clamped
        for axis in (1, 2):
            axes[axis : section[axis] * 3 : 3] = axis
    return axes


def rope_tables(config: TextConfig, position_ids) -> tuple[jax.Array, jax.Array]:
    """position_ids [B, T] (or [3, B, T] for M-RoPE) -> (cos, sin), each [B, T, head_dim] float32."""
    inv = jnp.asarray(inverse_frequencies(config))
    positions = jnp.asarray(position_ids).astype(jnp.float32)
    if config.uses_mrope:
        if positions.ndim == 2:  # text only: all three axes share the 1-D position
            positions = jnp.broadcast_to(positions, (3, *positions.shape))
        if positions.ndim != 3 or positions.shape[0] != 3:
            raise ValueError(f"M-RoPE position_ids must be [3, B, T] or [B, T], got {positions.shape}")
        axes = jnp.asarray(frequency_axes(config))
        # positions[axes]: [half, B, T] -> the per-frequency position, then angle.
        angles = jnp.moveaxis(positions[axes], 0, -1) * inv
    else:
        if positions.ndim != 2:
            raise ValueError(f"position_ids must be [B, T], got {positions.shape}")
        angles = positions[..., None] * inv  # [B, T, half]
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x, cos, sin):
    """x [B, T, H, hd]; cos/sin [B, T, hd] float32 -> x rotated, in x's dtype (HF casts the tables)."""
    cos = cos[:, :, None, :].astype(x.dtype)
    sin = sin[:, :, None, :].astype(x.dtype)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin
