"""Key map of LLaVA-NeXT's image side: CLIP tower, projector, image_newline.

Accepted HF key layouts (all map to the Flax paths of `models.llava_next.LlavaNextImageEncoder`,
the same at the root of the full `models.llava_next_model.LlavaNextModel`):
- the Hub's llava-hf checkpoints:      `vision_tower.vision_model.encoder.layers.0...`
- transformers-5 `save_pretrained`:    `vision_tower.encoder.layers.0...`
- transformers-5 in-memory names:      `model.vision_tower.encoder.layers.0...`
and likewise `multi_modal_projector.linear_1.*` and `image_newline`, with an optional
`model.` prefix.

Each spec is (regex on the HF key, Flax path template, transform) in the Rule
format of convert/rules.py: "linear" = transpose [out, in] -> [in, out];
"conv2d" = Conv2d weight [D, C, P, P] -> HWIO [P, P, C, D]; "none" = as is.
"""

from __future__ import annotations

from convert.rules import Rule

_MODEL = r"^(?:model\.)?"
_TOWER = _MODEL + r"vision_tower\.(?:vision_model\.)?"
_LAYER = _TOWER + r"encoder\.layers\.(?P<i>\d+)\."
_TOWER_OUT = "vision_tower/"
_LAYER_OUT = "vision_tower/encoder/layers/{i}/"

CLIP_VISION_KEY_SPECS: tuple[tuple[str, str, str], ...] = (
    # embeddings
    (_TOWER + r"embeddings\.patch_embedding\.weight$", _TOWER_OUT + "embeddings/patch_embedding/kernel", "conv2d"),
    (_TOWER + r"embeddings\.class_embedding$", _TOWER_OUT + "embeddings/class_embedding", "none"),
    (_TOWER + r"embeddings\.position_embedding\.weight$", _TOWER_OUT + "embeddings/position_embedding/embedding",
     "none"),
    # tower-level LayerNorms (HF spells the first one "pre_layrnorm")
    (_TOWER + r"(?P<ln>pre_layrnorm|post_layernorm)\.weight$", _TOWER_OUT + "{ln}/scale", "none"),
    (_TOWER + r"(?P<ln>pre_layrnorm|post_layernorm)\.bias$", _TOWER_OUT + "{ln}/bias", "none"),
    # encoder layers
    (_LAYER + r"(?P<ln>layer_norm[12])\.weight$", _LAYER_OUT + "{ln}/scale", "none"),
    (_LAYER + r"(?P<ln>layer_norm[12])\.bias$", _LAYER_OUT + "{ln}/bias", "none"),
    (_LAYER + r"self_attn\.(?P<p>[qkv]_proj|out_proj)\.weight$", _LAYER_OUT + "self_attn/{p}/kernel", "linear"),
    (_LAYER + r"self_attn\.(?P<p>[qkv]_proj|out_proj)\.bias$", _LAYER_OUT + "self_attn/{p}/bias", "none"),
    (_LAYER + r"mlp\.(?P<p>fc[12])\.weight$", _LAYER_OUT + "mlp/{p}/kernel", "linear"),
    (_LAYER + r"mlp\.(?P<p>fc[12])\.bias$", _LAYER_OUT + "mlp/{p}/bias", "none"),
    # projector and the row-end token
    (_MODEL + r"multi_modal_projector\.(?P<p>linear_[12])\.weight$", "multi_modal_projector/{p}/kernel", "linear"),
    (_MODEL + r"multi_modal_projector\.(?P<p>linear_[12])\.bias$", "multi_modal_projector/{p}/bias", "none"),
    (_MODEL + r"image_newline$", "image_newline", "none"),
)


def vision_rules(model_type: str) -> list[Rule]:
    """LLaVA-NeXT's vision rules (the hook convert/keymaps/__init__.py calls)."""
    if model_type != "llava_next":
        raise ValueError(f"vision_clip key map serves llava_next, not {model_type!r}")
    return [Rule(pattern, target, transform) for pattern, target, transform in CLIP_VISION_KEY_SPECS]
