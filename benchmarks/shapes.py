"""Benchmark model presets as HF config dicts, random-weight builders, and the real models' FLOP bounds.

Presets:
- real: "llava_next_8b", "qwen2_5_vl_7b" (MODEL_SHAPES.md). Never allocated here:
  only parsed, built abstractly (`models.params.abstract_model`) and costed analytically.
- cpu: the same architectures, fewer and narrower layers, realistic visual-token
  counts (LLaVA-NeXT: one 672x672 image on a 24x24 base grid -> 2,928 tokens;
  Qwen2.5-VL: a 896x1120 image -> 32x40 = 1,280 tokens), seconds per prefill here.
- micro: the same again, tiny images, for the smoke tests.

`build(preset, folder)` makes the HF model from the config with `torch.manual_seed`,
saves it and loads it with `models.load` (same weights on both sides).
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np

LLAVA_IMAGE_ID, LLAVA_PAD_ID = 43, 41  # ids of tests.models.llava_tiny's word tokenizer
QWEN_PAD_ID, QWEN_IMAGE_ID = 120, 123  # ids of tests.models.qwen_tiny's word tokenizer
REAL_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
PROMPT_TOKENS = 60  # a VQA prompt with its chat template, for the real models' FLOP figures


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    family: str  # "llava_next" | "qwen2_5_vl"
    config: dict  # HF config dict
    image_hw: tuple[int, int]  # (height, width) of the benchmark image
    crop: int = 336  # LLaVA: crop size; Qwen: unused
    patch: int = 14


def _llama_text(hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, **extra) -> dict:
    return dict(model_type="llama", hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, head_dim=head_dim, intermediate_size=intermediate, vocab_size=vocab,
                max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=False, **extra)


def _llava(text: dict, hidden, layers, heads, intermediate, crop, patch, pinpoints, image_id, pad_id) -> dict:
    vision = dict(model_type="clip_vision_model", hidden_size=hidden, intermediate_size=intermediate,
                  num_hidden_layers=layers, num_attention_heads=heads, image_size=crop, patch_size=patch,
                  hidden_act="quick_gelu", projection_dim=768)
    return dict(model_type="llava_next", architectures=["LlavaNextForConditionalGeneration"],
                text_config=dict(text, pad_token_id=pad_id), vision_config=vision, image_token_index=image_id,
                image_grid_pinpoints=pinpoints, vision_feature_layer=-2, vision_feature_select_strategy="default",
                projector_hidden_act="gelu", tie_word_embeddings=False)


def _qwen25(hidden, layers, heads, kv_heads, intermediate, vocab, v_depth, v_hidden, v_intermediate, v_heads,
            fullatt, ids=(151655, 151656, 151652, 151653, 151643)) -> dict:
    image, video, start, end, pad = ids
    vision = dict(depth=v_depth, hidden_size=v_hidden, intermediate_size=v_intermediate, num_heads=v_heads,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                  fullatt_block_indexes=fullatt, out_hidden_size=hidden, tokens_per_second=2, hidden_act="silu",
                  in_chans=3)
    return dict(model_type="qwen2_5_vl", architectures=["Qwen2_5_VLForConditionalGeneration"],
                hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, intermediate_size=intermediate, vocab_size=vocab,
                max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
                rope_scaling=dict(type="mrope", mrope_section=_mrope_section(hidden // heads)),
                tie_word_embeddings=False, vision_config=vision, image_token_id=image, video_token_id=video,
                vision_start_token_id=start, vision_end_token_id=end, pad_token_id=pad, bos_token_id=pad,
                eos_token_id=pad)


def _mrope_section(head_dim: int) -> list[int]:
    """[16, 24, 24] at head_dim 128, scaled to narrower heads (sums to head_dim / 2)."""
    half = head_dim // 2
    t = half // 4
    rest = half - t
    return [t, rest // 2, rest - rest // 2]


_QWEN_TEST_IDS = (QWEN_IMAGE_ID, 124, 121, 122, QWEN_PAD_ID)

PRESETS: dict[str, Preset] = {
    "llava_next_8b": Preset("llava_next_8b", "llava_next", _llava(
        _llama_text(4096, 32, 32, 8, 128, 14336, 128320, rope_theta=500000.0),
        1024, 24, 16, 4096, 336, 14, REAL_PINPOINTS, 128256, 128001), (672, 672)),
    "qwen2_5_vl_7b": Preset("qwen2_5_vl_7b", "qwen2_5_vl", _qwen25(
        3584, 28, 28, 4, 18944, 152064, 32, 1280, 3420, 16, [7, 15, 23, 31]), (896, 1120)),
    "llava_next_cpu": Preset("llava_next_cpu", "llava_next", _llava(
        _llama_text(256, 6, 8, 2, 32, 768, 512, rope_theta=500000.0),
        64, 3, 4, 128, 336, 14, REAL_PINPOINTS, LLAVA_IMAGE_ID, LLAVA_PAD_ID), (672, 672)),
    "qwen2_5_vl_cpu": Preset("qwen2_5_vl_cpu", "qwen2_5_vl", _qwen25(
        256, 6, 8, 2, 768, 512, 4, 64, 128, 4, [3], ids=_QWEN_TEST_IDS), (896, 1120)),
    "llava_next_micro": Preset("llava_next_micro", "llava_next", _llava(
        _llama_text(32, 3, 4, 2, 8, 64, 64),
        16, 2, 2, 32, 30, 5, [[30, 60], [60, 30], [60, 60]], LLAVA_IMAGE_ID, LLAVA_PAD_ID),
        (60, 60), crop=30, patch=5),
    "qwen2_5_vl_micro": Preset("qwen2_5_vl_micro", "qwen2_5_vl", _qwen25(
        32, 3, 4, 2, 64, 128, 2, 16, 32, 2, [1], ids=_QWEN_TEST_IDS), (112, 112)),
}
REAL = ("llava_next_8b", "qwen2_5_vl_7b")
CPU = ("llava_next_cpu", "qwen2_5_vl_cpu")
MICRO = ("llava_next_micro", "qwen2_5_vl_micro")


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def hf_config(preset: Preset):
    from transformers import CONFIG_MAPPING

    raw = dict(preset.config)
    return CONFIG_MAPPING[raw.pop("model_type")](**raw)


def build(preset: Preset, folder, seed: int = 0):
    """(HF torch model in eval mode, our model loaded from its saved folder): the same random weights."""
    import torch
    from transformers import AutoModelForImageTextToText

    import models

    torch.manual_seed(seed)
    hf = AutoModelForImageTextToText.from_config(hf_config(preset)).eval()
    hf.save_pretrained(folder)
    return hf, models.load(folder)


def random_image(height: int, width: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def prompt_words(n: int) -> str:
    return " ".join(f"w{i % 40}" for i in range(n))


def inputs(preset: Preset, batch: int = 1, prompt_tokens: int = 60, seed: int = 0) -> dict:
    """Processor outputs (NumPy) for `batch` samples: one image of the preset's size + a prompt."""
    images = [random_image(*preset.image_hw, seed=seed + i) for i in range(batch)]
    if preset.family == "llava_next":
        from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

        from tests.models.llava_tiny import tokenizer

        pinpoints = preset.config["image_grid_pinpoints"]
        processor = LlavaNextProcessor(
            image_processor=LlavaNextImageProcessorPil(size={"shortest_edge": preset.crop},
                                                       crop_size={"height": preset.crop, "width": preset.crop},
                                                       image_grid_pinpoints=pinpoints),
            tokenizer=tokenizer(), patch_size=preset.patch, vision_feature_select_strategy="default",
            num_additional_image_tokens=1)
        texts = [f"<image> {prompt_words(prompt_tokens)}"] * batch
        out = processor(images=images, text=texts, return_tensors="np", padding=True)
        return {k: np.asarray(v) for k, v in out.items()}
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from models.qwen_inputs import prepare_qwen_inputs
    from tests.models.qwen_tiny import tokenizer

    h, w = preset.image_hw
    processor = Qwen2VLImageProcessorPil(patch_size=14, temporal_patch_size=2, merge_size=2,
                                         min_pixels=56 * 56, max_pixels=h * w)
    texts = [f"<|vision_start|><|image_pad|><|vision_end|> {prompt_words(prompt_tokens)}"] * batch
    out = prepare_qwen_inputs(texts, images, tokenizer=tokenizer(), image_processor=processor)
    out.pop("images_per_sample", None)
    return out


# ---- analytic FLOP bounds of the real models (no allocation) -------------------------------------

def real_visual_tokens(preset: Preset) -> tuple[int, int]:
    """(content tokens, newline tokens) of the preset's benchmark image."""
    h, w = preset.image_hw
    if preset.family == "llava_next":
        side = preset.crop // preset.patch  # 24
        rows, cols = h // preset.crop * side, w // preset.crop * side  # 48 x 48 (672x672 fits a pinpoint)
        return side * side + rows * cols, rows
    return (h // 28) * (w // 28), 0


def _tokens(content: int, newlines: int):
    from models.visual_tokens import KIND_NEWLINE

    kind = np.array([[0] * content + [KIND_NEWLINE] * newlines])
    return types.SimpleNamespace(valid=np.ones_like(kind, bool), kind=kind)


def flop_bound(name: str, keep_ratios=(0.5, 0.3, 0.1, 0.05), text_tokens: int = PROMPT_TOKENS,
               count_params: bool = True) -> dict:
    """Unpruned / pre-LLM-pruned prefill FLOPs of a real preset, per keep ratio; count_params builds the
    model abstractly (no allocation, ~10 s for 8B) to count its parameters."""
    from jax_pruning.engine import flops
    from models.config import load_config
    from models.params import abstract_model, flat_param_shapes

    preset = get(name)
    config = load_config(preset.config)
    params = None
    if count_params:
        params = sum(int(np.prod(s)) for s in flat_param_shapes(abstract_model(config)).values())
    content, newlines = real_visual_tokens(preset)
    h, w = preset.image_hw
    images = {"image_sizes": np.array([[h, w]])} if preset.family == "llava_next" else \
        {"image_grid_thw": np.array([[1, h // 14, w // 14]])}
    tower, projector = (float(np.sum(x)) for x in flops.vision_flops(config, _tokens(content, newlines), images))
    t = config.text

    def llm(seen):
        return float(t.num_hidden_layers * flops.llm_layer_flops(t, seen) + flops.head_flops(t))

    def budget(ratio):  # visual tokens the LLM sees after plain pre-LLM pruning (MR-Pruner official budget)
        if preset.family == "llava_next":
            return int(ratio * (content + newlines)) + newlines
        return int(ratio * content)

    unpruned = llm(text_tokens + content + newlines) + tower + projector
    rows = []
    for ratio in (*keep_ratios, 0.0):  # keep 0: the cap (vision + text only)
        pruned = llm(text_tokens + budget(ratio)) + tower + projector
        rows.append({"keep_ratio": ratio, "visual_tokens_seen": budget(ratio),
                     "unpruned_flops": unpruned, "pruned_flops": pruned, "flop_bound": unpruned / pruned})
    return {"preset": name, "parameters": params, "text_tokens": text_tokens, "visual_tokens": content + newlines,
            "vision_tower_flops": tower, "projector_flops": projector,
            "vision_share_of_unpruned": (tower + projector) / unpruned,
            "rows": rows}


if __name__ == "__main__":
    import json

    for n in REAL:
        print(json.dumps(flop_bound(n), indent=1))
