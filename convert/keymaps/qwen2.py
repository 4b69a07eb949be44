"""Qwen2 decoder (text part of Qwen2-VL and Qwen2.5-VL): key-map table."""

from __future__ import annotations

from convert.keymaps.text import text_rules
from convert.rules import LAYER, Rule

# Qwen2 always has q/k/v biases and never an o_proj bias.
LAYER_EXTRAS = ((LAYER + r"self_attn\.(?P<p>[qkv])_proj\.bias", "layers/{layer}/self_attn/{p}_proj/bias", "none"),)


def rules(multimodal: bool) -> list[Rule]:
    return text_rules(LAYER_EXTRAS, multimodal)
