"""Real-shape configs of the published checkpoints, as HF-style `config.json` dicts.

    from jax_pruning import presets
    raw = presets.config("qwen2.5-vl-7b")        # a fresh dict; models.config.load_config(raw) parses it
    presets.get("llava-next-8b").visual_tokens   # 2928: the default image's visual tokens per sample

No weights: the planner (`jaxprune plan`) and the benchmarks build these models
abstractly (`models.params.abstract_model`) or with random weights. The figures
are the architecture fields of each checkpoint's public `config.json` on the
Hugging Face Hub:

  llava-next-8b   llava-hf/llama3-llava-next-8b-hf: Llama-3-8B text (vocabulary 128,320 with the
                  added image / pad tokens), CLIP ViT-L/14-336, 1024 -> 4096 -> 4096 GELU projector.
  qwen2-vl-7b     Qwen/Qwen2-VL-7B-Instruct (flat layout; the vision `hidden_size` is the merger's
                  output width, `embed_dim` the ViT width).
  qwen2.5-vl-7b   Qwen/Qwen2.5-VL-7B-Instruct (flat layout).
  qwen2.5-vl-72b  Qwen/Qwen2.5-VL-72B-Instruct (flat layout): text as Qwen2.5-72B (hidden 8192,
                  80 layers, 64 / 8 heads, intermediate 29568, vocabulary 152064); vision 32 blocks
                  of width 1280 with SwiGLU intermediate 3456 (not the 7B's 3420), out_hidden_size
                  8192. Checked against the Hub's config.json of Qwen/Qwen2.5-VL-72B-Instruct-AWQ
                  (huggingface.co/Qwen/Qwen2.5-VL-72B-Instruct-AWQ/blob/main/config.json: same text and
                  vision fields, except its intermediate_size 29696, which AWQ pads to its 128-group
                  quantisation; the bf16 checkpoint and Qwen2.5-72B use 29568) and against the 73.4B
                  parameters the Hub lists for the bf16 checkpoint.
  qwen3-vl-8b     Qwen/Qwen3-VL-8B-Instruct (nested `text_config`, interleaved M-RoPE, q/k norm,
                  deepstack).

Default image per preset (what `visual_tokens` counts): LLaVA-NeXT one 672x672 image
(576 base + 48 x 48 tiles + 48 newlines = 2,928 tokens); the Qwen families 1,280
tokens (Qwen2/2.5-VL: a 896x1120 image, 28 px per token; Qwen3-VL: 1024x1280, 32 px).

The builder functions (`llama_text`, `llava_next`, `qwen2_5_vl`, `mrope_section`)
also make the narrower benchmark configs of benchmarks/shapes.py, so both share one
copy of the layout.
"""

from __future__ import annotations

import copy
import dataclasses

LLAVA_NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
QWEN_TOKEN_IDS = (151655, 151656, 151652, 151653, 151643)  # image, video, vision start, vision end, pad


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    config: dict  # HF config.json dict (copy it before changing it: `presets.config(name)` does)
    image_hw: tuple[int, int]  # (height, width) of the default image
    visual_tokens: int  # visual tokens that image gives one sample (LLaVA-NeXT: newlines included)
    source: str  # the Hub checkpoint whose config.json the figures come from


# ---- builders (also used by benchmarks/shapes.py for its narrower CPU-sized configs) --------------

def llama_text(hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, **extra) -> dict:
    """A Llama `text_config`."""
    return dict(model_type="llama", hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, head_dim=head_dim, intermediate_size=intermediate, vocab_size=vocab,
                max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False, **extra)


def llava_next(text: dict, hidden, layers, heads, intermediate, crop, patch, pinpoints, image_id, pad_id) -> dict:
    """A LLaVA-NeXT config (nested layout) with a CLIP tower, feature layer -2, "default" selection."""
    vision = dict(model_type="clip_vision_model", hidden_size=hidden, intermediate_size=intermediate,
                  num_hidden_layers=layers, num_attention_heads=heads, image_size=crop, patch_size=patch,
                  hidden_act="quick_gelu", projection_dim=768)
    return dict(model_type="llava_next", architectures=["LlavaNextForConditionalGeneration"],
                text_config=dict(text, pad_token_id=pad_id), vision_config=vision, image_token_index=image_id,
                image_grid_pinpoints=pinpoints, vision_feature_layer=-2, vision_feature_select_strategy="default",
                projector_hidden_act="gelu", tie_word_embeddings=False)


def mrope_section(head_dim: int) -> list[int]:
    """[16, 24, 24] at head_dim 128, scaled to narrower heads (sums to head_dim / 2)."""
    half = head_dim // 2
    t = half // 4
    rest = half - t
    return [t, rest // 2, rest - rest // 2]


def qwen2_5_vl(hidden, layers, heads, kv_heads, intermediate, vocab, v_depth, v_hidden, v_intermediate, v_heads,
               fullatt, ids=QWEN_TOKEN_IDS) -> dict:
    """A Qwen2.5-VL config (flat layout): window attention with full-attention blocks `fullatt`."""
    image, video, start, end, pad = ids
    vision = dict(depth=v_depth, hidden_size=v_hidden, intermediate_size=v_intermediate, num_heads=v_heads,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                  fullatt_block_indexes=fullatt, out_hidden_size=hidden, tokens_per_second=2, hidden_act="silu",
                  in_chans=3)
    return dict(model_type="qwen2_5_vl", architectures=["Qwen2_5_VLForConditionalGeneration"],
                hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, intermediate_size=intermediate, vocab_size=vocab,
                max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
                rope_scaling=dict(type="mrope", mrope_section=mrope_section(hidden // heads)),
                tie_word_embeddings=False, vision_config=vision, image_token_id=image, video_token_id=video,
                vision_start_token_id=start, vision_end_token_id=end, pad_token_id=pad, bos_token_id=pad,
                eos_token_id=pad)


def qwen2_vl(hidden, layers, heads, kv_heads, intermediate, vocab, v_depth, v_embed, v_heads, mlp_ratio=4,
             ids=QWEN_TOKEN_IDS) -> dict:
    """A Qwen2-VL config (flat layout): the vision `hidden_size` is the merger's output (= LLM) width."""
    image, video, start, end, pad = ids
    vision = dict(depth=v_depth, embed_dim=v_embed, mlp_ratio=mlp_ratio, num_heads=v_heads, in_chans=3,
                  hidden_size=hidden, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                  hidden_act="quick_gelu")
    return dict(model_type="qwen2_vl", architectures=["Qwen2VLForConditionalGeneration"],
                hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, intermediate_size=intermediate, vocab_size=vocab,
                max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6, hidden_act="silu",
                rope_scaling=dict(type="mrope", mrope_section=mrope_section(hidden // heads)),
                tie_word_embeddings=False, vision_config=vision, image_token_id=image, video_token_id=video,
                vision_start_token_id=start, vision_end_token_id=end, pad_token_id=pad, bos_token_id=pad,
                eos_token_id=151645)


def qwen3_vl(hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, v_depth, v_hidden, v_intermediate,
             v_heads, deepstack, ids=QWEN_TOKEN_IDS) -> dict:
    """A Qwen3-VL config (nested layout): interleaved M-RoPE, q/k norm, deepstack mergers."""
    image, video, start, end, pad = ids
    text = dict(model_type="qwen3_vl_text", hidden_size=hidden, intermediate_size=intermediate,
                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                head_dim=head_dim, rms_norm_eps=1e-6, rope_theta=5000000, vocab_size=vocab,
                max_position_embeddings=262144, eos_token_id=151645, hidden_act="silu",
                rope_scaling=dict(mrope_interleaved=True, mrope_section=[24, 20, 20], rope_type="default"))
    vision = dict(model_type="qwen3_vl", depth=v_depth, hidden_size=v_hidden, intermediate_size=v_intermediate,
                  num_heads=v_heads, patch_size=16, temporal_patch_size=2, spatial_merge_size=2,
                  num_position_embeddings=2304, deepstack_visual_indexes=deepstack, out_hidden_size=hidden,
                  hidden_act="gelu_pytorch_tanh", in_channels=3)
    return dict(model_type="qwen3_vl", architectures=["Qwen3VLForConditionalGeneration"], text_config=text,
                vision_config=vision, image_token_id=image, video_token_id=video, vision_start_token_id=start,
                vision_end_token_id=end, tie_word_embeddings=False)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("llava-next-8b", llava_next(
        llama_text(4096, 32, 32, 8, 128, 14336, 128320, rope_theta=500000.0),
        1024, 24, 16, 4096, 336, 14, LLAVA_NEXT_PINPOINTS, 128256, 128001),
        (672, 672), 2928, "llava-hf/llama3-llava-next-8b-hf"),
    Preset("qwen2-vl-7b", qwen2_vl(3584, 28, 28, 4, 18944, 152064, 32, 1280, 16),
           (896, 1120), 1280, "Qwen/Qwen2-VL-7B-Instruct"),
    Preset("qwen2.5-vl-7b", qwen2_5_vl(3584, 28, 28, 4, 18944, 152064, 32, 1280, 3420, 16, [7, 15, 23, 31]),
           (896, 1120), 1280, "Qwen/Qwen2.5-VL-7B-Instruct"),
    Preset("qwen2.5-vl-72b", qwen2_5_vl(8192, 80, 64, 8, 29568, 152064, 32, 1280, 3456, 16, [7, 15, 23, 31]),
           (896, 1120), 1280, "Qwen/Qwen2.5-VL-72B-Instruct"),
    Preset("qwen3-vl-8b", qwen3_vl(4096, 36, 32, 8, 128, 12288, 151936, 27, 1152, 4304, 16, [8, 16, 24]),
           (1024, 1280), 1280, "Qwen/Qwen3-VL-8B-Instruct"),
)}


def names() -> tuple[str, ...]:
    return tuple(PRESETS)


def get(name: str) -> Preset:
    """The preset called `name` (ValueError naming the known ones otherwise)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def config(name: str) -> dict:
    """A fresh copy of the preset's HF config dict."""
    return copy.deepcopy(get(name).config)
