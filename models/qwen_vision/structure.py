"""Structure of the merged visual tokens, per sample, for pruners.

A pruner that reasons spatially (Hi-Lo's hierarchical selection, merging of
neighbours) needs to know, for every visual token of a sample, which image it
came from and where it sits in that image's t x h x w token grid after the
2x2 merge. Built on the host from `image_grid_thw`, padded to a static
per-sample capacity with a validity mask.

Token order is the order of the `<|image_pad|>` tokens in the prompt (and of
the tower's merged output): image by image, then t, row, col row-major.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VisualTokenStructure:
    coords: np.ndarray  # [B, K, 3] int32: (t, row, col) of each merged token in its image
    image_index: np.ndarray  # [B, K] int32: image number within the sample, -1 for padding
    valid: np.ndarray  # [B, K] bool
    grid: np.ndarray  # [B, I, 3] int32: merged (t, h, w) per image of the sample, zeros for padding
    num_tokens: np.ndarray  # [B] int32: real visual tokens per sample


def visual_token_structure(
    image_grid_thw,
    images_per_sample: Sequence[int],
    spatial_merge_size: int,
    capacity: Optional[int] = None,
    max_images: Optional[int] = None,
) -> VisualTokenStructure:
    """capacity / max_images default to the batch maxima; pass bucket sizes to keep shapes static."""
    grid = np.asarray(image_grid_thw, dtype=np.int64).reshape(-1, 3)
    counts = [int(c) for c in images_per_sample]
    if sum(counts) != grid.shape[0]:
        raise ValueError(f"images_per_sample {counts} sums to {sum(counts)} but image_grid_thw has {grid.shape[0]} rows")
    m = spatial_merge_size
    if (grid[:, 1:] % m).any():
        raise ValueError(f"image_grid_thw {grid.tolist()} has h or w not divisible by spatial_merge_size={m}")
    merged = grid // np.array([1, m, m])
    starts = np.cumsum([0] + counts)
    per_sample = [merged[s:e] for s, e in zip(starts, starts[1:])]
    totals = [int(np.prod(g, axis=1).sum()) for g in per_sample]
    cap = max(totals + [0]) if capacity is None else int(capacity)
    n_img = max(counts + [0]) if max_images is None else int(max_images)
    if cap < max(totals + [0]) or n_img < max(counts + [0]):
        raise ValueError(f"capacity={cap}/max_images={n_img} below this batch's {max(totals)} tokens/{max(counts)} images")
    batch = len(counts)
    coords = np.zeros((batch, cap, 3), np.int32)
    image_index = np.full((batch, cap), -1, np.int32)
    grids = np.zeros((batch, n_img, 3), np.int32)
    for b, sample in enumerate(per_sample):
        pos = 0
        for i, (t, h, w) in enumerate(sample.tolist()):
            tt, rr, cc = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
            n = t * h * w
            coords[b, pos : pos + n] = np.stack([tt.ravel(), rr.ravel(), cc.ravel()], -1)
            image_index[b, pos : pos + n] = i
            grids[b, i] = (t, h, w)
            pos += n
    return VisualTokenStructure(coords, image_index, image_index >= 0, grids, np.asarray(totals, np.int32))
