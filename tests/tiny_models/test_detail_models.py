"""The detail-VQA models (jax_pruning/assets/tiny_*_detail): Hub-style folders that load through HF and through
`models.load`, answer detail-VQA test questions, and give the same greedy answers in both stacks.

Their measured accuracies are in benchmarks/results/amd-epyc-2c/tiny_models_detail_hf.md (54% and 59%, below
the 85% aimed at); here a floor above what a model blind to the image gets (about 25%: a colour of five, a
count of nine, one of the two colours named, two digits), on the questions it can answer from the image.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.tiny_models.data import load_image, normalize_answer, questions_flat
from benchmarks.tiny_models.evaluate import MAX_NEW_TOKENS_BY_DATA, SHIPPED_DETAIL, answer, decode_answers
from tests.tiny_models.shipped import VISUAL_TOKENS, shipped_fixture

N_QUESTIONS = 40  # the first 8 test images, one question of each type
MAX_NEW = MAX_NEW_TOKENS_BY_DATA["detail-vqa"]

shipped = shipped_fixture(SHIPPED_DETAIL)


@pytest.fixture(scope="module")
def rows():
    return questions_flat("test", "detail-vqa", images=N_QUESTIONS // 5)


def test_folder_is_small_and_complete(shipped, rows):
    model, processor, family = shipped
    folder = SHIPPED_DETAIL[family]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (folder / name).is_file(), name
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 10 * 2**20
    raw = json.loads((folder / "config.json").read_text())
    assert raw["text_config"]["eos_token_id"] == processor.tokenizer.eos_token_id
    batch = processor([load_image(rows[0][1])], [processor.chat_prompt(rows[0][2])])
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == VISUAL_TOKENS[family]
    ids = processor.tokenizer("047", add_special_tokens=False)["input_ids"]  # one token per digit, decoded whole
    assert len(ids) == 3 and processor.tokenizer.decode(ids) == "047"


def test_answers_and_jax_agrees(shipped, rows):
    """HF greedy answers on 40 test questions beat a floor; `models.load` + `jp.generate` give the same answers."""
    import jax_pruning as jp
    import models
    from benchmarks.tiny_models.prompting import build_inputs

    hf, processor, family = shipped
    images, questions = [load_image(r[1]) for r in rows], [r[2] for r in rows]
    want = answer(hf, processor, family, images, questions, MAX_NEW)
    accuracy = np.mean([w == normalize_answer(r[3]) for w, r in zip(want, rows)])
    assert accuracy >= 0.4, (accuracy, list(zip(want, [r[3] for r in rows])))
    folder = SHIPPED_DETAIL[family]
    out = jp.generate(models.load(folder), build_inputs(folder, images, questions), None, MAX_NEW)
    assert decode_answers(processor.tokenizer, out.tokens, processor.tokenizer.eos_token_id) == want
