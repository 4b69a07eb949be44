"""Fault group: prompts and batches through Processor + jp.generate on the embedded tiny Qwen2-VL.

Outcome classes: a correct answer (tokens of the right shape, in the vocabulary, equal to the same
sample run alone), or a ValueError that names what is wrong. Never a bare error from inside jax or
transformers, never NaN.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import jax_pruning as jp
import models
from jax_pruning.demo import ASSETS
from jax_pruning.processing import Processor

NEW = 2


@pytest.fixture(scope="module")
def tiny():
    folder = ASSETS / "tiny_qwen2_vl"
    return models.load(folder), Processor.from_folder(folder)


def _image(color="red"):
    return Image.new("RGB", (28, 28), color)


def _answers(model, processor, images, texts, pruner=None):
    out = jp.generate(model, processor(images, texts), pruner, NEW)
    assert out.tokens.shape == (len(texts), NEW)
    assert ((out.tokens >= 0) & (out.tokens < model.config.text.vocab_size)).all()
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=st.text(max_size=60))
def test_any_question_is_answered_like_the_same_question_alone(tiny, question):
    """Random unicode (empty, whitespace, control characters, emoji): an answer, and batching it with
    another sample does not change it."""
    model, processor = tiny
    prompt = processor.chat_prompt(question)
    alone = _answers(model, processor, [_image()], [prompt], jp.pruner("random", keep_ratio=0.5))
    paired = _answers(model, processor, [_image(), _image("blue")], [prompt, processor.chat_prompt("what color?")],
                      jp.pruner("random", keep_ratio=0.5))
    np.testing.assert_array_equal(paired.tokens[0], alone.tokens[0])


@pytest.mark.parametrize("injected", ["<|image_pad|>", "<|vision_start|><|image_pad|><|vision_end|>"])
def test_image_tokens_typed_into_the_question_are_refused_naming_the_count(tiny, injected):
    """Image placeholders in the user's text make more image tokens than images: a clear refusal."""
    model, processor = tiny
    with pytest.raises(ValueError, match=r"placeholders but \d+ images"):
        _answers(model, processor, [_image()], [processor.chat_prompt("what is " + injected)])


def test_text_only_and_mixed_batches(tiny):
    """No image at all, and a batch mixing a text-only row with an image row: each row answers as it
    does alone, pruned or not (a text-only row has nothing to prune)."""
    model, processor = tiny
    text_only = processor.chat_prompt("say hi", with_image=False)
    with_image = processor.chat_prompt("what shape?")
    for pruner in (None, jp.pruner("divprune", keep_ratio=0.25), jp.pruner("fastv", keep_ratio=0.25, layer=1)):
        alone_text = _answers(model, processor, None, [text_only], pruner)
        alone_image = _answers(model, processor, [_image()], [with_image], pruner)
        assert alone_text.visual_tokens[0] == 0
        mixed = _answers(model, processor, [_image()], [text_only, with_image], pruner)
        np.testing.assert_array_equal(mixed.tokens[0], alone_text.tokens[0])
        np.testing.assert_array_equal(mixed.tokens[1], alone_image.tokens[0])


def test_more_images_than_placeholders_is_refused(tiny):
    model, processor = tiny
    with pytest.raises(ValueError, match=r"placeholders but \d+ images"):
        _answers(model, processor, [_image(), _image("blue")], [processor.chat_prompt("what shape?")])
