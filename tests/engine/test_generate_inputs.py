"""jp.generate refuses what it cannot answer (naming the input), and stops decoding once every row is done."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import jax_pruning as jp
import models
from jax_pruning.engine.staging import stage
from jax_pruning.demo import ASSETS
from jax_pruning.processing import Processor


@pytest.fixture(scope="module")
def tiny():
    model = models.load(ASSETS / "tiny_qwen2_vl")
    processor = Processor.from_folder(ASSETS / "tiny_qwen2_vl")
    return model, processor


def _inputs(processor, n=2):
    from PIL import Image

    images = [Image.new("RGB", (32, 32), c) for c in ("red", "blue")][:n]
    return processor(images, [processor.chat_prompt("what shape is this?")] * n)


def test_empty_and_unattended_batches_are_refused(tiny):
    model, processor = tiny
    inputs = _inputs(processor)
    with pytest.raises(ValueError, match="batch is empty"):
        jp.generate(model, {"input_ids": np.zeros((0, 5), np.int64)}, None, 2)
    with pytest.raises(ValueError, match="no tokens"):
        jp.generate(model, {"input_ids": np.zeros((1, 0), np.int64)}, None, 2)
    mask = np.array(inputs["attention_mask"])
    mask[1] = 0
    with pytest.raises(ValueError, match=r"attention_mask rows \[1\] attend no token"):
        jp.generate(model, dict(inputs, attention_mask=mask), None, 2)


def test_prompt_past_max_positions_is_refused_or_warned(tiny):
    model, processor = tiny
    inputs = _inputs(processor)
    # M-RoPE: an image's tokens span fewer positions than tokens, so the limit is on positions
    length = int(np.max(stage(model, inputs, 0).next_position))
    text = model.config.text
    short = dataclasses.replace(model.config, text=dataclasses.replace(text, max_position_embeddings=length + 2))
    original = model.config
    try:
        model.config = short
        jp.generate(model, inputs, None, 2)  # fits exactly: no error
        with pytest.raises(ValueError, match="past max_position_embeddings=.*config.json"):
            jp.generate(model, inputs, None, 8)
        scaled = dataclasses.replace(short, text=dataclasses.replace(short.text, rope_factor=2.0))
        model.config = scaled
        with pytest.warns(UserWarning, match="RoPE is scaled"):
            jp.generate(model, inputs, None, 8)
    finally:
        model.config = original


def test_decoding_stops_when_every_row_is_done(tiny):
    """A huge max_new_tokens costs only the steps until every row emitted EOS; tokens are unchanged."""
    model, processor = tiny
    inputs = _inputs(processor)
    short = jp.generate(model, inputs, None, 8)
    assert short.stats["decode_steps"] < 8, short.stats["decode_steps"]  # the tiny model answers in a word
    long = jp.generate(model, inputs, None, 200)
    assert long.stats["decode_steps"] == short.stats["decode_steps"]
    np.testing.assert_array_equal(long.tokens[:, :8], short.tokens)
    assert (long.tokens[:, 8:] == (model.config.pad_token_id or 0)).all()


def test_non_finite_vision_features_are_refused(tiny):
    """NaN in the weights reaches the visual embeddings: refused with the rows, not pruned silently."""
    model, processor = tiny
    inputs = _inputs(processor)
    kernel = model.visual.merger.fc2.kernel
    saved = kernel.get_value()
    try:
        kernel.set_value(saved.at[0, 0].set(np.nan))
        with pytest.raises(ValueError, match=r"rows \[0, 1\] hold NaN or inf"):
            jp.generate(model, inputs, jp.pruner("random", keep_ratio=0.5), 2)
    finally:
        kernel.set_value(saved)


def test_overflow_inside_the_llm_is_refused_and_fails_only_that_sample_in_eval(tiny):
    """A NaN born inside the LLM (where an at-layer method scores) is the prefill's flag: generate raises
    NonFinite naming the rows; an evaluation records those samples as failed and goes on."""
    from jax_pruning.engine.generate import NonFinite
    from jax_pruning.eval.samples import Sample
    from jax_pruning.sweep import predictor

    model, processor = tiny
    inputs = _inputs(processor)
    layer = model.language_model.layers[0]
    kernel = layer.mlp.down_proj.kernel
    saved = kernel.get_value()
    try:
        kernel.set_value(saved.at[0, 0].set(np.inf))
        with pytest.raises(NonFinite, match=r"rows \[0, 1\] overflowed .*with fastv"):
            jp.generate(model, inputs, jp.pruner("fastv", keep_ratio=0.5, layer=1), 2)
        predict = predictor(model, processor, jp.pruner("fastv", keep_ratio=0.5, layer=1), max_new_tokens=2)
        from PIL import Image

        sample = Sample(id="s0", question="what shape?", answers=["circle"], task="exact_match",
                        load_image=lambda: Image.new("RGB", (32, 32), "red"))
        with pytest.raises(Exception) as failure:
            predict([sample, sample])
        assert getattr(failure.value, "sample_id", None) == "s0" and "overflowed" in str(failure.value)
    finally:
        kernel.set_value(saved)
