"""Training recipe pieces: tokenizer/template, answer-only loss mask, and a short real training run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.tiny_models.configs import TinySizes
from benchmarks.tiny_models.data import answer_mask, conversation, grouped_by_image, normalize_answer
from benchmarks.tiny_models.tokenizer import build_tokenizer, easy_vqa_words, generation_prompt_ids
from benchmarks.tiny_models.train import Recipe, train
from jax_pruning.processing import Processor

SMOKE_SIZES = TinySizes(text_hidden=32, text_layers=1, text_heads=4, text_kv_heads=2, text_intermediate=64,
                        vision_hidden=32, vision_layers=1, vision_heads=2, vision_intermediate=64)


@pytest.mark.parametrize("family", ["llava_next", "qwen2_vl"])
def test_every_easy_vqa_word_is_one_known_token(family):
    tok = build_tokenizer(family)
    sample = grouped_by_image("test")[0]
    text = tok.apply_chat_template(conversation(sample.questions, sample.answers), tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    for word in easy_vqa_words():
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1, word


@pytest.mark.parametrize("family", ["llava_next", "qwen2_vl"])
def test_loss_mask_covers_exactly_the_answers_and_their_eos(family):
    tok = build_tokenizer(family)
    answers = ("circle", "no", "teal")
    text = tok.apply_chat_template(conversation(("q a?", "b c?", "d?"), answers), tokenize=False)
    batch = tok([text, "x"], padding=True, add_special_tokens=False, return_tensors="np")
    mask = answer_mask(batch["input_ids"], generation_prompt_ids(tok), tok.eos_token_id) & (batch["attention_mask"] > 0)
    supervised = tok.convert_ids_to_tokens(batch["input_ids"][0][mask[0]].tolist())
    assert supervised == [a for answer in answers for a in (answer, tok.eos_token)]
    assert not mask[1].any()


def test_normalize_answer():
    assert normalize_answer("  Circle ") == "circle"
    assert normalize_answer("yes .") == "yes"
    assert normalize_answer("") == ""


@pytest.mark.parametrize("family", ["llava_next", "qwen2_vl"])
def test_short_training_run_updates_weights_and_saves_a_loadable_folder(tmp_path, family):
    """A few real optimizer steps on 4 images with tiny widths: finite loss, weights move, folder reloads."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    torch.set_num_threads(1)
    out = tmp_path / family
    stats = train(family, out, Recipe(epochs=1, batch_images=2, max_images=4, lr=1e-2), sizes=SMOKE_SIZES,
                  log_every=1, max_steps=2)
    assert stats["steps"] == 2 and len(stats["log"]) == 2
    assert all(np.isfinite(entry["loss"]) and entry["loss"] > 0 for entry in stats["log"])
    weights = load_file(out / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values())
    config = AutoConfig.from_pretrained(out, local_files_only=True)
    proc = Processor.from_folder(out)
    assert config.text_config.eos_token_id == proc.tokenizer.eos_token_id
    assert config.text_config.pad_token_id == proc.tokenizer.pad_token_id
    saved = json.loads((out / "config.json").read_text())
    assert saved["eos_token_id"] == proc.tokenizer.eos_token_id

    # weights moved away from the seeded initialisation
    from benchmarks.tiny_models.configs import build
    from benchmarks.tiny_models.train import model_class

    torch.manual_seed(0)
    initial = model_class(family)(build(family, SMOKE_SIZES)[0]).state_dict()
    trained = model_class(family).from_pretrained(out, local_files_only=True).state_dict()
    assert sorted(trained) == sorted(initial)
    moved = [k for k, v in initial.items() if not torch.equal(v, trained[k])]
    assert len(moved) > len(initial) // 2, moved

    # the same seed and recipe from scratch again gives bit-identical losses and weights
    again = train(family, tmp_path / "again", Recipe(epochs=1, batch_images=2, max_images=4, lr=1e-2),
                  sizes=SMOKE_SIZES, log_every=1, max_steps=2)
    assert [e["loss"] for e in again["log"]] == [e["loss"] for e in stats["log"]]
    again_weights = load_file(tmp_path / "again" / "model.safetensors")
    assert all(torch.equal(again_weights[k], weights[k]) for k in weights)
