"""Host-side plan of a Qwen-VL forward: everything shape- or index-like that
depends on the prompt and image sizes, computed once in NumPy.

The jitted model then only gathers: the tower's merged tokens into visual-token
slots (`merged_slots`) and those into their sequence positions (`tokens.index`),
3-D M-RoPE positions, padded pixels and the vision layout (static shapes; see
models/qwen_vision/layout.py).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import numpy as np

from models.mrope_index import get_rope_index
from models.qwen_vision.config import QwenVisionConfig
from models.qwen_vision.layout import VisionLayout, build_vision_layout, check_grid_thw, pad_pixel_values
from models.qwen_vision.structure import merged_grids, visual_token_structure
from models.visual_tokens import VisualTokens, image_token_positions, images_per_sample


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QwenVLPlan:
    input_ids: np.ndarray  # [B, T] int32
    attention_mask: np.ndarray  # [B, T] int32
    position_ids: np.ndarray  # [3, B, T] int32 (M-RoPE t, h, w)
    rope_deltas: np.ndarray  # [B, 1] int32: decode position = n_valid + step + delta
    tokens: VisualTokens  # [B, Nv] map of the visual tokens (positions, rows, cols, images)
    merged_slots: np.ndarray  # [B, Nv] int32: row of the tower's merged output feeding each slot (0 for padding)
    pixel_values: Optional[np.ndarray] = None  # [U, P, C*T*P*P] float32, one row per attention unit, zero-padded
    layout: Optional[VisionLayout] = None


def merged_slots(tokens: VisualTokens, layout: Optional[VisionLayout]) -> np.ndarray:
    """[B, Nv]: the tower's real merged rows (`layout.merged_valid`, flattened over units) are the
    batch's visual tokens in prompt order, and so are the valid slots read sample by sample, row-major."""
    slots = np.zeros(tokens.valid.shape, np.int32)
    if layout is not None:
        slots[tokens.valid] = np.flatnonzero(layout.merged_valid)
    return slots


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
    unit_capacity: Optional[int] = None,
    unit_patch_capacity: Optional[int] = None,
    unit_window_capacity: Optional[int] = None,
    visual_capacity: Optional[int] = None,
    max_images: Optional[int] = None,
) -> QwenVLPlan:
    """Validate processor outputs and build the plan. Text-only batches have no pixels/layout.

    Images go to samples in order by their `<|image_pad|>` counts (HF's masked_scatter order).
    unit_* capacities: the tower's static sizes (models/qwen_vision/layout.py), default exact.
    """
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {ids.shape}")
    mask = np.ones(ids.shape, np.int32) if attention_mask is None else np.asarray(attention_mask).astype(np.int32)
    if pixel_values is not None and image_grid_thw is None:
        raise ValueError("image_grid_thw is required with pixel_values (one (t, h, w) row per image)")
    if pixel_values is None and image_grid_thw is not None:
        raise ValueError("pixel_values is required with image_grid_thw")
    pixels = layout = None
    grid = np.zeros((0, 3), np.int64)
    if image_grid_thw is not None:
        grid = check_grid_thw(image_grid_thw, vision)
        caps = dict(unit_capacity=unit_capacity, unit_patch_capacity=unit_patch_capacity)
        pixels = pad_pixel_values(pixel_values, grid, vision, **caps)
        layout = build_vision_layout(grid, vision, **caps, unit_window_capacity=unit_window_capacity)
    per_image = np.prod(merged_grids(grid, vision.spatial_merge_size), axis=1).tolist()
    per_sample = images_per_sample(ids, image_token_id, per_image)
    tokens = visual_token_structure(
        grid, per_sample, vision.spatial_merge_size, image_token_positions(ids, image_token_id), visual_capacity,
        max_images,
    )
    positions, deltas = get_rope_index(
        ids,
        image_grid_thw,
        mask,
        spatial_merge_size=vision.spatial_merge_size,
        mm_token_type_ids=mm_token_type_ids,
        image_token_id=image_token_id,
        video_token_id=video_token_id,
        family=vision.family,
        tokens_per_second=vision.tokens_per_second,
    )
    slots = merged_slots(tokens, layout)
    return QwenVLPlan(ids.astype(np.int32), mask, positions, deltas, tokens, slots, pixels, layout)
