"""The 2025 baselines inside jp.generate, on all four families: each keeps exactly the tokens its pure
function (NumPy reference) picks from the features the model produced at that point, keep_ratio 1.0
equals unpruned, the LLM sees the budgeted count, and decoding over the pruned cache equals the
cache-free reference."""

from __future__ import annotations

import numpy as np
import pytest

import jax_pruning as jp
from jax_pruning.engine import KEPT, generate
from jax_pruning.engine.staging import stage
from jax_pruning.methods.declaration import AT_LLM_LAYER
from tests.engine import reference as R
from tests.engine.families import NEW
from tests.reference import np_cdpruner, np_dart, np_divprune

OPTIONS = {"dart": dict(layer=1, image_pivots=2, text_pivots=2),  # the tiny LLMs have 2 layers
           "divprune": {}, "cdpruner": {}}
BASELINES = tuple(OPTIONS)


def dart_choice(model, prepared, b: int, spec, k: int) -> np.ndarray:
    """DART's kept positions for sample b: the NumPy reference on layer K's normed input and layer
    K-1's keys, newlines kept on top (never pivots, never counted)."""
    rows, visual, newline, where, hidden, keys = R.layer_features(model.language_model, prepared, b, spec.layer, NEW)
    is_visual = np.zeros(len(rows), bool)
    is_visual[where[~newline]] = True
    valid = np.ones(len(rows), bool)
    valid[where[newline]] = False
    keep = np_dart.select(hidden, keys, is_visual, k, valid, image_pivots=spec.image_pivots,
                          text_pivots=spec.text_pivots)
    return np.sort(np.concatenate([rows[keep], visual[newline]]))


def _visual_features(prepared, b: int):
    """Sample b's real visual slots: (sequence positions, newline flags, features [n, D] the LLM would see)."""
    vt = prepared.visual
    valid = np.asarray(vt.valid[b])
    index = np.asarray(vt.index[b])[valid]
    newline = np.asarray(vt.kind[b])[valid] == 2
    return index, newline, np.asarray(prepared.inputs_embeds[b])[index]


def divprune_choice(model, prepared, b: int, spec, k: int) -> np.ndarray:
    index, newline, x = _visual_features(prepared, b)
    keep = np_divprune.select(x, k, ~newline)
    return np.sort(index[keep | newline])


def cdpruner_choice(model, prepared, b: int, spec, k: int) -> np.ndarray:
    """The instruction: the sample's real text tokens after its last visual token, their input embeddings."""
    index, newline, x = _visual_features(prepared, b)
    mask = np.asarray(prepared.attention_mask[b]).astype(bool)
    after = mask & (np.arange(len(mask)) > index.max())
    after[index] = False
    assert after.any(), "the test prompts put the question after the image"
    text = np.asarray(prepared.inputs_embeds[b])[after]
    keep = np_cdpruner.select(x, text, k, ~newline, use_relevance=spec.relevance,
                              negate_relevance=spec.negate_relevance, epsilon=spec.epsilon)
    return np.sort(index[keep | newline])


CHOICE = {"dart": dart_choice, "divprune": divprune_choice, "cdpruner": cdpruner_choice}


@pytest.mark.parametrize("name", BASELINES)
def test_keep_everything_equals_unpruned(family_setup, name):
    _, _, model, inputs, unpruned = family_setup
    out = generate(model, inputs, jp.pruner(name, keep_ratio=1.0, **OPTIONS[name]), NEW, eos_token_id=[])
    np.testing.assert_array_equal(out.tokens, unpruned.tokens)


@pytest.mark.parametrize("name", BASELINES)
def test_keeps_what_its_reference_picks_and_decodes_like_the_reference(family_setup, name):
    _, _, model, inputs, unpruned = family_setup
    spec = jp.pruner(name, keep_ratio=0.3, **OPTIONS[name])
    out = generate(model, inputs, spec, NEW, eos_token_id=[])
    real = out.stats["visual_tokens_before"] - out.stats["newlines"]
    k = np.floor(0.3 * real).astype(int)
    np.testing.assert_array_equal(out.visual_tokens, k + out.stats["newlines"])
    text = inputs["attention_mask"].sum(axis=1) - out.stats["visual_tokens_before"]
    np.testing.assert_array_equal(out.stats["kv_cache_tokens"][-1], text + out.visual_tokens)
    assert out.stats["llm_flops"] < unpruned.stats["llm_flops"]
    prepared = stage(model, inputs, 0)
    at_layer = spec.method.stage == AT_LLM_LAYER
    split = spec.options[spec.method.layer_option] if at_layer else 0
    for b in range(len(out.tokens)):
        kept = np.sort(np.asarray(prepared.visual.index[b])[out.visual_labels[b] == KEPT])
        np.testing.assert_array_equal(kept, CHOICE[name](model, prepared, b, spec, int(k[b])), err_msg=f"sample {b}")
        want = R.generate_one(model.language_model, prepared, out.visual_labels, b, NEW,
                              mode="fastv" if at_layer else "pre", split=split)
        np.testing.assert_array_equal(out.tokens[b], want, err_msg=f"sample {b} vs the cache-free reference")


@pytest.mark.parametrize("keep_ratio", [0.3, 1.0])
def test_pyramiddrop_with_one_stage_is_fastv(family_setup, keep_ratio):
    _, _, model, inputs, _ = family_setup
    pdrop = generate(model, inputs, jp.pruner("pyramiddrop", keep_ratio=keep_ratio, layers=(1,)), NEW, eos_token_id=[])
    fastv = generate(model, inputs, jp.pruner("fastv", keep_ratio=keep_ratio, layer=1), NEW, eos_token_id=[])
    np.testing.assert_array_equal(pdrop.visual_labels, fastv.visual_labels)
    np.testing.assert_array_equal(pdrop.tokens, fastv.tokens)
    assert [list(t) for t in pdrop.stats["kv_cache_tokens"]] == [list(t) for t in fastv.stats["kv_cache_tokens"]]
