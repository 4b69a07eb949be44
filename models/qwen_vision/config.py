"""Frozen config of the Qwen-VL vision towers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL).

One dataclass covers the three families; `family` switches the block flavour
(norm, MLP, window attention, learned position embeddings, deepstack).
`parse_qwen_vision_config` reads both layouts seen in the wild: the Hub's
transformers-4 `config.json` (Qwen2-VL uses `embed_dim`/`mlp_ratio`/`in_chans`)
and the nested transformers-5 layout (`rope_parameters`, `in_channels`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Mapping

QWEN_VISION_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


@dataclasses.dataclass(frozen=True)
class QwenVisionConfig:
    family: str  # one of QWEN_VISION_FAMILIES
    depth: int
    hidden_size: int  # width of the ViT blocks
    num_heads: int
    intermediate_size: int  # MLP width inside the blocks
    out_hidden_size: int  # merger output width (= LLM hidden size)
    hidden_act: str  # "quick_gelu" | "silu" | "gelu_pytorch_tanh" | "gelu"
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    in_channels: int = 3
    rope_theta: float = 10000.0
    # Qwen2.5-VL only
    window_size: int = 0  # in pixels; 0 = no window attention
    fullatt_block_indexes: tuple[int, ...] = ()  # blocks < depth; the parser drops the rest, as HF ignores them
    tokens_per_second: float = 1.0
    # Qwen3-VL only
    num_position_embeddings: int = 0
    deepstack_visual_indexes: tuple[int, ...] = ()

    def __post_init__(self):
        if self.family not in QWEN_VISION_FAMILIES:
            raise ValueError(f"QwenVisionConfig.family={self.family!r}; expected one of {QWEN_VISION_FAMILIES}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"vision hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.head_dim % 4:
            raise ValueError(f"vision head_dim {self.head_dim} must be a multiple of 4 (2-D rotary embedding)")
        for i in (*self.fullatt_block_indexes, *self.deepstack_visual_indexes):
            if not 0 <= i < self.depth:
                raise ValueError(f"vision block index {i} out of range for depth {self.depth}")
        if self.family == "qwen3_vl":
            side = int(round(self.num_position_embeddings**0.5))
            if side * side != self.num_position_embeddings or side < 1:
                raise ValueError(f"num_position_embeddings={self.num_position_embeddings} is not a square")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Length of one flattened patch row of `pixel_values` (C * T * P * P)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def merge_unit(self) -> int:
        return self.spatial_merge_size**2

    @property
    def uses_window_attention(self) -> bool:
        return self.family == "qwen2_5_vl" and self.window_size > 0

    @property
    def window_merged_side(self) -> int:
        """Window side in merged tokens (HF: window_size // merge // patch)."""
        return self.window_size // self.spatial_merge_size // self.patch_size

    @property
    def num_grid_per_side(self) -> int:
        return int(round(self.num_position_embeddings**0.5))


def _vision_dict(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept either the whole model config or its `vision_config` part."""
    vision = raw.get("vision_config")
    return vision if isinstance(vision, Mapping) else raw


def _require(d: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if d.get(name) is not None:
            return d[name]
    raise ValueError(f"vision_config is missing {' / '.join(names)}")


def _rope_theta(d: Mapping[str, Any]) -> float:
    params = d.get("rope_parameters") or d.get("rope_scaling") or {}
    return float(params.get("rope_theta", d.get("rope_theta", 10000.0)))


def _fullatt_blocks(d: Mapping[str, Any], depth: int) -> tuple[int, ...]:
    """Qwen2.5-VL's full-attention blocks that exist. HF (`Qwen2_5_VisionTransformerPretrainedModel.forward`)
    tests `layer_num in fullatt_block_indexes` for layer_num in range(depth), so any other index is never
    hit and silently ignored (its model tester's depth-2 tower keeps the default (7, 15, 23, 31)); we
    drop those indexes the same way and say so."""
    given = tuple(int(i) for i in d.get("fullatt_block_indexes", (7, 15, 23, 31)))
    ignored = [i for i in given if not 0 <= i < depth]
    if ignored:
        warnings.warn(
            f"qwen2_5_vl vision_config: fullatt_block_indexes {ignored} are outside the tower's {depth} blocks "
            f"(valid 0..{depth - 1}) and are ignored, as HF transformers ignores them: those blocks do not exist, "
            f"the others keep window attention",
            UserWarning,
            stacklevel=3,
        )
    return tuple(i for i in given if 0 <= i < depth)


def parse_qwen_vision_config(model_type: str, raw: Mapping[str, Any]) -> QwenVisionConfig:
    """Build the vision config of a Qwen-VL `config.json` (either layout)."""
    if model_type not in QWEN_VISION_FAMILIES:
        raise ValueError(f"parse_qwen_vision_config: model_type {model_type!r} not in {QWEN_VISION_FAMILIES}")
    d = _vision_dict(raw)
    common = dict(
        family=model_type,
        depth=int(_require(d, "depth", "num_hidden_layers")),
        num_heads=int(_require(d, "num_heads", "num_attention_heads")),
        patch_size=int(d.get("patch_size", d.get("spatial_patch_size", 14))),
        temporal_patch_size=int(d.get("temporal_patch_size", 2)),
        spatial_merge_size=int(d.get("spatial_merge_size", 2)),
        in_channels=int(d.get("in_channels", d.get("in_chans", 3))),
        rope_theta=_rope_theta(d),
    )
    if model_type == "qwen2_vl":
        # Qwen2-VL: `embed_dim` is the ViT width, `hidden_size` the merger output.
        embed_dim = int(_require(d, "embed_dim"))
        return QwenVisionConfig(
            **common,
            hidden_size=embed_dim,
            intermediate_size=int(embed_dim * float(d.get("mlp_ratio", 4))),
            out_hidden_size=int(_require(d, "hidden_size")),
            hidden_act=str(d.get("hidden_act", "quick_gelu")),
        )
    if model_type == "qwen2_5_vl":
        return QwenVisionConfig(
            **common,
            hidden_size=int(_require(d, "hidden_size")),
            intermediate_size=int(_require(d, "intermediate_size")),
            out_hidden_size=int(_require(d, "out_hidden_size")),
            hidden_act=str(d.get("hidden_act", "silu")),
            window_size=int(d.get("window_size", 112)),
            fullatt_block_indexes=_fullatt_blocks(d, common["depth"]),
            tokens_per_second=float(d.get("tokens_per_second", 4)),
        )
    return QwenVisionConfig(
        **common,
        hidden_size=int(_require(d, "hidden_size")),
        intermediate_size=int(_require(d, "intermediate_size")),
        out_hidden_size=int(_require(d, "out_hidden_size")),
        hidden_act=str(d.get("hidden_act", "gelu_pytorch_tanh")),
        num_position_embeddings=int(d.get("num_position_embeddings", 2304)),
        deepstack_visual_indexes=tuple(int(i) for i in d.get("deepstack_visual_indexes", (8, 16, 24))),
    )
