"""Tiny random Qwen2-VL / Qwen2.5-VL / Qwen3-VL references for parity tests:
HF configs, a word-level tokenizer (built with `tokenizers`) that knows the
vision special tokens, the real HF image processor (PIL variant) and random
test images. Every parameter (biases, norm weights, pos_embed) is made
non-trivial so a wrong placement cannot go unnoticed.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")

VOCAB_SIZE = 128
PAD_ID, VISION_START_ID, VISION_END_ID, IMAGE_ID, VIDEO_ID = 120, 121, 122, 123, 124
SPECIAL_TOKENS = {
    "<|endoftext|>": PAD_ID,
    "<|vision_start|>": VISION_START_ID,
    "<|vision_end|>": VISION_END_ID,
    "<|image_pad|>": IMAGE_ID,
    "<|video_pad|>": VIDEO_ID,
}
WORDS = [f"w{i}" for i in range(100)]

# (height, width) of test images: square, 2:1, 1:3, tiny (upscaled to min_pixels), large
IMAGE_SIZES = {
    "square": (224, 224),
    "wide_2to1": (112, 224),
    "tall_1to3": (96, 288),
    "tiny": (20, 24),
    "large": (420, 390),
}


def patch_size_of(family: str) -> int:
    return 16 if family == "qwen3_vl" else 14


def vision_config_dict(family: str) -> dict:
    common = dict(depth=3, num_heads=4, patch_size=patch_size_of(family), spatial_merge_size=2, temporal_patch_size=2)
    if family == "qwen2_vl":
        return dict(common, embed_dim=64, mlp_ratio=2, hidden_size=48)
    if family == "qwen2_5_vl":
        return dict(
            common, hidden_size=64, intermediate_size=96, out_hidden_size=48, window_size=112,
            fullatt_block_indexes=[1], tokens_per_second=2,
        )
    return dict(
        common, hidden_size=64, intermediate_size=96, out_hidden_size=48, num_position_embeddings=36,
        deepstack_visual_indexes=[0, 2],
    )


def text_config_dict(family: str) -> dict:
    text = dict(
        vocab_size=VOCAB_SIZE, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6,
        tie_word_embeddings=False, pad_token_id=PAD_ID, bos_token_id=PAD_ID, eos_token_id=PAD_ID,
    )
    if family == "qwen3_vl":
        return dict(text, head_dim=12, rope_parameters=dict(
            rope_type="default", rope_theta=10000.0, mrope_section=[2, 2, 2], mrope_interleaved=True))
    return dict(text, rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[2, 2, 2]))


def hf_config(family: str):
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig, Qwen3VLConfig

    cls = {"qwen2_vl": Qwen2VLConfig, "qwen2_5_vl": Qwen2_5_VLConfig, "qwen3_vl": Qwen3VLConfig}[family]
    config = cls(
        text_config=text_config_dict(family), vision_config=vision_config_dict(family),
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, vision_start_token_id=VISION_START_ID,
        vision_end_token_id=VISION_END_ID, tie_word_embeddings=False,
    )
    config._attn_implementation = "eager"
    return config


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial values everywhere: weights ~ N(0, 1/fan_in), biases and norm offsets ~ N(0, 0.1^2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim == 1:
                base = 1.0 if ("norm" in name or "ln_q" in name) and name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * noise)
            else:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(noise / np.sqrt(fan_in))
    return module


def hf_vision_tower(family: str, seed: int = 0):
    """The HF vision tower alone (no text model), randomised, eval mode, float32."""
    from transformers import Qwen2VLForConditionalGeneration  # noqa: F401  (registers classes)
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

    cls = {
        "qwen2_vl": Qwen2VisionTransformerPretrainedModel,
        "qwen2_5_vl": Qwen2_5_VisionTransformerPretrainedModel,
        "qwen3_vl": Qwen3VLVisionModel,
    }[family]
    vision_config = hf_config(family).vision_config
    vision_config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return randomize_(cls._from_config(vision_config), seed).eval()


def image_processor(family: str):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    p = patch_size_of(family)
    extra = dict(image_mean=[0.5] * 3, image_std=[0.5] * 3) if family == "qwen3_vl" else {}
    return Qwen2VLImageProcessorPil(
        patch_size=p, temporal_patch_size=2, merge_size=2, min_pixels=(2 * p) ** 2 * 4,
        max_pixels=(2 * p) ** 2 * 256, **extra,
    )


def random_image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_images(names=tuple(IMAGE_SIZES)) -> list[Image.Image]:
    return [random_image(*IMAGE_SIZES[n], seed=i) for i, n in enumerate(names)]


def tokenizer():
    """Word-level tokenizer: words `w0..w99`, whitespace split, Qwen vision specials."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    vocab["[UNK]"] = 100
    vocab.update(SPECIAL_TOKENS)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="<|endoftext|>")
    fast.padding_side = "left"
    return fast


def hf_vision_to_flat(state_dict: dict, family: str, strip_prefix: str = "visual/") -> dict:
    """HF vision state dict -> {flax path: array} through the converter's key map for `family`."""
    from convert.keymaps.vision_qwen import vision_rules
    from convert.rules import KeyMap

    keymap = KeyMap(vision_rules(family))
    flat = {}
    for key, tensor in state_dict.items():
        key = key if key.startswith(("visual.", "model.visual.")) else "visual." + key
        match = keymap.match(key)
        if match is None:
            raise KeyError(f"{key}: no key-map rule")
        flat[match.target.removeprefix(strip_prefix)] = match.transform.apply(tensor.detach().numpy(), np.float32)
    return flat


def set_params(module, flat: dict) -> None:
    """Assign every param of `module` from `flat` ({'a/0/b': array}); error on missing/extra/shape."""
    from flax import nnx

    params = {"/".join(str(p) for p in path): var for path, var in nnx.iter_graph(module) if isinstance(var, nnx.Param)}
    missing, extra = sorted(set(params) - set(flat)), sorted(set(flat) - set(params))
    if missing or extra:
        raise KeyError(f"missing {missing}, unexpected {extra}")
    for path, var in params.items():
        if tuple(var.shape) != flat[path].shape:
            raise ValueError(f"{path}: shape {flat[path].shape} != {tuple(var.shape)}")
        var.set_value(flat[path]) if hasattr(var, "set_value") else setattr(var, "value", flat[path])


def hub_flat_config(family: str) -> dict:
    """The tiny config in the Hub's flat transformers-4 layout (Qwen2-VL / Qwen2.5-VL): text fields at the
    top, `rope_scaling: {type: mrope, mrope_section}`."""
    if family not in ("qwen2_vl", "qwen2_5_vl"):
        raise ValueError(f"the Hub's {family} configs are nested; no flat layout")
    text = text_config_dict(family)
    rope = text.pop("rope_parameters")
    return dict(
        text, model_type=family, rope_theta=rope["rope_theta"],
        rope_scaling=dict(type="mrope", mrope_section=rope["mrope_section"]),
        vision_config=vision_config_dict(family), image_token_id=IMAGE_ID, video_token_id=VIDEO_ID,
        vision_start_token_id=VISION_START_ID, vision_end_token_id=VISION_END_ID,
    )
