"""The shipped default models (jax_pruning/assets): Hub-style folders that HF loads and that answer easy-VQA."""

from __future__ import annotations

import json

import numpy as np
import torch

from benchmarks.tiny_models.data import load_image, normalize_answer, questions_flat
from benchmarks.tiny_models.evaluate import MAX_NEW_TOKENS, SHIPPED, answer, decode_answers
from tests.tiny_models.shipped import VISUAL_TOKENS, shipped_fixture

# 8 test questions spread over the split (every 1209th): shape, colour and yes/no questions
FIXED_QUESTIONS = tuple(range(0, 9673, 1209))[:8]
HUB_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json")

shipped = shipped_fixture(SHIPPED)


def test_folder_looks_like_a_hub_checkpoint(shipped):
    model, processor, family = shipped
    folder = SHIPPED[family]
    for name in HUB_FILES + (("processor_config.json",) if family == "llava_next" else ()):
        assert (folder / name).is_file(), name
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 10 * 2**20
    assert all(p.dtype == torch.float32 for p in model.parameters())
    raw = json.loads((folder / "config.json").read_text())
    tok = processor.tokenizer
    for where in (raw, raw["text_config"]):
        assert where["eos_token_id"] == tok.eos_token_id and where["pad_token_id"] == tok.pad_token_id
    image_token = "<image>" if family == "llava_next" else "<|image_pad|>"
    key = "image_token_index" if family == "llava_next" else "image_token_id"
    assert raw[key] == tok.convert_tokens_to_ids(image_token)


def test_visual_tokens_per_easy_vqa_image(shipped):
    model, processor, family = shipped
    image = load_image(questions_flat("test")[0][1])
    batch = processor([image], [processor.chat_prompt("what color is the shape?")])
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == VISUAL_TOKENS[family]


# Measured on the first 128 test questions: LLaVA-NeXT 1.0, Qwen2-VL 0.930 (full split 99.86% / 93.66%).
# A model that ignores the image sits near 0.45 (majority answer per kind).
ACCURACY_FLOOR = {"llava_next": 0.97, "qwen2_vl": 0.90}


def test_answers_fixed_test_questions(shipped):
    """Greedy answers (left padded batch) on a fixed slice of the test split: accuracy floor + colours right."""
    model, processor, family = shipped
    rows = questions_flat("test")[:128]
    got = answer(model, processor, family, [load_image(r[1]) for r in rows], [r[2] for r in rows])
    want = [normalize_answer(r[3]) for r in rows]
    accuracy = np.mean([g == w for g, w in zip(got, want)])
    assert accuracy >= ACCURACY_FLOOR[family], accuracy
    colour = [g == w for g, w, r in zip(got, want, rows) if "color" in r[2]]
    assert len(colour) >= 10 and np.mean(colour) >= 0.95  # colour needs the image: ~1/8 without it


def test_batch_answers_do_not_depend_on_padding(shipped):
    """One question alone and inside a padded batch give the same answer."""
    model, processor, family = shipped
    rows = [questions_flat("test")[i] for i in FIXED_QUESTIONS[:3]]
    batched = answer(model, processor, family, [load_image(r[1]) for r in rows], [r[2] for r in rows])
    alone = [answer(model, processor, family, [load_image(r[1])], [r[2]])[0] for r in rows]
    assert batched == alone
    assert np.unique([len(r[2].split()) for r in rows]).size > 1  # prompts of different lengths -> padding


def test_jax_answers_equal_hf_answers(shipped):
    """The folder through `models.load` (converted in memory) and `jp.generate`: the same greedy answers as
    HF PyTorch on 32 test questions, and each shape / colour / yes-no kind answered."""
    import jax_pruning as jp
    import models
    from benchmarks.tiny_models.prompting import build_inputs

    hf, processor, family = shipped
    folder = SHIPPED[family]
    rows = questions_flat("test")[:32]
    images, questions = [load_image(r[1]) for r in rows], [r[2] for r in rows]
    want = answer(hf, processor, family, images, questions)
    out = jp.generate(models.load(folder), build_inputs(folder, images, questions), None, MAX_NEW_TOKENS)
    got = decode_answers(processor.tokenizer, out.tokens, processor.tokenizer.eos_token_id)
    assert got == want
    kinds = {"yes/no" if r[3] in ("yes", "no") else "colour" if "color" in r[2] else "shape" for r in rows}
    assert kinds == {"yes/no", "colour", "shape"}
