"""Tiny random LLaVA-NeXT references for parity tests.

A CLIP tower with 30x30 crops of 5x5 patches (a 6x6 base grid), pinpoints
scaled like the real ones (336 -> 30), a 2-layer Llama, a word-level
tokenizer (built with `tokenizers`) that knows `<image>`, and the real HF
processor (`LlavaNextImageProcessorPil`; `num_additional_image_tokens=1` with
the "default" strategy, as transformers requires). Every parameter is made
non-trivial (biases, norms, image_newline) so a misplaced token shows.
"""

from __future__ import annotations

import numpy as np
import torch

from tests.models.qwen_tiny import random_image, randomize_, set_params

CROP, PATCH = 30, 5
PINPOINTS = [[30, 60], [60, 30], [60, 60], [90, 30], [30, 90]]
WORDS = [f"w{i}" for i in range(40)]
UNK_ID, PAD_ID, BOS_ID, IMAGE_ID = 40, 41, 42, 43
VOCAB_SIZE = 48
TEXT_HIDDEN = 48

# (height, width): square, 2:1 wide, 1:3 tall, tiny, larger than every pinpoint, odd
IMAGE_SIZES = {
    "square": (40, 40),
    "wide_2to1": (32, 64),
    "tall_1to3": (78, 26),
    "tiny": (20, 20),
    "large": (130, 110),
    "odd": (47, 71),
}


def vision_config_dict(**overrides) -> dict:
    base = dict(
        model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, image_size=CROP, patch_size=PATCH, hidden_act="quick_gelu",
    )
    return base | overrides


def text_config_dict() -> dict:
    return dict(
        model_type="llama", vocab_size=VOCAB_SIZE, hidden_size=TEXT_HIDDEN, intermediate_size=96,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=12,
        max_position_embeddings=1024, rms_norm_eps=1e-6, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
        eos_token_id=PAD_ID, tie_word_embeddings=False,
    )


def hf_config(vision_feature_layer=-2, text_overrides=None, **vision_overrides):
    from transformers import LlavaNextConfig

    config = LlavaNextConfig(
        vision_config=vision_config_dict(**vision_overrides), text_config=text_config_dict() | (text_overrides or {}),
        image_token_index=IMAGE_ID, image_grid_pinpoints=PINPOINTS, vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy="default", projector_hidden_act="gelu", tie_word_embeddings=False,
    )
    config._attn_implementation = "eager"
    config.vision_config._attn_implementation = "eager"
    config.text_config._attn_implementation = "eager"
    return config


def hf_model(seed: int = 0, **config_kwargs):
    """HF LlavaNextForConditionalGeneration, randomised, eval mode, float32."""
    from transformers import LlavaNextForConditionalGeneration

    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(hf_config(**config_kwargs))
    return randomize_(model, seed).eval()


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    vocab.update({"[UNK]": UNK_ID, "<pad>": PAD_ID, "<s>": BOS_ID, "<image>": IMAGE_ID})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["<pad>", "<s>", "<image>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="<pad>", bos_token="<s>")
    fast.padding_side = "left"
    return fast


def image_processor():
    from transformers import LlavaNextImageProcessorPil

    return LlavaNextImageProcessorPil(
        size={"shortest_edge": CROP}, crop_size={"height": CROP, "width": CROP}, image_grid_pinpoints=PINPOINTS,
    )


def processor():
    from transformers import LlavaNextProcessor

    return LlavaNextProcessor(
        image_processor=image_processor(), tokenizer=tokenizer(), patch_size=PATCH,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )


def test_images(names=tuple(IMAGE_SIZES)):
    return [random_image(*IMAGE_SIZES[n], seed=i) for i, n in enumerate(names)]


def hf_to_flat(state_dict: dict, model_type: str = "llava_next", vision_only: bool = True) -> dict:
    """HF state dict -> {flax path: float32 array} through the converter's key map.

    vision_only keeps the image side (tower, projector, image_newline) and skips
    the language model's tensors.
    """
    from convert.keymaps.vision_clip import vision_rules
    from convert.rules import KeyMap

    keymap = KeyMap(vision_rules(model_type))
    flat = {}
    for key, tensor in state_dict.items():
        match = keymap.match(key)
        if match is None:
            if vision_only and ("language_model" in key or key.endswith("lm_head.weight")):
                continue
            raise KeyError(f"{key}: no key-map rule")
        flat[match.target] = match.transform.apply(tensor.detach().numpy(), np.float32)
    return flat


def flax_image_encoder(hf, seed: int = 0):
    """Our LlavaNextImageEncoder with the HF model's image-side weights."""
    from flax import nnx

    from models.llava_next import LlavaNextImageEncoder
    from models.vision_config import parse_vision_config

    raw = hf.config.to_dict()
    encoder = LlavaNextImageEncoder(
        parse_vision_config("llava_next", raw), raw["text_config"]["hidden_size"], rngs=nnx.Rngs(seed)
    )
    set_params(encoder, hf_to_flat(hf.state_dict()))
    return encoder


__all__ = ["random_image", "set_params"]
