"""jax_pruning.processing: a checkpoint folder's own processor files -> the inputs HF would build."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jax_pruning.processing import Processor
from models.qwen_inputs import prepare_qwen_inputs
from tests.models import llava_tiny, qwen_tiny


def _assert_same(got: dict, want: dict):
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg=key)


def test_llava_next_folder(tmp_path):
    hf = llava_tiny.processor()
    hf.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_next"}))
    images = llava_tiny.test_images()[:2]
    texts = ["<image> w1 w2", "w3 <image> w4 w5 w6"]
    ours = Processor.from_folder(tmp_path)
    assert ours.image_placeholder == "<image>"
    got = ours(images, texts)
    want = hf(images=images, text=texts, padding=True, return_tensors="np")
    _assert_same(got, dict(want))
    mask = got["attention_mask"]
    assert (mask == 0).any() and (np.diff(mask, axis=1) >= 0).all(), "batched prompts must be left padded"


def test_qwen_folder(tmp_path):
    tok, images_proc = qwen_tiny.tokenizer(), qwen_tiny.image_processor("qwen2_vl")
    tok.save_pretrained(tmp_path)
    images_proc.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    images = qwen_tiny.test_images()[:2]
    texts = ["<|vision_start|><|image_pad|><|vision_end|> w1", "w2 w3 <|vision_start|><|image_pad|><|vision_end|>"]
    got = Processor.from_folder(tmp_path)(images, texts)
    want = prepare_qwen_inputs(texts, images, tokenizer=tok, image_processor=images_proc)
    want.pop("images_per_sample")  # what the HF processor returns, nothing more: the model accepts it as is
    _assert_same(got, want)


def test_chat_prompt_falls_back_without_template(tmp_path):
    llava_tiny.processor().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_next"}))
    assert Processor.from_folder(tmp_path).chat_prompt("w1 w2") == "<image>\nw1 w2"


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        Processor.from_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    with pytest.raises(ValueError, match="cannot load the tokenizer/processor files"):
        Processor.from_folder(tmp_path)
