"""Where every visual token of a batch sits and what it is, for pruners (both families).

The engine prunes between the model's two stages (`prepare` -> language model),
so a pruner needs, per sample and under jit, the sequence position of each
visual token, its kind (LLaVA-NeXT's base image, anyres tile or row-end
newline; Qwen's single-resolution tokens count as base), its coordinates in its
own grid and its image. All of it depends only on image sizes and the prompt,
so it is computed on the host (NumPy) and padded to a static capacity `Nv`
with a validity mask.

Coordinates per kind:
  base     (LLaVA) row-major g x g base grid; (Qwen) row = t * h + r, col = c in
           the merged t*h x w grid of the image
  tile     (LLaVA) the unpadded tile grid [rows, cols]
  newline  (LLaVA) (tile row, cols): the extra last column of each tile row
Padding slots: valid False, index 0 (safe to gather), kind 0, row/col/image -1.

Per image (padded to `I` images per sample): `grid_rows`, `grid_cols` [B, I, 2],
the last axis indexed by kind (KIND_BASE, KIND_TILE; zeros where absent or for
padding), and `frames` [B, I] (Qwen's t; 1 for LLaVA; 0 for padding).

Videos (Qwen-VL): a video is one "image" of the sample (`image` numbers images
and videos together, in prompt order) with t > 1 temporal patches; per slot
`frame` is the token's temporal patch t' (0 for image tokens, -1 for padding),
so row = frame * h + r with h = grid_rows / frames, and `video` is the video's
number within the sample (-1 for image tokens and padding). Both default to
None for maps built by hand; `pack_visual_tokens` always fills them.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
from flax import struct

KIND_BASE, KIND_TILE, KIND_NEWLINE = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class ImageTokens:
    """One image's visual tokens in sequence order (host-side, unpadded)."""

    kind: np.ndarray  # [n] int
    row: np.ndarray  # [n] int
    col: np.ndarray  # [n] int
    base_grid: tuple[int, int]  # (rows, cols) of the base grid
    tile_grid: tuple[int, int] = (0, 0)  # (rows, cols) of the unpadded tile grid, newline column excluded
    frames: int = 1
    frame: Optional[np.ndarray] = None  # [n] int temporal patch of each token (None: all 0)
    video: bool = False  # a video (Qwen-VL `pixel_values_videos`), not an image

    @property
    def num_tokens(self) -> int:
        return len(self.kind)


@struct.dataclass
class VisualTokens:
    """Padded per-sample map of the visual tokens (see the module docstring)."""

    index: np.ndarray  # [B, Nv] int32: position in the sequence T
    valid: np.ndarray  # [B, Nv] bool
    kind: np.ndarray  # [B, Nv] int8: KIND_BASE / KIND_TILE / KIND_NEWLINE
    row: np.ndarray  # [B, Nv] int32
    col: np.ndarray  # [B, Nv] int32
    image: np.ndarray  # [B, Nv] int32: image number within the sample
    grid_rows: np.ndarray  # [B, I, 2] int32: rows of the (base, tile) grid of each image
    grid_cols: np.ndarray  # [B, I, 2] int32
    frames: np.ndarray  # [B, I] int32
    frame: Optional[np.ndarray] = None  # [B, Nv] int32: temporal patch within its video; 0 images, -1 padding
    video: Optional[np.ndarray] = None  # [B, Nv] int32: video number within the sample; -1 images and padding

    @property
    def capacity(self) -> int:
        return self.kind.shape[-1]

    @property
    def num_tokens(self):  # [B]: real visual tokens per sample
        return self.valid.sum(axis=-1)


def images_per_sample(input_ids, image_token_id: int, tokens_per_image: Sequence[int],
                      what: str = "image") -> list[int]:
    """Assign images (in order) to samples by their image-token counts; ValueError on any mismatch.

    what: "image" or "video" (the same rule assigns videos by their video-token counts), for the messages."""
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids of shape {ids.shape}: expected [batch, seq]")
    counts = (ids == image_token_id).sum(axis=1).tolist()
    out, i = [], 0
    for b, want in enumerate(counts):
        n, have = 0, 0
        while have < want and i < len(tokens_per_image):
            have += tokens_per_image[i]
            i, n = i + 1, n + 1
        if have != want:
            raise ValueError(
                f"{what.capitalize()} features and {what} tokens do not match: sample {b} has {want} {what} tokens, "
                f"but its {what}s give {have} features (tokens per {what}: {list(tokens_per_image)})"
            )
        out.append(n)
    if i != len(tokens_per_image):
        raise ValueError(
            f"{what.capitalize()} features and {what} tokens do not match: {len(tokens_per_image) - i} {what}(s) "
            f"left without {what} tokens ({what} tokens per sample: {counts}, tokens per {what}: "
            f"{list(tokens_per_image)})"
        )
    return out


def image_token_positions(input_ids, image_token_id: int) -> list[np.ndarray]:
    """Per sample, the sequence positions of its image tokens (prompt order)."""
    return [np.nonzero(row == image_token_id)[0] for row in np.asarray(input_ids)]


def pack_visual_tokens(
    images: Sequence[ImageTokens],
    per_sample: Sequence[int],
    positions: Optional[Sequence[np.ndarray]] = None,
    capacity: Optional[int] = None,
    max_images: Optional[int] = None,
) -> tuple[VisualTokens, np.ndarray]:
    """Pad the images' tokens into [B, Nv] slots, sample by sample, images in order.

    per_sample: how many of `images` (consecutive) each sample owns.
    positions: per sample, the sequence positions of its visual tokens (as many as
      its images give); None numbers the slots 0..n-1 (images without a prompt).
    Returns (tokens, slot_start [num_images]): the first slot of each image in its sample's row.
    """
    counts = [int(c) for c in per_sample]
    if sum(counts) != len(images):
        raise ValueError(f"images per sample {counts} sum to {sum(counts)} but {len(images)} images were given")
    owner = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    totals = np.zeros(len(counts), np.int64)
    np.add.at(totals, owner, [im.num_tokens for im in images])
    need, need_images = int(totals.max(initial=0)), max(counts + [0])
    cap = max(need, 1) if capacity is None else int(capacity)
    n_img = max(need_images, 1) if max_images is None else int(max_images)
    if cap < need:
        raise ValueError(f"capacity {cap} is smaller than the {need} visual tokens of the largest sample")
    if n_img < need_images:
        raise ValueError(f"max_images {n_img} is smaller than the {need_images} images of the fullest sample")
    batch = len(counts)
    index = np.zeros((batch, cap), np.int32)
    kind = np.zeros((batch, cap), np.int8)
    row, col, image, frame, video = (np.full((batch, cap), -1, np.int32) for _ in range(5))
    grid_rows, grid_cols = np.zeros((batch, n_img, 2), np.int32), np.zeros((batch, n_img, 2), np.int32)
    frames = np.zeros((batch, n_img), np.int32)
    filled, image_in_sample, video_in_sample = (np.zeros(batch, np.int64) for _ in range(3))
    slot_start = np.zeros(len(images), np.int64)
    for i, (im, b) in enumerate(zip(images, owner)):
        start, j = int(filled[b]), int(image_in_sample[b])
        sl = slice(start, start + im.num_tokens)
        kind[b, sl], row[b, sl], col[b, sl], image[b, sl] = im.kind, im.row, im.col, j
        frame[b, sl] = 0 if im.frame is None else im.frame
        if im.video:
            video[b, sl] = video_in_sample[b]
            video_in_sample[b] += 1
        grid_rows[b, j] = (im.base_grid[0], im.tile_grid[0])
        grid_cols[b, j] = (im.base_grid[1], im.tile_grid[1])
        frames[b, j] = im.frames
        slot_start[i] = start
        filled[b] += im.num_tokens
        image_in_sample[b] += 1
    valid = np.arange(cap)[None, :] < totals[:, None]
    for b in range(batch):
        n = int(totals[b])
        if positions is None:
            index[b, :n] = np.arange(n)
            continue
        pos = np.asarray(positions[b])
        if len(pos) != n:
            raise ValueError(f"sample {b}: {len(pos)} image-token positions for {n} visual tokens")
        index[b, :n] = pos
    tokens = VisualTokens(index, valid, kind, row, col, image, grid_rows, grid_cols, frames, frame, video)
    return tokens, slot_start
