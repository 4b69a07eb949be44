"""Tiny random Hugging Face checkpoints for converter tests.

Every parameter is drawn at random (norm weights around 1, biases non-zero),
so a tensor routed to the wrong place, or not transposed, changes the result.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

TEXT = dict(
    vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=8, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False,
)
TEXT_ONLY = ("llama", "mistral", "qwen2", "qwen3")


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            base = 1.0 if name.endswith("norm.weight") else 0.0
            p.copy_(base + 0.2 * noise)
    return model


def hf_text_model(model_type: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A tiny random CausalLM of one text family, float32, eval mode."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **(TEXT | overrides))
    return randomize_(AutoModelForCausalLM.from_config(config), seed).eval()


def hf_multimodal_model(model_type: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random LLaVA-NeXT / Qwen2-VL / Qwen2.5-VL / Qwen3-VL (key layouts only)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    text = dict(TEXT)
    if model_type == "llava_next":
        config = AutoConfig.for_model(
            model_type,
            text_config=dict(model_type="llama", **text),
            vision_config=dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=32,
                               num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14),
        )
    else:
        vision = dict(depth=2, hidden_size=16, embed_dim=16, intermediate_size=32, num_heads=2, out_hidden_size=32)
        if model_type == "qwen3_vl":
            vision["deepstack_visual_indexes"] = [0]
        else:
            text["rope_parameters"] = dict(rope_type="default", mrope_section=[1, 1, 2])
        if model_type == "qwen2_vl":
            vision.pop("out_hidden_size")
        config = AutoConfig.for_model(model_type, text_config=text, vision_config=vision)
    torch.manual_seed(seed)
    return randomize_(AutoModelForImageTextToText.from_config(config), seed).eval()


def save(model: torch.nn.Module, folder: Path, max_shard_size: str | None = None) -> Path:
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(folder, **kwargs)
    return folder


def state_dict_np(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def rewrite_single_file(folder: Path, edit) -> None:
    """Replace model.safetensors by edit(tensors) (a dict name -> array)."""
    file = folder / "model.safetensors"
    tensors = edit(dict(load_file(file)))
    file.unlink()
    save_file(tensors, file, metadata={"format": "pt"})


def set_model_type(folder: Path, model_type: str) -> None:
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config["model_type"] = model_type
    config_file.write_text(json.dumps(config))
