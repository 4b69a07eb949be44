"""Host-side plan of a Qwen-VL forward: everything shape- or index-like that
depends on the prompt and image / video sizes, computed once in NumPy.

The jitted model then only gathers: the tower's merged tokens into visual-token
slots (`merged_slots`) and those into their sequence positions (`tokens.index`),
3-D M-RoPE positions, padded pixels and the vision layout (static shapes; see
models/qwen_vision/layout.py). Images and videos share one tower call: image
units first, then video units (one per temporal patch, HF's cu_seqlens), and
`merged_slots` maps each sample's items (images and videos in prompt order)
to their rows of it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import numpy as np

from models.mrope_index import get_rope_index
from models.qwen_vision.config import QwenVisionConfig
from models.qwen_vision.layout import VisionLayout, build_vision_layout, check_pixel_values, pad_pixel_values
from models.qwen_vision.structure import image_tokens as image_token_map
from models.qwen_vision.structure import merged_grids
from models.visual_tokens import VisualTokens, images_per_sample, pack_visual_tokens


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QwenVLPlan:
    input_ids: np.ndarray  # [B, T] int32
    attention_mask: np.ndarray  # [B, T] int32
    position_ids: np.ndarray  # [3, B, T] int32 (M-RoPE t, h, w)
    rope_deltas: np.ndarray  # [B, 1] int32: decode position = n_valid + step + delta
    tokens: VisualTokens  # [B, Nv] map of the visual tokens (positions, rows, cols, images, frames, videos)
    merged_slots: np.ndarray  # [B, Nv] int32: row of the tower's merged output feeding each slot (0 for padding)
    pixel_values: Optional[np.ndarray] = None  # [U, P, C*T*P*P] float32, one row per attention unit, zero-padded
    layout: Optional[VisionLayout] = None


def _check_pair(pixels, grid, vision: QwenVisionConfig, key: str, grid_key: str):
    """(pixels, grid) checked against each other, or (None, empty grid) when both are absent."""
    if pixels is None and grid is None:
        return None, np.zeros((0, 3), np.int64)
    if grid is None:
        what = "video" if "video" in key else "image"
        raise ValueError(f"{grid_key} is required with {key} (one (t, h, w) row per {what})")
    if pixels is None:
        raise ValueError(f"{key} is required with {grid_key}")
    return check_pixel_values(pixels, grid, vision, key, grid_key)


def _items(ids: np.ndarray, token_id: Optional[int], tokens_per_item: list, what: str, first_item: int):
    """Per sample, its images (or videos) in order: (first sequence position, tower item, sequence positions);
    tower items number the images, then the videos."""
    batch = ids.shape[0]
    if not tokens_per_item:
        count = 0 if token_id is None else int((ids == token_id).sum())
        if count:
            key = "pixel_values_videos" if what == "video" else "pixel_values"
            raise ValueError(f"input_ids hold {count} {what} tokens (id {token_id}) but {key} was not given")
        return [[] for _ in range(batch)]
    counts = images_per_sample(ids, token_id, tokens_per_item, what)
    out, i = [], 0
    for b, n in enumerate(counts):
        positions = np.nonzero(ids[b] == token_id)[0]
        bounds = np.concatenate([[0], np.cumsum(tokens_per_item[i:i + n])])
        out.append([(int(positions[s]), first_item + i + k, positions[s:e])
                    for k, (s, e) in enumerate(zip(bounds, bounds[1:]))])
        i += n
    return out


def plan_qwen_vl_inputs(
    vision: QwenVisionConfig,
    image_token_id: int,
    input_ids,
    attention_mask=None,
    pixel_values=None,
    image_grid_thw=None,
    mm_token_type_ids=None,
    *,
    video_token_id: Optional[int] = None,
    pixel_values_videos=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    unit_capacity: Optional[int] = None,
    unit_patch_capacity: Optional[int] = None,
    unit_window_capacity: Optional[int] = None,
    visual_capacity: Optional[int] = None,
    max_images: Optional[int] = None,
) -> QwenVLPlan:
    """Validate processor outputs and build the plan. Text-only batches have no pixels/layout.

    Images go to samples in order by their `<|image_pad|>` counts, videos by their `<|video_pad|>`
    counts (HF's masked_scatter order). One tower call encodes both: the image units, then the video
    units (a video's attention unit is one temporal patch, as HF's cu_seqlens); a sample's images and
    videos are its items in prompt order. second_per_grid_ts: Qwen2.5-VL's seconds per temporal
    patch, one per video. unit_* capacities: the tower's static sizes (models/qwen_vision/layout.py),
    default exact, over images and videos together.
    """
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {ids.shape}")
    mask = np.ones(ids.shape, np.int32) if attention_mask is None else np.asarray(attention_mask).astype(np.int32)
    image_pixels, image_grid = _check_pair(pixel_values, image_grid_thw, vision, "pixel_values", "image_grid_thw")
    video_pixels, video_grid = _check_pair(pixel_values_videos, video_grid_thw, vision, "pixel_values_videos",
                                           "video_grid_thw")
    if len(video_grid) and video_token_id is None:
        raise ValueError("pixel_values_videos given but the model config has no video_token_id")
    if second_per_grid_ts is not None and len(np.atleast_1d(np.asarray(second_per_grid_ts))) != len(video_grid):
        raise ValueError(f"second_per_grid_ts has {len(np.atleast_1d(np.asarray(second_per_grid_ts)))} entries "
                         f"but video_grid_thw has {len(video_grid)} videos (one per video)")
    grid = np.concatenate([image_grid, video_grid])  # the tower's items: images, then videos
    pixels = layout = None
    if len(grid):
        caps = dict(unit_capacity=unit_capacity, unit_patch_capacity=unit_patch_capacity)
        both = [p for p in (image_pixels, video_pixels) if p is not None]
        pixels = pad_pixel_values(np.concatenate(both), grid, vision, **caps)
        layout = build_vision_layout(grid, vision, **caps, unit_window_capacity=unit_window_capacity)
    image_tokens_each = np.prod(merged_grids(image_grid, vision.spatial_merge_size), axis=1).tolist()
    video_tokens_each = np.prod(merged_grids(video_grid, vision.spatial_merge_size), axis=1).tolist()
    images = _items(ids, image_token_id, image_tokens_each, "image", 0)
    videos = _items(ids, video_token_id, video_tokens_each, "video", len(image_grid))
    merged = merged_grids(grid, vision.spatial_merge_size).tolist()
    first_row = np.concatenate([[0], np.cumsum(image_tokens_each + video_tokens_each)]).astype(np.int64)
    items, tower_rows, per_sample, positions = [], [], [], []
    for b in range(ids.shape[0]):
        mine = sorted([(first, g, pos, False) for first, g, pos in images[b]]
                      + [(first, g, pos, True) for first, g, pos in videos[b]], key=lambda item: item[0])
        for _, g, pos, is_video in mine:
            items.append(image_token_map(*merged[g], video=is_video))
            tower_rows.append(int(first_row[g]))
        per_sample.append(len(mine))
        positions.append(np.concatenate([pos for _, _, pos, _ in mine]) if mine else np.zeros(0, np.int64))
    tokens, slot_start = pack_visual_tokens(items, per_sample, positions, visual_capacity, max_images)
    slots = np.zeros(tokens.valid.shape, np.int32)
    if layout is not None:
        real = np.flatnonzero(layout.merged_valid)  # the tower's merged rows of the items, in tower order
        owner = np.repeat(np.arange(len(per_sample)), per_sample)
        for item, b, start, row in zip(items, owner, slot_start, tower_rows):
            slots[b, start:start + item.num_tokens] = real[row:row + item.num_tokens]
    positions_3d, deltas = get_rope_index(
        ids,
        image_grid if len(image_grid) else None,
        mask,
        spatial_merge_size=vision.spatial_merge_size,
        mm_token_type_ids=mm_token_type_ids,
        image_token_id=image_token_id,
        video_token_id=video_token_id,
        video_grid_thw=video_grid if len(video_grid) else None,
        second_per_grid_ts=second_per_grid_ts,
        family=vision.family,
        tokens_per_second=vision.tokens_per_second,
    )
    return QwenVLPlan(ids.astype(np.int32), mask, positions_3d, deltas, tokens, slots, pixels, layout)

