"""Host-side (NumPy) index maps for the Qwen vision towers, from `image_grid_thw`.

Why on the host: the number of patches, the 2-D rotary positions, the
Qwen2.5 windows and the Qwen3 position-embedding interpolation taps all
depend on the image sizes, which are known before the forward pass. Computing
them here (as HF's `vision_utils` does in torch) lets the jitted tower see
only fixed-shape int/float arrays.

Why batched by unit: attention never crosses a frame of an image (HF's
`cu_seqlens`), so each frame of each image is one attention *unit* laid along
a leading axis, padded to a per-unit patch capacity with a validity mask.
Attention then costs U * P^2, linear in the number of images (a packed
[all patches] sequence with a block-diagonal mask costs its square), and the
unit axis can be split over devices. Static capacities, keyword arguments of
every function here (default: exact for the batch):

  unit_capacity         U   attention units (frames of images), padding units
                            are all-padding (the engine may round U up to a
                            multiple of the device count);
  unit_patch_capacity   P   patches per unit, a multiple of merge**2;
  unit_window_capacity  Wc  Qwen2.5-VL attention windows per unit.

One compilation serves every batch that fits the capacities.

Patch order inside a unit is the processor's: merge blocks in row-major
order, and inside a block the merge x merge patches row-major (so every
merge**2 consecutive patches form one LLM token). Units follow the
processor's order: image by image, frame by frame.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import numpy as np

from models.qwen_vision.config import QwenVisionConfig


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VisionLayout:
    """Everything the tower needs besides pixels; all arrays, fixed shapes (U units of P patches)."""

    patch_valid: np.ndarray  # [U, P] bool, a prefix of each unit; padding units all False
    rope_hw: np.ndarray  # [U, P, 2] int32, (row, col) of each patch in its image
    merged_valid: np.ndarray  # [U, Pm] bool, Pm = P // merge**2
    window_index: Optional[np.ndarray] = None  # [U, Wc, L] int32 patch ids (within the unit) per window (Qwen2.5)
    window_valid: Optional[np.ndarray] = None  # [U, Wc, L] bool
    interp_index: Optional[np.ndarray] = None  # [U, P, 4] int32 taps into pos_embed (Qwen3)
    interp_weight: Optional[np.ndarray] = None  # [U, P, 4] float32 bilinear weights (Qwen3)


def check_grid_thw(image_grid_thw, config: QwenVisionConfig, key: str = "image_grid_thw",
                   pixels_key: str = "pixel_values") -> np.ndarray:
    """Validate `image_grid_thw` ([num_images, 3] ints) and return it as int64 NumPy.

    key / pixels_key: the input names in messages (`video_grid_thw` / `pixel_values_videos` for videos)."""
    what = "video" if "video" in key else "image"
    if image_grid_thw is None:
        raise ValueError(f"{key} is required with {pixels_key} (one (t, h, w) row per {what})")
    grid = np.asarray(image_grid_thw)
    if grid.ndim != 2 or grid.shape[1] != 3 or grid.shape[0] == 0:
        raise ValueError(f"{key} must have shape [num_{what}s, 3], got {grid.shape}")
    if not np.issubdtype(grid.dtype, np.integer):
        raise ValueError(f"{key} must hold integers, got dtype {grid.dtype}")
    m = config.spatial_merge_size
    for i, (t, h, w) in enumerate(grid.tolist()):
        if t < 1 or h < m or w < m or h % m or w % m:
            raise ValueError(
                f"{key}[{i}] = {(t, h, w)}: need t >= 1 and h, w positive multiples of "
                f"spatial_merge_size={m}"
            )
    return grid.astype(np.int64)


def num_patches(image_grid_thw) -> int:
    return int(np.prod(np.asarray(image_grid_thw), axis=-1).sum())


def _patch_rows_cols(h: int, w: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of each patch of one frame, in merge-block order."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    shape = (h // m, m, w // m, m)
    rows = rows.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
    cols = cols.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
    return rows, cols


def _bilinear_taps(index: np.ndarray, size: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps/weights of align_corners=True bilinear resampling of a `side` table to `size` points."""
    src = index.astype(np.float32) * np.float32(side - 1) / np.float32(max(size - 1, 1))
    floor = np.floor(src)
    offsets = np.arange(2, dtype=np.float32)
    taps = floor.astype(np.int64)[:, None] + np.arange(2)
    # same float32 op order as HF: |src - floor - offset|, hat kernel
    weights = np.clip(np.float32(1) - np.abs(src[:, None] - floor[:, None] - offsets), 0, None)
    return np.clip(taps, 0, side - 1), weights.astype(np.float32)


def _windows_of_frame(h: int, w: int, m: int, side: int) -> list[np.ndarray]:
    """Patch ids (relative to the frame) of each window, HF order (window row-major)."""
    mh, mw = h // m, w // m
    merged = np.arange(mh * mw).reshape(mh, mw)
    windows = []
    for r0 in range(0, mh, side):
        for c0 in range(0, mw, side):
            tokens = merged[r0 : r0 + side, c0 : c0 + side].reshape(-1)
            windows.append((tokens[:, None] * m * m + np.arange(m * m)).reshape(-1))
    return windows


def unit_grids(image_grid_thw) -> np.ndarray:
    """[num_units, 2] (h, w) of every attention unit: each frame of each image, in patch order."""
    grid = np.asarray(image_grid_thw, dtype=np.int64).reshape(-1, 3)
    return np.repeat(grid[:, 1:], grid[:, 0], axis=0)


def _windows_per_unit(units: np.ndarray, config: QwenVisionConfig) -> np.ndarray:  # [num_units, 2] -> [num_units]
    side, m = config.window_merged_side, config.spatial_merge_size
    return -(-(units[:, 0] // m) // side) * -(-(units[:, 1] // m) // side)


def exact_capacities(image_grid_thw, config: QwenVisionConfig) -> dict:
    """The smallest capacities holding this batch, keyed by the keyword names (window only for Qwen2.5-VL)."""
    units = unit_grids(check_grid_thw(image_grid_thw, config))
    caps = dict(unit_capacity=len(units), unit_patch_capacity=int(np.prod(units, axis=1).max()))
    if config.uses_window_attention:
        caps["unit_window_capacity"] = int(_windows_per_unit(units, config).max())
    return caps


def _resolve(grid: np.ndarray, config: QwenVisionConfig, **given) -> dict:
    """Fill capacities left None with the exact ones; ValueError (naming the argument) when one is too small."""
    exact = exact_capacities(grid, config)
    caps = {}
    for name, need in exact.items():
        cap = need if given.get(name) is None else int(given[name])
        if cap < need:
            raise ValueError(f"{name}={cap} is below the {need} this batch needs")
        caps[name] = cap
    if caps["unit_patch_capacity"] % config.merge_unit:
        raise ValueError(
            f"unit_patch_capacity={caps['unit_patch_capacity']} must be a multiple of merge**2={config.merge_unit}"
        )
    return caps


def _interp_taps(rows: np.ndarray, cols: np.ndarray, h: int, w: int, side: int):
    """Qwen3-VL: the 4 bilinear taps/weights into the side x side pos_embed table -> [n, 4], [n, 4]."""
    row_taps, row_w = _bilinear_taps(rows, h, side)
    col_taps, col_w = _bilinear_taps(cols, w, side)
    index = (row_taps[:, :, None] * side + col_taps[:, None, :]).reshape(-1, 4)
    weight = (row_w[:, :, None] * col_w[:, None, :]).reshape(-1, 4)
    return index, weight


@functools.lru_cache(maxsize=1024)
def _frame_maps(h: int, w: int, config: QwenVisionConfig) -> dict:
    """One frame's maps at its exact sizes, cached (batches repeat image sizes); read-only.

    rope_hw [h*w, 2]; Qwen3 interp_index / interp_weight [h*w, 4]; Qwen2.5 window_index / window_valid [Wf, L].
    """
    m = config.spatial_merge_size
    rows, cols = _patch_rows_cols(h, w, m)
    maps = dict(rope_hw=np.stack([rows, cols], axis=-1).astype(np.int32))
    if config.family == "qwen3_vl":
        index, weight = _interp_taps(rows, cols, h, w, config.num_grid_per_side)
        maps.update(interp_index=index.astype(np.int32), interp_weight=weight)
    if config.uses_window_attention:
        windows = _windows_of_frame(h, w, m, config.window_merged_side)
        shape = (len(windows), config.window_merged_side**2 * config.merge_unit)
        maps.update(window_index=np.zeros(shape, np.int32), window_valid=np.zeros(shape, bool))
        for i, win in enumerate(windows):
            maps["window_index"][i, : len(win)], maps["window_valid"][i, : len(win)] = win, True
    for table in maps.values():
        table.setflags(write=False)
    return maps


def build_vision_layout(
    image_grid_thw,
    config: QwenVisionConfig,
    *,
    unit_capacity: Optional[int] = None,
    unit_patch_capacity: Optional[int] = None,
    unit_window_capacity: Optional[int] = None,
) -> VisionLayout:
    """Index maps for a batch of images, one row per attention unit; capacities default to the exact sizes.

    Pass fixed capacities (e.g. bucketed) to reuse one compilation across batches.
    """
    grid = check_grid_thw(image_grid_thw, config)
    caps = _resolve(grid, config, unit_capacity=unit_capacity, unit_patch_capacity=unit_patch_capacity,
                    unit_window_capacity=unit_window_capacity)
    units = unit_grids(grid)
    frames = [_frame_maps(h, w, config) for h, w in units.tolist()]
    layout = {}
    for name, first in frames[0].items():  # [U, capacity, ...], frame u's maps in row u, zero-padded
        rows = caps["unit_window_capacity"] if name.startswith("window") else caps["unit_patch_capacity"]
        table = np.zeros((caps["unit_capacity"], rows, *first.shape[1:]), first.dtype)
        for u, maps in enumerate(frames):
            table[u, : len(maps[name])] = maps[name]
        layout[name] = table
    patch_valid = np.zeros((caps["unit_capacity"], caps["unit_patch_capacity"]), bool)
    patch_valid[: len(units)] = np.arange(caps["unit_patch_capacity"]) < np.prod(units, axis=1)[:, None]
    return VisionLayout(patch_valid=patch_valid, merged_valid=patch_valid[:, :: config.merge_unit], **layout)


def check_pixel_values(pixel_values, image_grid_thw, config: QwenVisionConfig, key: str = "pixel_values",
                       grid_key: str = "image_grid_thw") -> tuple[np.ndarray, np.ndarray]:
    """(pixels [num_patches, C*T*P*P] float32, grid int64) after checking one against the other;
    key / grid_key name the inputs in messages."""
    pixels = np.asarray(pixel_values, dtype=np.float32)
    grid = check_grid_thw(image_grid_thw, config, grid_key, key)
    total = num_patches(grid)
    if pixels.ndim != 2 or pixels.shape[1] != config.patch_dim:
        raise ValueError(
            f"{key} must have shape [num_patches, {config.patch_dim}] (C*T*P*P), got {pixels.shape}"
        )
    if pixels.shape[0] != total:
        raise ValueError(
            f"{key} has {pixels.shape[0]} patches but {grid_key} {grid.tolist()} implies {total}"
        )
    if not np.isfinite(pixels).all():
        raise ValueError(f"{key} contain NaN or inf")
    return pixels, grid


def pad_pixel_values(
    pixel_values,
    image_grid_thw,
    config: QwenVisionConfig,
    *,
    unit_capacity: Optional[int] = None,
    unit_patch_capacity: Optional[int] = None,
) -> np.ndarray:
    """Check `pixel_values` ([num_patches, C*T*P*P]) against the grid; lay it out as [U, P, C*T*P*P], zero-padded."""
    pixels, grid = check_pixel_values(pixel_values, image_grid_thw, config)
    caps = _resolve(grid, config, unit_capacity=unit_capacity, unit_patch_capacity=unit_patch_capacity)
    u_cap, p_cap = caps["unit_capacity"], caps["unit_patch_capacity"]
    sizes = np.prod(unit_grids(grid), axis=1)
    rows = np.concatenate([u * p_cap + np.arange(n) for u, n in enumerate(sizes.tolist())])  # flat [U * P] slots
    out = np.zeros((u_cap * p_cap, pixels.shape[1]), np.float32)
    out[rows] = pixels
    return out.reshape(u_cap, p_cap, pixels.shape[1])
