"""Host-side (NumPy) index maps for the Qwen vision towers, from `image_grid_thw`.

Why on the host: the number of patches, the attention segments, the 2-D
rotary positions, the Qwen2.5 windows and the Qwen3 position-embedding
interpolation taps all depend on the image sizes, which are known before the
forward pass. Computing them here (as HF's `vision_utils` does in torch) lets
the jitted tower see only fixed-shape int/float arrays: the patch axis is
padded to a static `patch_capacity` (a multiple of merge**2) with a validity
mask, and the window table to a static `window_capacity`. One compilation
serves every batch whose patches fit the capacity.

Patch order is the processor's: per image, per frame, merge blocks in
row-major order, and inside a block the merge x merge patches row-major
(so every merge**2 consecutive patches form one LLM token).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import numpy as np

from models.qwen_vision.config import QwenVisionConfig


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VisionLayout:
    """Everything the tower needs besides pixels; all arrays, fixed shapes."""

    patch_valid: np.ndarray  # [Np] bool
    segment_ids: np.ndarray  # [Np] int32, one attention segment per frame of each image; pads = -1
    rope_hw: np.ndarray  # [Np, 2] int32, (row, col) of each patch in its image
    merged_valid: np.ndarray  # [Nm] bool, Nm = Np // merge**2
    window_index: Optional[np.ndarray] = None  # [Wc, L] int32 patch ids per window (Qwen2.5)
    window_valid: Optional[np.ndarray] = None  # [Wc, L] bool
    interp_index: Optional[np.ndarray] = None  # [Np, 4] int32 taps into pos_embed (Qwen3)
    interp_weight: Optional[np.ndarray] = None  # [Np, 4] float32 bilinear weights (Qwen3)


def check_grid_thw(image_grid_thw, config: QwenVisionConfig) -> np.ndarray:
    """Validate `image_grid_thw` ([num_images, 3] ints) and return it as int64 NumPy."""
    if image_grid_thw is None:
        raise ValueError("image_grid_thw is required with pixel_values (one (t, h, w) row per image)")
    grid = np.asarray(image_grid_thw)
    if grid.ndim != 2 or grid.shape[1] != 3 or grid.shape[0] == 0:
        raise ValueError(f"image_grid_thw must have shape [num_images, 3], got {grid.shape}")
    if not np.issubdtype(grid.dtype, np.integer):
        raise ValueError(f"image_grid_thw must hold integers, got dtype {grid.dtype}")
    m = config.spatial_merge_size
    for i, (t, h, w) in enumerate(grid.tolist()):
        if t < 1 or h < m or w < m or h % m or w % m:
            raise ValueError(
                f"image_grid_thw[{i}] = {(t, h, w)}: need t >= 1 and h, w positive multiples of "
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


def count_windows(image_grid_thw, config: QwenVisionConfig) -> int:
    side = config.window_merged_side
    m = config.spatial_merge_size
    return int(
        sum(t * -(-(h // m) // side) * -(-(w // m) // side) for t, h, w in np.asarray(image_grid_thw).tolist())
    )


def build_vision_layout(
    image_grid_thw,
    config: QwenVisionConfig,
    patch_capacity: Optional[int] = None,
    window_capacity: Optional[int] = None,
) -> VisionLayout:
    """Index maps for a batch of images; capacities default to the exact sizes.

    Pass fixed capacities (e.g. bucketed) to reuse one compilation across batches.
    """
    grid = check_grid_thw(image_grid_thw, config)
    m, mu = config.spatial_merge_size, config.merge_unit
    total = num_patches(grid)
    cap = total if patch_capacity is None else int(patch_capacity)
    if cap < total or cap % mu:
        raise ValueError(
            f"patch_capacity={cap} must be >= the {total} patches of image_grid_thw and a multiple of {mu}"
        )
    segment_ids = np.full(cap, -1, np.int32)
    rope_hw = np.zeros((cap, 2), np.int32)
    interp_index = np.zeros((cap, 4), np.int32)
    interp_weight = np.zeros((cap, 4), np.float32)
    windows: list[np.ndarray] = []
    start, segment = 0, 0
    for t, h, w in grid.tolist():
        rows, cols = _patch_rows_cols(h, w, m)
        if config.family == "qwen3_vl":
            side = config.num_grid_per_side
            row_taps, row_w = _bilinear_taps(rows, h, side)
            col_taps, col_w = _bilinear_taps(cols, w, side)
            frame_index = (row_taps[:, :, None] * side + col_taps[:, None, :]).reshape(-1, 4)
            frame_weight = (row_w[:, :, None] * col_w[:, None, :]).reshape(-1, 4)
        for _ in range(t):
            stop = start + h * w
            segment_ids[start:stop] = segment
            rope_hw[start:stop, 0], rope_hw[start:stop, 1] = rows, cols
            if config.family == "qwen3_vl":
                interp_index[start:stop], interp_weight[start:stop] = frame_index, frame_weight
            if config.uses_window_attention:
                windows += [win + start for win in _windows_of_frame(h, w, m, config.window_merged_side)]
            start, segment = stop, segment + 1

    layout = dict(
        patch_valid=np.arange(cap) < total,
        segment_ids=segment_ids,
        rope_hw=rope_hw,
        merged_valid=np.arange(cap // mu) < total // mu,
    )
    if config.uses_window_attention:
        layout.update(_window_table(windows, config, window_capacity))
    if config.family == "qwen3_vl":
        layout.update(interp_index=interp_index, interp_weight=interp_weight)
    return VisionLayout(**layout)


def _window_table(windows: list[np.ndarray], config: QwenVisionConfig, capacity: Optional[int]) -> dict:
    length = config.window_merged_side**2 * config.merge_unit
    cap = len(windows) if capacity is None else int(capacity)
    if cap < len(windows):
        raise ValueError(f"window_capacity={cap} is below the {len(windows)} attention windows of this batch")
    index = np.zeros((cap, length), np.int32)
    valid = np.zeros((cap, length), bool)
    for i, win in enumerate(windows):
        index[i, : len(win)], valid[i, : len(win)] = win, True
    return dict(window_index=index, window_valid=valid)


def pad_pixel_values(pixel_values, image_grid_thw, config: QwenVisionConfig, patch_capacity: Optional[int] = None):
    """Check `pixel_values` ([num_patches, C*T*P*P]) against the grid and zero-pad to capacity."""
    pixels = np.asarray(pixel_values, dtype=np.float32)
    grid = check_grid_thw(image_grid_thw, config)
    total = num_patches(grid)
    if pixels.ndim != 2 or pixels.shape[1] != config.patch_dim:
        raise ValueError(
            f"pixel_values must have shape [num_patches, {config.patch_dim}] (C*T*P*P), got {pixels.shape}"
        )
    if pixels.shape[0] != total:
        raise ValueError(
            f"pixel_values has {pixels.shape[0]} patches but image_grid_thw {grid.tolist()} implies {total}"
        )
    if not np.isfinite(pixels).all():
        raise ValueError("pixel_values contain NaN or inf")
    cap = total if patch_capacity is None else int(patch_capacity)
    if cap < total or cap % config.merge_unit:
        raise ValueError(
            f"patch_capacity={cap} must be >= the {total} patches of this batch and a multiple of {config.merge_unit}"
        )
    return np.concatenate([pixels, np.zeros((cap - total, pixels.shape[1]), np.float32)])
