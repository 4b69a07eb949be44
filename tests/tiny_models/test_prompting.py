"""build_inputs: the one prompt builder shared by the HF evaluation and the JAX side."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.tiny_models.configs import build
from benchmarks.tiny_models.data import load_image, questions_flat
from benchmarks.tiny_models.prompting import build_inputs
from benchmarks.tiny_models.tokenizer import generation_prompt_ids
from benchmarks.tiny_models.train import save_processing_files

VISUAL_TOKENS = {"llava_next": 336, "qwen2_vl": 64}
IMAGE_TOKEN = {"llava_next": "<image>", "qwen2_vl": "<|image_pad|>"}


@pytest.fixture(scope="module", params=sorted(VISUAL_TOKENS))
def folder(request, tmp_path_factory):
    """Tokenizer/processor files of a family (no weights needed to build inputs)."""
    out = tmp_path_factory.mktemp(request.param)
    config, _, saveables = build(request.param)
    save_processing_files(out, config, saveables)
    return request.param, out


def _rows(n):
    return [questions_flat("test")[i] for i in (0, 1, 25, 300)[:n]]


def test_one_prompt_per_question_left_padded(folder):
    family, path = folder
    rows = _rows(4)
    batch = build_inputs(path, [load_image(r[1]) for r in rows], [r[2] for r in rows])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN[family])
    ids, mask = batch["input_ids"], batch["attention_mask"]  # [B, T]
    assert ids.shape[0] == 4 and mask.shape == ids.shape
    assert ((ids == image_id).sum(-1) == VISUAL_TOKENS[family]).all()
    assert (mask[:, -1] == 1).all() and (mask[:, 0] == 0).any()  # left padding, prompts of different lengths
    assert (np.diff(mask, axis=-1) >= 0).all()  # padding only on the left
    for row, r in zip(ids, rows):
        prompt = generation_prompt_ids(tok)
        assert row[-len(prompt):].tolist() == prompt  # every row ends with the generation prompt
        text = tok.decode(row[row != image_id], skip_special_tokens=True)
        assert r[2].rstrip("?") in text.replace(" ?", "?")
    if family == "qwen2_vl":
        assert batch["image_grid_thw"].tolist() == [[1, 16, 16]] * 4
        assert batch["pixel_values"].shape == (4 * 256, 3 * 2 * 4 * 4)
        np.testing.assert_array_equal(batch["mm_token_type_ids"], (ids == image_id).astype(batch["mm_token_type_ids"].dtype))
    else:
        assert batch["pixel_values"].shape == (4, 5, 3, 32, 32) and batch["image_sizes"].tolist() == [[64, 64]] * 4


def test_count_mismatch_is_a_value_error(folder):
    _, path = folder
    image = load_image(_rows(1)[0][1])
    with pytest.raises(ValueError, match="one image per question"):
        build_inputs(path, [image, image], ["what color is the shape?"])
    with pytest.raises(ValueError, match="one image per question"):
        build_inputs(path, [], [])
