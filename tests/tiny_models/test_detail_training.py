"""detail-VQA training pieces: geometry and tokenizer, stage-1 token labels, balanced question picks, the frozen
feature cache (the same logits as the full forward) and a two-step run of the whole recipe."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from benchmarks.tiny_models.configs import build
from benchmarks.tiny_models.data import balanced_pick, conversation, grouped_by_image, load_image, scene_of_path
from benchmarks.tiny_models.train import (Recipe, frozen_features, model_class, save_processing_files,
                                          to_model_inputs, train, with_cached_features)
from benchmarks.tiny_models.vision_pretrain import DENSE_HEADS, dense_heads, dense_labels, token_regions
from jax_pruning.eval import detail_vqa as dv
from jax_pruning.processing import Processor
from tests.tiny_models.test_training import SMOKE_SIZES

VISUAL_TOKENS = {"llava_next": 336, "qwen2_vl": 64}


@pytest.fixture(scope="module", params=["llava_next", "qwen2_vl"])
def folder(request, tmp_path_factory):
    """A random-weight smoke-size model for detail-VQA, saved with its processing files."""
    torch.manual_seed(0)
    family = request.param
    config, _, saveables = build(family, SMOKE_SIZES, "detail-vqa")
    out = tmp_path_factory.mktemp(family)
    save_processing_files(out, config, saveables)
    model_class(family)(config).save_pretrained(out)
    return family, out


def test_geometry_and_tokenizer(folder):
    family, path = folder
    processor = Processor.from_folder(path)
    sample = grouped_by_image("train", "detail-vqa", images=1)[0]
    batch = processor([load_image(sample.path)], [processor.chat_prompt(sample.questions[0])])
    config = model_class(family).config_class.from_pretrained(path)
    assert int((batch["input_ids"] == config.image_token_id).sum()) == VISUAL_TOKENS[family]
    tok = processor.tokenizer
    text = tok.apply_chat_template(conversation(sample.questions, sample.answers), tokenize=False)
    assert tok.unk_token_id not in tok(text, add_special_tokens=False)["input_ids"]
    for number in ("047", "900", "3"):
        ids = tok(number, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(number) and tok.decode(ids) == number


def test_dense_labels_mark_each_object_centre_and_glyph_once():
    for index in range(20):
        scene = dv.scene_of("train", index)
        for family in ("qwen2_vl", "llava_next"):
            crops = token_regions(family, dv.CANVAS)
            assert sum(len(c) for c in crops) == (64 if family == "qwen2_vl" else 5 * 64)
            for crop in crops:  # every crop's tokens tile its area; the labels of each crop are complete
                labels = dense_labels(scene, crop)
                heads = list(DENSE_HEADS)
                centres = labels[:, heads.index("centre_colour")]
                assert (centres > 0).sum() <= len(scene.objects)
                if len(crop) == 64 and crop[-1][2] - crop[0][0] == dv.CANVAS:  # a crop over the whole image
                    assert collections.Counter(centres[centres > 0]) == collections.Counter(
                        list(dv.COLORS).index(o.color) + 1 for o in scene.objects)
                    for k in range(dv.DIGITS):
                        digit = labels[:, heads.index(f"digit_{k + 1}")]
                        assert list(digit[digit > 0]) == [int(scene.digits.text[k]) + 1]
    assert scene_of_path("detail-vqa:train:19") == scene


def test_balanced_pick_asks_each_type_equally():
    sample = grouped_by_image("train", "detail-vqa", images=1)[0]
    rng = np.random.default_rng(0)
    counts = collections.Counter(sample.kinds[balanced_pick(sample.kinds, 1, rng)[0]] for _ in range(2500))
    assert set(counts) == set(dv.QUESTION_TYPES) and min(counts.values()) > 400
    everything = balanced_pick(sample.kinds, None, rng)
    assert sorted(everything) == list(range(len(sample.kinds)))


def test_cached_features_give_the_same_logits(folder):
    family, path = folder
    processor = Processor.from_folder(path)
    model = model_class(family).from_pretrained(path, local_files_only=True)
    samples = grouped_by_image("train", "detail-vqa", images=3)
    cached = frozen_features(model, family, processor, samples)
    texts = [processor.tokenizer.apply_chat_template(conversation(s.questions[:2], s.answers[:2]), tokenize=False)
             for s in samples]
    inputs = to_model_inputs(processor([load_image(s.path) for s in samples], texts), family)
    with torch.no_grad():
        want = model(**inputs).logits
        got = model(**with_cached_features(model, family, inputs, cached)).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["llava_next", "qwen2_vl"])
def test_recipe_runs_end_to_end(tmp_path, family):
    """Stage 1 (dense heads) then two stage-2 steps on frozen, cached features: only the LLM side moves."""
    torch.set_num_threads(1)
    recipe = Recipe(data="detail-vqa", epochs=1, batch_images=2, max_images=4, vision_pretrain_epochs=1,
                    vision_batch_images=2, max_questions=1, balance_types=True, freeze_vision=True,
                    dense_positive_weight=8.0)
    stats = train(family, tmp_path / family, recipe, sizes=SMOKE_SIZES, log_every=1, max_steps=2)
    assert stats["steps"] == 2 and stats["log"][0]["vision_epoch"] == 1
    assert {f"{k}_accuracy" for k in dense_heads(family)} == {k for k in stats["log"][0] if k.endswith("_accuracy")}
    assert all(np.isfinite(e["loss"]) for e in stats["log"])
    assert (tmp_path / family / "model.safetensors").is_file()


def test_fresh_llm_over_a_stage1_tower_with_the_projector_training(tmp_path):
    """The shipped LLaVA-NeXT recipe's stage 2 (--init-vision-from, --train-projector, --torch-text-init): the
    tower comes from the stage-1 folder and stays frozen, the projector and the LLM move."""
    torch.set_num_threads(1)
    stage1 = Recipe(data="detail-vqa", epochs=0, max_images=4, vision_pretrain_epochs=1, vision_batch_images=2,
                    dense_positive_weight=8.0)
    train("llava_next", tmp_path / "s1", stage1, sizes=SMOKE_SIZES, log_every=1)
    recipe = Recipe(data="detail-vqa", epochs=1, batch_images=2, max_images=4, max_questions=2, balance_types=True,
                    freeze_vision=True, train_projector=True, torch_text_init=True, lr=1e-2)
    stats = train("llava_next", tmp_path / "s2", recipe, sizes=SMOKE_SIZES, log_every=1, max_steps=2,
                  init_vision_from=tmp_path / "s1")
    assert stats["steps"] == 2 and stats["init_vision_from"] == str(tmp_path / "s1")
    before, after = (model_class("llava_next").from_pretrained(tmp_path / n).state_dict() for n in ("s1", "s2"))
    tower = [k for k in before if ".vision_tower." in k]
    projector = [k for k in before if ".multi_modal_projector." in k and k.endswith("weight")]
    assert tower and projector
    assert all(torch.equal(before[k], after[k]) for k in tower)
    assert all(not torch.equal(before[k], after[k]) for k in projector)
