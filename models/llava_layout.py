"""Where LLaVA-NeXT's visual tokens come from and where they sit, planned on the host.

The anyres packing of HF (`LlavaNextModel.pack_image_features`) loops in
Python over concrete image sizes: the crop grid chosen from
`image_grid_pinpoints`, the unpad crop and so the token count all depend on
each image's (height, width). Those sizes are inputs known before the forward,
so we compute the whole packing in NumPy here and hand the jitted forward
plain int arrays: a gather index into the flattened crop features, plus, for
every visual token, its kind (base / tile / newline), row, col, image and
sequence position. The forward is then one gather, and it compiles once per
(batch, crops, capacity) shape, never per image size.

Token order per image (HF's): the base crop's g*g tokens row-major, then the
unpadded tile grid row by row, each row followed by one `image_newline`.
Several images of one sample follow each other in prompt order; slots past
the sample's real tokens are padding (valid False) up to a static `capacity`.

The pruner-facing part is a `models.visual_tokens.VisualTokens` (shared with
Qwen-VL); e.g. the base (MR-Pruner's "low") slots of sample b are
`jnp.nonzero(tokens.valid[b] & (tokens.kind[b] == KIND_BASE), size=n_low)`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from flax import struct

from models.vision_config import LlavaNextVisionConfig
from models.visual_tokens import (
    KIND_BASE,
    KIND_NEWLINE,
    KIND_TILE,
    ImageTokens,
    VisualTokens,
    image_token_positions,
    images_per_sample,
    pack_visual_tokens,
)


def select_best_resolution(image_hw: tuple[int, int], pinpoints: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The (height, width) pinpoint that keeps the most image pixels, then wastes the least (HF's rule)."""
    orig_h, orig_w = image_hw
    best, best_effective, best_wasted = None, 0, float("inf")
    for h, w in pinpoints:
        scale = min(w / orig_w, h / orig_h)
        down_w, down_h = int(orig_w * scale), int(orig_h * scale)
        effective = min(down_w * down_h, orig_w * orig_h)
        wasted = w * h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (h, w), effective, wasted
    return best


@dataclasses.dataclass(frozen=True)
class ImageGrid:
    """One image's anyres geometry, in crops and in patch units."""

    crop_rows: int  # tile crops vertically (HF's num_patch_height)
    crop_cols: int
    rows: int  # tile-grid rows after unpad (patches)
    cols: int  # tile-grid cols after unpad (patches)
    row_offset: int  # patch rows / cols cut from the top / left by unpad
    col_offset: int
    base_side: int  # g: the base crop's grid is g x g

    @property
    def num_crops(self) -> int:
        return 1 + self.crop_rows * self.crop_cols

    @property
    def num_tokens(self) -> int:
        return self.base_side**2 + self.rows * (self.cols + 1)


def image_grid(image_hw: tuple[int, int], config: LlavaNextVisionConfig) -> ImageGrid:
    """HF's get_anyres_image_grid_shape + unpad_image, on ints (same float comparisons as HF)."""
    orig_h, orig_w = int(image_hw[0]), int(image_hw[1])
    if orig_h <= 0 or orig_w <= 0:
        raise ValueError(f"image_sizes: image size (height={orig_h}, width={orig_w}) must be positive")
    crop, g = config.tower.image_size, config.tower.grid_side
    best_h, best_w = select_best_resolution((orig_h, orig_w), config.image_grid_pinpoints)
    crop_rows, crop_cols = best_h // crop, best_w // crop
    full_h, full_w = crop_rows * g, crop_cols * g
    rows, cols, row_offset, col_offset = full_h, full_w, 0, 0
    if orig_w / orig_h > full_w / full_h:  # wider than the grid: padding was added top and bottom
        new_h = int(round(orig_h * (full_w / orig_w), 7))
        row_offset = (full_h - new_h) // 2
        rows = full_h - 2 * row_offset
    else:
        new_w = int(round(orig_w * (full_h / orig_h), 7))
        col_offset = (full_w - new_w) // 2
        cols = full_w - 2 * col_offset
    return ImageGrid(crop_rows, crop_cols, rows, cols, row_offset, col_offset, g)


def max_tokens_per_image(config: LlavaNextVisionConfig) -> int:
    """Most visual tokens one image can give (no unpad): a safe static capacity bucket."""
    crop, g = config.tower.image_size, config.tower.grid_side
    return g * g + max((h // crop) * g * ((w // crop) * g + 1) for h, w in config.image_grid_pinpoints)


def max_crops_per_image(config: LlavaNextVisionConfig) -> int:
    crop = config.tower.image_size
    return 1 + max((h // crop) * (w // crop) for h, w in config.image_grid_pinpoints)


def image_tokens(grid: ImageGrid) -> ImageTokens:
    """One image's pruner-facing token map (kind / row / col and its grids)."""
    _, _, kind, row, col = image_token_map(grid)
    g = grid.base_side
    return ImageTokens(kind, row, col, base_grid=(g, g), tile_grid=(grid.rows, grid.cols))


def image_token_map(grid: ImageGrid) -> tuple[np.ndarray, ...]:
    """Per token of one image: (crop, patch, kind, row, col), each [num_tokens] int32.

    crop is 0 for the base, 1 + tile index for tiles, -1 for newlines; patch is
    the row-major index inside the crop's g x g grid.
    """
    g = grid.base_side
    base_patch = np.arange(g * g)
    r, c = np.meshgrid(np.arange(grid.rows), np.arange(grid.cols + 1), indexing="ij")  # [rows, cols + 1]
    fr, fc = r + grid.row_offset, c + grid.col_offset  # position in the padded full grid
    tile_crop = 1 + (fr // g) * grid.crop_cols + fc // g
    tile_patch = (fr % g) * g + fc % g
    is_newline = c == grid.cols
    crop = np.concatenate([np.zeros(g * g), np.where(is_newline, -1, tile_crop).ravel()])
    patch = np.concatenate([base_patch, np.where(is_newline, 0, tile_patch).ravel()])
    kind = np.concatenate([np.full(g * g, KIND_BASE), np.where(is_newline, KIND_NEWLINE, KIND_TILE).ravel()])
    row = np.concatenate([base_patch // g, r.ravel()])
    col = np.concatenate([base_patch % g, c.ravel()])
    return tuple(a.astype(np.int32) for a in (crop, patch, kind, row, col))


@struct.dataclass
class VisualLayout:
    """The packing plan of one batch.

    source: [B, capacity] index into the flattened projected crop features
            [num_crops * g*g] (0 for newline and padding slots, never read)
    tokens: the pruner-facing map (kind / row / col / image / sequence index / validity)
    image_sample: [num_images] owning row of each image in the batch's image list
    """

    source: np.ndarray
    tokens: VisualTokens
    image_sample: np.ndarray
    base_side: int = struct.field(pytree_node=False)

    @property
    def capacity(self) -> int:
        return self.tokens.capacity


def image_grids(image_sizes, config: LlavaNextVisionConfig) -> list[ImageGrid]:
    """Checked image_sizes [num_images, 2] (height, width) -> each image's anyres grid."""
    if image_sizes is None:
        raise ValueError("image_sizes is required with pixel_values: anyres packing depends on each image's size")
    sizes = np.asarray(image_sizes)
    if sizes.ndim != 2 or sizes.shape[1] != 2:
        raise ValueError(f"image_sizes of shape {sizes.shape}: expected [num_images, 2] (height, width)")
    return [image_grid((h, w), config) for h, w in sizes.tolist()]


def crop_starts(pixel_shape: tuple[int, ...], grids: Sequence[ImageGrid]) -> np.ndarray:
    """First crop of each image in the flattened crop batch; ValueError when pixel_values cannot hold them.

    5-D [images, max_crops, C, H, W] (the processor pads every image to the batch's most crops)
    or 4-D [sum of crops, C, H, W] (crops of all images concatenated, HF's other accepted form).
    """
    need = np.array([g.num_crops for g in grids], dtype=np.int64)
    if len(pixel_shape) == 5:
        if pixel_shape[0] != len(grids):
            raise ValueError(f"pixel_values holds {pixel_shape[0]} images but image_sizes has {len(grids)} rows")
        short = np.nonzero(need > pixel_shape[1])[0]
        if short.size:
            i = int(short[0])
            raise ValueError(
                f"pixel_values has {pixel_shape[1]} crops per image; image {i} needs {int(need[i])} "
                f"(1 base + {grids[i].crop_rows}x{grids[i].crop_cols} tiles): image_sizes and pixel_values disagree"
            )
        return np.arange(len(grids), dtype=np.int64) * pixel_shape[1]
    if len(pixel_shape) == 4:
        if pixel_shape[0] != need.sum():
            raise ValueError(
                f"pixel_values has {pixel_shape[0]} crops; image_sizes ask for {int(need.sum())} ({need.tolist()})"
            )
        return np.concatenate([[0], np.cumsum(need)[:-1]]).astype(np.int64)
    raise ValueError(f"pixel_values of shape {tuple(pixel_shape)}: expected 5-D [images, crops, C, H, W] or 4-D")


def plan_layout(
    image_sizes,
    pixel_shape: tuple[int, ...],
    config: LlavaNextVisionConfig,
    *,
    input_ids=None,
    image_token_id: int | None = None,
    capacity: int | None = None,
    max_images: int | None = None,
) -> VisualLayout:
    """Host-side packing plan for one batch.

    image_sizes [num_images, 2] (height, width) as the processor returns them.
    With input_ids [B, T], images go to samples by their image tokens (checked);
    without, every image is its own row (B = num_images, HF get_image_features).
    capacity: static slot count per sample (default: the batch's largest need);
    max_images: static images per sample in the per-image arrays (default: the batch's most).
    """
    if config.select_strategy != "default":
        raise ValueError(
            "anyres packing needs vision_feature_select_strategy='default': with 'full' the CLS token stays in every "
            "crop and the crop features no longer tile a grid (HF fails on it too)"
        )
    grids = image_grids(image_sizes, config)
    starts = crop_starts(tuple(pixel_shape), grids)
    token_counts = [g.num_tokens for g in grids]
    if input_ids is None:
        per_sample, num_samples = [1] * len(grids), len(grids)
    else:
        ids = np.asarray(input_ids)
        if image_token_id is None:
            raise ValueError("image_token_id is required to place images by the image tokens of input_ids")
        if ids.ndim != 2:
            raise ValueError(f"input_ids of shape {ids.shape}: expected [batch, seq]")
        per_sample, num_samples = images_per_sample(ids, image_token_id, token_counts), ids.shape[0]
    image_sample = np.repeat(np.arange(num_samples), per_sample)
    positions = None if input_ids is None else image_token_positions(ids, image_token_id)
    images = [image_tokens(grid) for grid in grids]
    tokens, slot_start = pack_visual_tokens(images, per_sample, positions, capacity, max_images)
    g2 = config.tower.num_patches
    source = np.zeros(tokens.kind.shape, np.int32)
    for grid, start, b, slot in zip(grids, starts, image_sample, slot_start):
        crop, patch, *_ = image_token_map(grid)
        source[b, slot : slot + len(crop)] = np.where(crop >= 0, (start + crop) * g2 + patch, 0)
    return VisualLayout(source, tokens, image_sample.astype(np.int32), base_side=config.tower.grid_side)


def compact_crops(
    pixel_values, image_sizes, config: LlavaNextVisionConfig, crop_capacity: int
) -> tuple[np.ndarray, int]:
    """The real crops of every image, concatenated (the 4-D form) and zero-padded to `crop_capacity`.

    Returns (crops [crop_capacity, C, H, W], number of real crops).

    The processor pads each image to the batch's most crops, so the 5-D shape
    changes with the batch's image sizes; a fixed crop capacity gives the tower
    one shape (one compilation) for any mix of sizes. Padding crops follow the
    real ones and are never gathered.
    """
    pixels = np.asarray(pixel_values)
    grids = image_grids(image_sizes, config)
    starts = crop_starts(pixels.shape, grids)
    flat = pixels.reshape((-1, *pixels.shape[-3:]))
    real = np.concatenate([flat[s : s + g.num_crops] for s, g in zip(starts, grids)]) if grids else flat[:0]
    if crop_capacity < len(real):
        raise ValueError(f"crop_capacity {crop_capacity} is smaller than the {len(real)} crops of this batch")
    padding = np.zeros((crop_capacity - len(real), *real.shape[1:]), real.dtype)
    return np.concatenate([real, padding]), len(real)
