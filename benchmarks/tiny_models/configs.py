"""Model sizes and HF configs / processors of the two embedded easy-VQA models.

Shapes are chosen so a 64x64 easy-VQA image gives a realistic visual-token
layout: LLaVA-NeXT anyres (base 8x8 + 2x2 tiles of 8x8 + 16 row newlines =
336 tokens), Qwen2-VL a 16x16 patch grid merged 2x2 into 64 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_SIDE = 64  # every easy-VQA image is 64x64 RGB


@dataclass(frozen=True)
class TinySizes:
    """Widths/depths of one tiny model (text = Llama / Qwen2 decoder, vision = CLIP / Qwen2-VL ViT)."""

    text_hidden: int = 64
    text_layers: int = 3
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 192
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    vision_intermediate: int = 128


LLAVA_CROP, LLAVA_PATCH = 32, 4
LLAVA_PINPOINTS = [[64, 64]]
QWEN_PATCH, QWEN_MERGE, QWEN_TEMPORAL = 4, 2, 2


def _text_ids(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
    )


def llava_next_config(tokenizer, sizes: TinySizes = TinySizes()):
    from transformers import LlavaNextConfig

    ids = _text_ids(tokenizer)
    text = dict(
        model_type="llama", hidden_size=sizes.text_hidden, intermediate_size=sizes.text_intermediate,
        num_hidden_layers=sizes.text_layers, num_attention_heads=sizes.text_heads,
        num_key_value_heads=sizes.text_kv_heads, max_position_embeddings=1024, rms_norm_eps=1e-6,
        tie_word_embeddings=False, **ids,
    )
    vision = dict(
        model_type="clip_vision_model", hidden_size=sizes.vision_hidden, intermediate_size=sizes.vision_intermediate,
        num_hidden_layers=sizes.vision_layers, num_attention_heads=sizes.vision_heads, image_size=LLAVA_CROP,
        patch_size=LLAVA_PATCH, hidden_act="quick_gelu", projection_dim=sizes.vision_hidden,
    )
    return LlavaNextConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=LLAVA_PINPOINTS, vision_feature_layer=-1, vision_feature_select_strategy="default",
        projector_hidden_act="gelu", tie_word_embeddings=False, **{k: ids[k] for k in ("pad_token_id", "eos_token_id")},
    )


def llava_next_processor(tokenizer):
    from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

    images = LlavaNextImageProcessorPil(
        size={"shortest_edge": LLAVA_CROP}, crop_size={"height": LLAVA_CROP, "width": LLAVA_CROP},
        image_grid_pinpoints=LLAVA_PINPOINTS,
    )
    return LlavaNextProcessor(
        image_processor=images, tokenizer=tokenizer, patch_size=LLAVA_PATCH, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=tokenizer.chat_template,
    )


def qwen2_vl_config(tokenizer, sizes: TinySizes = TinySizes()):
    from transformers import Qwen2VLConfig

    ids = _text_ids(tokenizer)
    half_head = sizes.text_hidden // sizes.text_heads // 2
    section = [half_head - 2 * (half_head // 3), half_head // 3, half_head // 3]  # t, h, w rotary pairs
    text = dict(
        hidden_size=sizes.text_hidden, intermediate_size=sizes.text_intermediate, num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.text_heads, num_key_value_heads=sizes.text_kv_heads, max_position_embeddings=1024,
        rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=section), **ids,
    )
    vision = dict(
        depth=sizes.vision_layers, embed_dim=sizes.vision_hidden, num_heads=sizes.vision_heads,
        mlp_ratio=sizes.vision_intermediate // sizes.vision_hidden, hidden_size=sizes.text_hidden,
        patch_size=QWEN_PATCH, spatial_merge_size=QWEN_MERGE, temporal_patch_size=QWEN_TEMPORAL,
    )
    token = tokenizer.convert_tokens_to_ids
    return Qwen2VLConfig(
        text_config=text, vision_config=vision, image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"), vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"), tie_word_embeddings=False,
        **{k: ids[k] for k in ("pad_token_id", "eos_token_id")},
    )


def qwen2_vl_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    factor = QWEN_PATCH * QWEN_MERGE
    return Qwen2VLImageProcessorPil(
        patch_size=QWEN_PATCH, temporal_patch_size=QWEN_TEMPORAL, merge_size=QWEN_MERGE,
        min_pixels=(4 * factor) ** 2, max_pixels=IMAGE_SIDE * IMAGE_SIDE,
    )


def build(family: str, sizes: TinySizes = TinySizes()):
    """-> (config, tokenizer, objects to save beside the weights)."""
    from benchmarks.tiny_models.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(family)
    if family == "llava_next":
        processor = llava_next_processor(tokenizer)  # image processor saved alone too: preprocessor_config.json
        return llava_next_config(tokenizer, sizes), tokenizer, [processor, processor.image_processor]
    return qwen2_vl_config(tokenizer, sizes), tokenizer, [tokenizer, qwen2_vl_image_processor()]
