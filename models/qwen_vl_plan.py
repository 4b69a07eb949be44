"""Host-side plan of a Qwen-VL forward: everything shape- or index-like that
depends on the prompt and image sizes, computed once in NumPy.

The jitted model then only gathers: visual tokens into the image-token
positions (`feature_index`), 3-D M-RoPE positions, padded pixels and the
vision layout (static shapes; see models/qwen_vision/layout.py).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import numpy as np

from models.mrope_index import get_rope_index
from models.qwen_vision.config import QwenVisionConfig
from models.qwen_vision.layout import VisionLayout, build_vision_layout, check_grid_thw, pad_pixel_values


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QwenVLPlan:
    input_ids: np.ndarray  # [B, T] int32
    attention_mask: np.ndarray  # [B, T] int32
    position_ids: np.ndarray  # [3, B, T] int32 (M-RoPE t, h, w)
    rope_deltas: np.ndarray  # [B, 1] int32: decode position = n_valid + step + delta
    feature_index: np.ndarray  # [B, T] int32: merged visual token feeding each position, -1 for text
    pixel_values: Optional[np.ndarray] = None  # [Np, C*T*P*P] float32, zero-padded
    layout: Optional[VisionLayout] = None


def image_feature_index(input_ids, image_token_id: int, num_visual_tokens: int) -> np.ndarray:
    """[B, T] index of the visual token each image-token position receives (HF masked_scatter order)."""
    ids = np.asarray(input_ids)
    is_image = ids == image_token_id
    found = int(is_image.sum())
    if found != num_visual_tokens:
        raise ValueError(
            f"Image features and image tokens do not match: input_ids hold {found} image tokens "
            f"(id {image_token_id}) but image_grid_thw gives {num_visual_tokens} visual tokens"
        )
    index = np.full(ids.shape, -1, np.int32)
    index[is_image] = np.arange(found, dtype=np.int32)  # row-major, like torch masked_scatter
    return index


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
    patch_capacity: Optional[int] = None,
    window_capacity: Optional[int] = None,
) -> QwenVLPlan:
    """Validate processor outputs and build the plan. Text-only batches have no pixels/layout."""
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {ids.shape}")
    mask = np.ones(ids.shape, np.int32) if attention_mask is None else np.asarray(attention_mask).astype(np.int32)
    if pixel_values is not None and image_grid_thw is None:
        raise ValueError("image_grid_thw is required with pixel_values (one (t, h, w) row per image)")
    if pixel_values is None and image_grid_thw is not None:
        raise ValueError("pixel_values is required with image_grid_thw")
    num_visual = 0
    pixels = layout = None
    if image_grid_thw is not None:
        grid = check_grid_thw(image_grid_thw, vision)
        num_visual = int(np.prod(grid, axis=1).sum()) // vision.merge_unit
        pixels = pad_pixel_values(pixel_values, grid, vision, patch_capacity)
        layout = build_vision_layout(grid, vision, pixels.shape[0], window_capacity)
    feature_index = image_feature_index(ids, image_token_id, num_visual)
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
    return QwenVLPlan(ids.astype(np.int32), mask, positions, deltas, feature_index, pixels, layout)
