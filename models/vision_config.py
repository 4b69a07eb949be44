"""Vision-side configs of the multimodal families, parsed from a raw `config.json` dict.

`parse_vision_config(model_type, raw)` is the one entry point the model config
(models/config.py) calls: LLaVA-NeXT gets a `LlavaNextVisionConfig` (CLIP tower
+ projector + anyres settings) parsed here; the Qwen-VL families are parsed by
`models.qwen_vision.config`, imported lazily so this module stays light.

Missing fields take the defaults transformers itself would use, because Hub
configs spell out only what differs from them (LLaVA-NeXT's `vision_config`
often lists just the sizes).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

QWEN_VISION_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
VISION_MODEL_TYPES = ("llava_next", *QWEN_VISION_MODEL_TYPES)
SELECT_STRATEGIES = ("default", "full")
CLIP_ACTIVATIONS = ("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu")

# LlavaNextConfig's default CLIP tower (CLIP ViT-L/14-336) when `vision_config` is absent.
_LLAVA_NEXT_DEFAULT_TOWER = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    image_size=336, patch_size=14,
)
_LLAVA_NEXT_DEFAULT_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


@dataclasses.dataclass(frozen=True)
class ClipVisionConfig:
    """CLIP ViT vision tower (HF CLIPVisionConfig fields that change the forward)."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    image_size: int = 224
    patch_size: int = 32
    num_channels: int = 3
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"CLIP hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(f"CLIP image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.hidden_act not in CLIP_ACTIVATIONS:
            raise ValueError(f"CLIP hidden_act {self.hidden_act!r} unsupported; expected one of {CLIP_ACTIVATIONS}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def grid_side(self) -> int:
        """Patches per side of one crop (24 for ViT-L/14-336)."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_side**2

    @property
    def patch_dim(self) -> int:
        """Length of one flattened patch (C * P * P), the patch embedding's input width."""
        return self.num_channels * self.patch_size**2


@dataclasses.dataclass(frozen=True)
class LlavaNextVisionConfig:
    """Everything on the image side of LLaVA-NeXT: CLIP tower, feature choice, projector, anyres grid."""

    tower: ClipVisionConfig
    feature_layers: tuple[int, ...] = (-2,)  # hidden-state indices (0 = embeddings), concatenated
    feature_layer_is_list: bool = False  # HF's `vision_feature_layer` was a list (kept for round trips)
    select_strategy: str = "default"  # "default" drops CLS, "full" keeps it
    image_grid_pinpoints: tuple[tuple[int, int], ...] = _LLAVA_NEXT_DEFAULT_PINPOINTS  # (height, width)
    projector_hidden_act: str = "gelu"
    projector_bias: bool = True

    def __post_init__(self):
        if self.select_strategy not in SELECT_STRATEGIES:
            raise ValueError(
                f"vision_feature_select_strategy {self.select_strategy!r}; expected one of {SELECT_STRATEGIES}"
            )
        if not self.feature_layers:
            raise ValueError("vision_feature_layer is empty")
        n_states = self.tower.num_hidden_layers + 1
        for layer in self.feature_layers:
            if not -n_states <= layer < n_states:
                raise ValueError(
                    f"vision_feature_layer {layer} out of range for a tower with {n_states} hidden states"
                )
        if not self.image_grid_pinpoints:
            raise ValueError("image_grid_pinpoints is empty")
        for h, w in self.image_grid_pinpoints:
            if h <= 0 or w <= 0 or h % self.tower.image_size or w % self.tower.image_size:
                raise ValueError(
                    f"image_grid_pinpoint ({h}, {w}) is not a positive multiple of the crop size "
                    f"{self.tower.image_size}"
                )
        if self.projector_hidden_act not in CLIP_ACTIVATIONS:
            raise ValueError(
                f"projector_hidden_act {self.projector_hidden_act!r} unsupported; expected one of {CLIP_ACTIVATIONS}"
            )

    @property
    def resolved_feature_layers(self) -> tuple[int, ...]:
        """Feature layers as non-negative hidden-state indices."""
        n_states = self.tower.num_hidden_layers + 1
        return tuple(layer % n_states for layer in self.feature_layers)

    @property
    def tokens_per_crop(self) -> int:
        """Tokens one crop contributes: the patch grid, plus CLS under the "full" strategy."""
        return self.tower.num_patches + (1 if self.select_strategy == "full" else 0)

    @property
    def projector_in_features(self) -> int:
        return self.tower.hidden_size * len(self.feature_layers)


def parse_clip_vision_config(raw: Mapping[str, Any]) -> ClipVisionConfig:
    """A CLIP `vision_config` dict (HF field names) -> ClipVisionConfig; unknown fields are ignored."""
    fields = {f.name for f in dataclasses.fields(ClipVisionConfig)}
    kwargs = {k: v for k, v in raw.items() if k in fields and v is not None}
    for name in ("image_size", "patch_size"):
        if isinstance(kwargs.get(name), (list, tuple)):
            h, w = kwargs[name]
            if h != w:
                raise ValueError(f"CLIP {name} {kwargs[name]} must be square")
            kwargs[name] = h
    return ClipVisionConfig(**kwargs)


def parse_llava_next_vision_config(raw: Mapping[str, Any]) -> LlavaNextVisionConfig:
    """The top-level LLaVA-NeXT config dict (either layout) -> LlavaNextVisionConfig."""
    tower_raw = raw.get("vision_config")
    if tower_raw is None:
        tower_raw = _LLAVA_NEXT_DEFAULT_TOWER
    model_type = tower_raw.get("model_type", "clip_vision_model")
    if model_type not in ("clip_vision_model", "clip"):
        raise ValueError(f"llava_next vision_config.model_type {model_type!r}: only the CLIP tower is supported")
    layer = raw.get("vision_feature_layer", -2)
    is_list = isinstance(layer, (list, tuple))
    pinpoints = raw.get("image_grid_pinpoints") or _LLAVA_NEXT_DEFAULT_PINPOINTS
    return LlavaNextVisionConfig(
        tower=parse_clip_vision_config(tower_raw),
        feature_layers=tuple(int(x) for x in layer) if is_list else (int(layer),),
        feature_layer_is_list=is_list,
        select_strategy=raw.get("vision_feature_select_strategy", "default"),
        image_grid_pinpoints=tuple((int(h), int(w)) for h, w in pinpoints),
        projector_hidden_act=raw.get("projector_hidden_act", "gelu"),
        projector_bias=bool(raw.get("multimodal_projector_bias", True)),
    )


def parse_vision_config(model_type: str, raw: Mapping[str, Any]):
    """Vision config of a multimodal `model_type` from its raw top-level config dict."""
    if model_type == "llava_next":
        return parse_llava_next_vision_config(raw)
    if model_type in QWEN_VISION_MODEL_TYPES:
        from models.qwen_vision.config import parse_qwen_vision_config  # lazy: E2's module

        return parse_qwen_vision_config(model_type, raw)
    raise ValueError(f"no vision tower for model_type {model_type!r}; expected one of {VISION_MODEL_TYPES}")
