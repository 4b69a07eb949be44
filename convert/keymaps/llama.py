"""Llama / Mistral decoder (text part of LLaVA-NeXT): key-map table."""

from __future__ import annotations

from convert.keymaps.text import text_rules
from convert.rules import LAYER, Rule

# Llama's `attention_bias` puts a bias on all four attention projections.
LAYER_EXTRAS = ((LAYER + r"self_attn\.(?P<p>[qkvo])_proj\.bias", "layers/{layer}/self_attn/{p}_proj/bias", "none"),)


def rules(multimodal: bool) -> list[Rule]:
    return text_rules(LAYER_EXTRAS, multimodal)
