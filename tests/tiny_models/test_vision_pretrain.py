"""Stage 1 (vision_pretrain): labels read off the answers, and a short run moves only the image-feature path."""

from __future__ import annotations

import pytest
import torch

from benchmarks.tiny_models.data import ImageQuestions
from benchmarks.tiny_models.train import Recipe, train
from benchmarks.tiny_models.vision_pretrain import COLOURS, IGNORE, SHAPES, image_labels, reset_vision_init, vision_modules
from tests.tiny_models.test_training import SMOKE_SIZES


def test_image_labels_come_from_shape_and_colour_answers():
    sample = ImageQuestions(0, "x", ("what color is the shape?", "what shape is present?", "is there a red shape?"),
                            ("teal", "triangle", "no"))
    assert image_labels(sample) == (SHAPES.index("triangle"), COLOURS.index("teal"))
    assert image_labels(ImageQuestions(0, "x", ("is there a circle?",), ("yes",))) == (IGNORE, IGNORE)


@pytest.mark.parametrize("family", ["llava_next", "qwen2_vl"])
def test_stage_one_moves_the_vision_path_only(tmp_path, family):
    """One stage-1 epoch (no VLM step): vision/projector weights change, the language model does not."""
    from transformers import AutoModelForImageTextToText

    torch.set_num_threads(1)
    recipe = Recipe(epochs=1, batch_images=2, max_images=4, lr=1e-2, vision_pretrain_epochs=1)
    stats = train(family, tmp_path / family, recipe, sizes=SMOKE_SIZES, log_every=1, max_steps=0)
    assert stats["log"][0]["vision_epoch"] == 1 and torch.isfinite(torch.tensor(stats["log"][0]["loss"]))
    torch.manual_seed(recipe.seed)  # the same init as inside train()
    from benchmarks.tiny_models.configs import build
    from benchmarks.tiny_models.train import model_class

    config, _, _ = build(family, SMOKE_SIZES)
    before = model_class(family)(config).float()
    reset_vision_init(before, family)  # what train() does with the default recipe
    after = AutoModelForImageTextToText.from_pretrained(tmp_path / family, local_files_only=True)
    moved = {id(p) for m in vision_modules(before, family) for p in m.parameters()}
    after_params = dict(after.named_parameters())
    changed_vision = changed_text = 0
    for name, p in before.named_parameters():
        differs = not torch.equal(p, after_params[name])
        if id(p) in moved:
            changed_vision += differs
        else:
            changed_text += differs
    assert changed_vision > 0 and changed_text == 0
