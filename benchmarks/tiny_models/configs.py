"""Model sizes and HF configs / processors of the embedded tiny models (easy-VQA and detail-VQA).

Shapes are chosen so an image gives a realistic visual-token layout. easy-VQA
(64x64): LLaVA-NeXT anyres with 32x32 crops, patch 4 (base 8x8 + 2x2 tiles of
8x8 + 16 row newlines = 336 tokens), Qwen2-VL patch 4, a 16x16 patch grid
merged 2x2 into 64 tokens. detail-VQA (128x128): everything doubled - 64x64
crops and patch 8 (the same 336 tokens, each tile token 8x8 px of the image),
Qwen2-VL patch 8 (64 tokens of 16x16 px).
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
    rope_theta: float = 10000.0  # the language model's RoPE base
    mrope_section: tuple[int, int, int] | None = None  # Qwen2-VL (t, h, w) rotary pairs; None: about 1/2, 1/4, 1/4


LLAVA_CROP, LLAVA_PATCH = 32, 4
LLAVA_PINPOINTS = [[64, 64]]
QWEN_PATCH, QWEN_MERGE, QWEN_TEMPORAL = 4, 2, 2
DATASETS = ("easy-vqa", "detail-vqa")


@dataclass(frozen=True)
class Geometry:
    """Image side and patching of one dataset's models (LLaVA: base crop + one 2x2 anyres pinpoint)."""

    image_side: int
    llava_crop: int
    llava_patch: int
    qwen_patch: int

    @property
    def pinpoints(self) -> list[list[int]]:
        return [[self.image_side, self.image_side]]


GEOMETRY = {"easy-vqa": Geometry(IMAGE_SIDE, LLAVA_CROP, LLAVA_PATCH, QWEN_PATCH),
            "detail-vqa": Geometry(128, 64, 8, 8)}


def geometry(data: str) -> Geometry:
    if data not in GEOMETRY:
        raise ValueError(f"data must be one of {DATASETS}, got {data!r}")
    return GEOMETRY[data]


def _text_ids(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
    )


def llava_next_config(tokenizer, sizes: TinySizes = TinySizes(), data: str = "easy-vqa"):
    from transformers import LlavaNextConfig

    geo = geometry(data)
    ids = _text_ids(tokenizer)
    text = dict(
        model_type="llama", hidden_size=sizes.text_hidden, intermediate_size=sizes.text_intermediate,
        num_hidden_layers=sizes.text_layers, num_attention_heads=sizes.text_heads,
        num_key_value_heads=sizes.text_kv_heads, max_position_embeddings=1024, rms_norm_eps=1e-6,
        tie_word_embeddings=False, **ids, **({} if sizes.rope_theta == 10000.0 else {"rope_theta": sizes.rope_theta}),
    )
    vision = dict(
        model_type="clip_vision_model", hidden_size=sizes.vision_hidden, intermediate_size=sizes.vision_intermediate,
        num_hidden_layers=sizes.vision_layers, num_attention_heads=sizes.vision_heads, image_size=geo.llava_crop,
        patch_size=geo.llava_patch, hidden_act="quick_gelu", projection_dim=sizes.vision_hidden,
    )
    return LlavaNextConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=geo.pinpoints, vision_feature_layer=-1, vision_feature_select_strategy="default",
        projector_hidden_act="gelu", tie_word_embeddings=False, **{k: ids[k] for k in ("pad_token_id", "eos_token_id")},
    )


def llava_next_processor(tokenizer, data: str = "easy-vqa"):
    from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

    geo = geometry(data)
    images = LlavaNextImageProcessorPil(
        size={"shortest_edge": geo.llava_crop}, crop_size={"height": geo.llava_crop, "width": geo.llava_crop},
        image_grid_pinpoints=geo.pinpoints,
    )
    return LlavaNextProcessor(
        image_processor=images, tokenizer=tokenizer, patch_size=geo.llava_patch, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=tokenizer.chat_template,
    )


def qwen2_vl_config(tokenizer, sizes: TinySizes = TinySizes(), data: str = "easy-vqa"):
    from transformers import Qwen2VLConfig

    ids = _text_ids(tokenizer)
    half_head = sizes.text_hidden // sizes.text_heads // 2
    section = [half_head - 2 * (half_head // 3), half_head // 3, half_head // 3]  # t, h, w rotary pairs
    if sizes.mrope_section is not None:
        section = list(sizes.mrope_section)
        if sum(section) != half_head:
            raise ValueError(f"mrope_section {section} must add up to head_dim / 2 = {half_head}")
    text = dict(
        hidden_size=sizes.text_hidden, intermediate_size=sizes.text_intermediate, num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.text_heads, num_key_value_heads=sizes.text_kv_heads, max_position_embeddings=1024,
        rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="default", rope_theta=sizes.rope_theta, mrope_section=section), **ids,
    )
    vision = dict(
        depth=sizes.vision_layers, embed_dim=sizes.vision_hidden, num_heads=sizes.vision_heads,
        mlp_ratio=sizes.vision_intermediate // sizes.vision_hidden, hidden_size=sizes.text_hidden,
        patch_size=geometry(data).qwen_patch, spatial_merge_size=QWEN_MERGE, temporal_patch_size=QWEN_TEMPORAL,
    )
    token = tokenizer.convert_tokens_to_ids
    return Qwen2VLConfig(
        text_config=text, vision_config=vision, image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"), vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"), tie_word_embeddings=False,
        **{k: ids[k] for k in ("pad_token_id", "eos_token_id")},
    )


def qwen2_vl_image_processor(data: str = "easy-vqa"):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    geo = geometry(data)
    factor = geo.qwen_patch * QWEN_MERGE
    return Qwen2VLImageProcessorPil(
        patch_size=geo.qwen_patch, temporal_patch_size=QWEN_TEMPORAL, merge_size=QWEN_MERGE,
        min_pixels=(4 * factor) ** 2,
        max_pixels=geo.image_side * geo.image_side,
    )


def build(family: str, sizes: TinySizes = TinySizes(), data: str = "easy-vqa"):
    """-> (config, tokenizer, objects to save beside the weights) of a model for `data` (one of DATASETS)."""
    from benchmarks.tiny_models.tokenizer import build_tokenizer, dataset_words

    geometry(data)
    tokenizer = build_tokenizer(family, dataset_words(data), digits=data == "detail-vqa")
    if family == "llava_next":
        processor = llava_next_processor(tokenizer, data)  # image processor saved alone too: preprocessor_config.json
        return llava_next_config(tokenizer, sizes, data), tokenizer, [processor, processor.image_processor]
    return qwen2_vl_config(tokenizer, sizes, data), tokenizer, [tokenizer, qwen2_vl_image_processor(data)]
