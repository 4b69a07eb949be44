"""Tiny random models of the four families (HF and ours, same weights) with processor inputs, for engine tests.

The LM head is scaled up so that greedy decoding of a random model produces
varied tokens (a model that repeats one token would hide decoding bugs).
"""

from __future__ import annotations

import numpy as np
import torch

import models
from models.qwen_inputs import prepare_qwen_inputs
from tests.models import llava_tiny as lt
from tests.models import qwen_tiny as qt

FAMILIES = ("llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl")
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
HEAD_SCALE = 8.0
SEED = 2  # with this seed every family's greedy output varies (checked in the tests)
NEW = 6  # generated tokens per engine test call
MULTI_IMAGE = dict(sizes=("square", "tall_1to3", "wide_2to1"), images_per_sample=(2, 1))


def hf_model(family: str, seed: int = SEED):
    if family == "llava_next":
        hf = lt.hf_model(seed=seed)
    else:
        from transformers import AutoModelForImageTextToText

        torch.manual_seed(seed)
        hf = qt.randomize_(AutoModelForImageTextToText.from_config(qt.hf_config(family)), seed).eval()
    with torch.no_grad():
        hf.lm_head.weight.mul_(HEAD_SCALE)
        hf.get_input_embeddings().weight.mul_(HEAD_SCALE)
    return hf


def build(family: str, folder, seed: int = SEED):
    """(hf model, our model loaded from its saved folder)."""
    hf = hf_model(family, seed)
    hf.save_pretrained(folder)
    return hf, models.load(folder)


def batch(family: str, sizes=("square", "wide_2to1"), words=("w1 w2", "w3 w4 w5 w6"), images_per_sample=None) -> dict:
    """A left-padded batch as NumPy processor outputs: one image per sample by default, else
    images_per_sample[b] images in sample b (the sizes are taken in order)."""
    counts = images_per_sample or (1,) * len(words)
    if sum(counts) != len(sizes):
        raise ValueError(f"{len(sizes)} image sizes for {sum(counts)} images")
    tag = "<image>" if family == "llava_next" else QWEN_IMAGE
    texts = [f"{tag * n} {w}" for n, w in zip(counts, words)]
    if family == "llava_next":
        out = lt.processor()(images=lt.test_images(sizes), text=texts, return_tensors="np", padding=True)
        return {k: np.asarray(v) for k, v in out.items()}
    images = [qt.random_image(*qt.IMAGE_SIZES[name], seed=i) for i, name in enumerate(sizes)]
    out = prepare_qwen_inputs(texts, images, tokenizer=qt.tokenizer(), image_processor=qt.image_processor(family))
    out.pop("images_per_sample", None)
    return out


def hf_generate(hf, inputs: dict, max_new_tokens: int, pad_id: int) -> np.ndarray:
    tensors = {k: torch.as_tensor(v) for k, v in inputs.items()}
    with torch.no_grad():
        out = hf.generate(**tensors, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                          eos_token_id=None)
    return out[:, inputs["input_ids"].shape[1]:].numpy()
