"""Qwen-VL's merged visual tokens as a `models.visual_tokens.VisualTokens`, for pruners.

A pruner that reasons spatially (Hi-Lo's hierarchical selection, merging of
neighbours) needs, for every visual token of a sample, its image and where it
sits in that image's t x h x w token grid after the merge. Token order is the
order of the `<|image_pad|>` tokens in the prompt (and of the tower's merged
output): image by image, then t, row, col row-major. Qwen images are single
resolution, so every token is KIND_BASE with row = t * h + r, col = c, and the
image's base grid is (t * h, w) with `frames` = t.

Videos (`pixel_values_videos`) are laid out the same way, as items of their
sample next to its images (prompt order), with each token's temporal patch in
`frame` (= row // h) and the video's number within its sample in `video`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from models.visual_tokens import KIND_BASE, ImageTokens, VisualTokens, pack_visual_tokens


def merged_grids(image_grid_thw, spatial_merge_size: int) -> np.ndarray:
    """[num_images, 3] (t, h, w) in merged tokens; ValueError when h or w does not divide."""
    grid = np.asarray(image_grid_thw, dtype=np.int64).reshape(-1, 3)
    m = spatial_merge_size
    if (grid[:, 1:] % m).any():
        raise ValueError(f"image_grid_thw {grid.tolist()} has h or w not divisible by spatial_merge_size={m}")
    return grid // np.array([1, m, m])


def image_tokens(t: int, h: int, w: int, video: bool = False) -> ImageTokens:
    """One image (or video) of merged grid (t, h, w): t*h x w tokens, row-major."""
    rows, cols = np.divmod(np.arange(t * h * w), w)
    return ImageTokens(np.full(t * h * w, KIND_BASE), rows, cols, base_grid=(t * h, w), frames=t,
                       frame=rows // h, video=video)


def visual_token_structure(
    image_grid_thw,
    images_per_sample: Sequence[int],
    spatial_merge_size: int,
    positions: Optional[Sequence[np.ndarray]] = None,
    capacity: Optional[int] = None,
    max_images: Optional[int] = None,
) -> VisualTokens:
    """capacity / max_images default to the batch maxima; pass bucket sizes to keep shapes static.

    positions: per sample, the sequence positions of its `<|image_pad|>` tokens (None: slot numbers).
    """
    merged = merged_grids(image_grid_thw, spatial_merge_size)
    images = [image_tokens(*g) for g in merged.tolist()]
    tokens, _ = pack_visual_tokens(images, images_per_sample, positions, capacity, max_images)
    return tokens
