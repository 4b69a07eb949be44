"""Qwen-VL host plan: visual-token scatter index, M-RoPE ids, padding, errors.
(Full-model logits vs HF: tests/models/test_qwen_vl_model.py.)"""

import numpy as np
import pytest
import torch

from models.qwen_inputs import prepare_qwen_inputs
from models.qwen_vision import exact_capacities, parse_qwen_vision_config
from models.qwen_vl_plan import plan_qwen_vl_inputs
from tests.models import qwen_tiny as qt

torch.set_num_threads(1)

TEXTS = [
    "w1 <|vision_start|><|image_pad|><|vision_end|> w2 <|vision_start|><|image_pad|><|vision_end|> w3",
    "<|vision_start|><|image_pad|><|vision_end|> w4",
    "w5 w6 w7 w8",
]


def _inputs(family):
    images = [[qt.random_image(112, 224, 0), qt.random_image(96, 60, 1)], [qt.random_image(64, 64, 2)], []]
    return prepare_qwen_inputs(TEXTS, images, tokenizer=qt.tokenizer(), image_processor=qt.image_processor(family))


def test_plan_scatters_visual_tokens_in_prompt_order():
    family = "qwen2_vl"
    vision = parse_qwen_vision_config(family, qt.hf_config(family).to_dict())
    inputs = _inputs(family)
    exact = exact_capacities(inputs["image_grid_thw"], vision)["unit_patch_capacity"]
    plan = plan_qwen_vl_inputs(
        vision, qt.IMAGE_ID, inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"],
        inputs["image_grid_thw"], inputs["mm_token_type_ids"], unit_capacity=4, unit_patch_capacity=exact + 8,
    )
    n_visual = int(np.prod(inputs["image_grid_thw"], axis=1).sum()) // 4
    valid = plan.tokens.valid
    per_unit = (exact + 8) // 4  # the tower's output: 4 units (one per image, t = 1) of `per_unit` rows
    tokens = np.prod(inputs["image_grid_thw"], axis=1) // 4
    merged_rows = np.concatenate([u * per_unit + np.arange(n) for u, n in enumerate(tokens)])
    assert len(merged_rows) == n_visual
    np.testing.assert_array_equal(plan.merged_slots[valid], merged_rows)  # every merged token once, in order
    assert (plan.merged_slots[~valid] == 0).all()
    ids = inputs["input_ids"]
    for b in range(3):  # slots sit on the image tokens, in prompt order; the text-only row gets none
        np.testing.assert_array_equal(plan.tokens.index[b][valid[b]], np.nonzero(ids[b] == qt.IMAGE_ID)[0])
    assert valid.sum(axis=1).tolist() == [int((ids[b] == qt.IMAGE_ID).sum()) for b in range(3)] and not valid[2].any()
    assert plan.pixel_values.shape[:2] == (4, exact + 8)
    assert plan.position_ids.shape == (3, *inputs["input_ids"].shape)


def test_plan_rejects_mismatched_inputs():
    family = "qwen2_vl"
    vision = parse_qwen_vision_config(family, qt.hf_config(family).to_dict())
    inputs = _inputs(family)
    ids, mask, pix, grid = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"], inputs["image_grid_thw"]
    with pytest.raises(ValueError, match="image_grid_thw is required"):
        plan_qwen_vl_inputs(vision, qt.IMAGE_ID, ids, mask, pix, None)
    with pytest.raises(ValueError, match="pixel_values is required"):
        plan_qwen_vl_inputs(vision, qt.IMAGE_ID, ids, mask, None, grid)
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        plan_qwen_vl_inputs(vision, qt.IMAGE_ID, ids, mask, pix[: -int(np.prod(grid[-1]))], grid[:-1])
    with pytest.raises(ValueError, match="pixel_values must have shape"):
        plan_qwen_vl_inputs(vision, qt.IMAGE_ID, ids, mask, pix.reshape(-1, 2, pix.shape[1] // 2)[:, 0], grid)
    short = ids.copy()
    short[0, np.nonzero(ids[0] == qt.IMAGE_ID)[0][-1]] = 3  # one image token too few in sample 0
    with pytest.raises(ValueError, match="sample 0 has .* image tokens, but its images give"):
        plan_qwen_vl_inputs(vision, qt.IMAGE_ID, short, mask, pix, grid)
