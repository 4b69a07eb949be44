"""Where the text decoder's tensors live in HF checkpoints, per layout.

Shared by the family tables (llama.py, qwen2.py, qwen3.py), which only say
which tensors a decoder layer has. Layouts seen in the wild:

  text-only CausalLM (all versions):  model.layers.N...        lm_head.weight
  LLaVA-NeXT on the Hub / saved by t5: language_model.model.layers.N...  language_model.lm_head.weight
  Qwen2-VL / 2.5-VL on the Hub:        model.layers.N...        lm_head.weight
  transformers-5 in memory, Qwen3-VL:  model.language_model.layers.N...  lm_head.weight

In a multimodal model the decoder sits under "language_model/" in the Flax
tree; a text-only model's decoder is the root.
"""

from __future__ import annotations

from collections.abc import Sequence

from convert.rules import LAYER, Rule, prefixed

CAUSAL_LM_PREFIXES = ("model.",)
MULTIMODAL_PREFIXES = ("model.language_model.", "language_model.model.", "model.")
CAUSAL_LM_HEADS = ("lm_head.",)
MULTIMODAL_HEADS = ("lm_head.", "language_model.lm_head.")

# Tensors every decoder family has: (HF suffix regex, Flax path, transform).
COMMON_BODY: tuple[tuple[str, str, str], ...] = (
    (r"embed_tokens\.weight", "embed_tokens/embedding", "none"),
    (r"norm\.weight", "norm/scale", "none"),
    (LAYER + r"input_layernorm\.weight", "layers/{layer}/input_layernorm/scale", "none"),
    (LAYER + r"post_attention_layernorm\.weight", "layers/{layer}/post_attention_layernorm/scale", "none"),
    (LAYER + r"self_attn\.(?P<p>[qkvo])_proj\.weight", "layers/{layer}/self_attn/{p}_proj/kernel", "linear"),
    (LAYER + r"mlp\.(?P<p>gate|up|down)_proj\.weight", "layers/{layer}/mlp/{p}_proj/kernel", "linear"),
)

# Buffers some older checkpoints carry; they are recomputed, never loaded.
DROPPED = (Rule(r"(.*\.)?rotary_emb\.inv_freq", None),)


def text_rules(layer_extras: Sequence[tuple[str, str, str]], multimodal: bool) -> list[Rule]:
    """All rules for one decoder family under the layouts of a text-only or multimodal model."""
    body_prefixes = MULTIMODAL_PREFIXES if multimodal else CAUSAL_LM_PREFIXES
    head_prefixes = MULTIMODAL_HEADS if multimodal else CAUSAL_LM_HEADS
    root = "language_model/" if multimodal else ""
    body = (*COMMON_BODY, *layer_extras)
    # lm_head is optional: tied-embedding models have no lm_head param, and some
    # checkpoints still store the (identical) tensor.
    head = prefixed([(r"weight", "lm_head/kernel", "linear")], head_prefixes, root, optional=True)
    return [*prefixed(body, body_prefixes, root), *head, *DROPPED]
