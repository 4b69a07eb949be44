"""Qwen-VL vision towers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) in flax.nnx, exact against HF."""

from models.qwen_vision.config import QWEN_VISION_FAMILIES, QwenVisionConfig, parse_qwen_vision_config
from models.qwen_vision.layout import (
    VisionLayout,
    build_vision_layout,
    exact_capacities,
    pad_pixel_values,
    unit_grids,
)
from models.qwen_vision.structure import visual_token_structure
from models.qwen_vision.tower import QwenVisionTower, VisionOutput, encode_images

__all__ = [
    "QWEN_VISION_FAMILIES",
    "QwenVisionConfig",
    "QwenVisionTower",
    "VisionLayout",
    "VisionOutput",
    "build_vision_layout",
    "encode_images",
    "exact_capacities",
    "pad_pixel_values",
    "parse_qwen_vision_config",
    "unit_grids",
    "visual_token_structure",
]
