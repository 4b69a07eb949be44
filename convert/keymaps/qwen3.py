"""Qwen3 decoder (text part of Qwen3-VL): key-map table."""

from __future__ import annotations

from convert.keymaps.text import text_rules
from convert.rules import LAYER, Rule

LAYER_EXTRAS = (
    # per-head RMSNorm on queries and keys, weight [head_dim]
    (LAYER + r"self_attn\.(?P<p>[qk])_norm\.weight", "layers/{layer}/self_attn/{p}_norm/scale", "none"),
    # `attention_bias` (off in released models) covers all four projections
    (LAYER + r"self_attn\.(?P<p>[qkvo])_proj\.bias", "layers/{layer}/self_attn/{p}_proj/bias", "none"),
)


def rules(multimodal: bool) -> list[Rule]:
    return text_rules(LAYER_EXTRAS, multimodal)
