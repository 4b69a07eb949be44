"""VisionZip and VisPruner inside jp.generate on all four families: per crop (LLaVA-NeXT) or image (Qwen-VL)
each keeps exactly what its NumPy reference picks from the tower evidence the model produced, VisionZip's
contextual tokens are the projector applied to the reference's merged vectors (deepstack too), keep_ratio
1.0 equals unpruned, the LLM sees the budgeted count, and decoding equals the cache-free reference."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import jax_pruning as jp
from jax_pruning.engine import ABSORBED, KEPT, MERGED, generate
from jax_pruning.engine.staging import stage
from jax_pruning.engine.tower import split_budget, tower_select
from tests.engine import families as F
from tests.engine import reference as R
from tests.engine.families import NEW
from tests.reference import np_visionzip, np_vispruner

METHODS = ("visionzip", "vispruner")


def proportional_split(keep: int, sizes: list[int]) -> list[int]:
    """Largest remainder in exact fractions, ties to the lower group (independent of engine.tower)."""
    total = sum(sizes)
    shares = [Fraction(keep * n, total) for n in sizes]
    out = [int(s) for s in shares]
    rest = sorted(range(len(sizes)), key=lambda g: (-(shares[g] - out[g]), g))
    for g in rest[: keep - sum(out)]:
        out[g] += 1
    return out


def reference_choice(spec, evidence, b: int, keep: int):
    """(kept slots, {slot: merged projector input}) of sample b from the NumPy references."""
    group = np.asarray(evidence.group[b])
    attention, keys, hidden = (np.asarray(a[b], np.float64) for a in (evidence.attention, evidence.keys,
                                                                      evidence.hidden))
    n_groups = int(group.max()) + 1
    slots = [np.flatnonzero(group == g) for g in range(n_groups)]
    budgets = proportional_split(keep, [len(s) for s in slots])
    kept, merged = [], {}
    for where, k in zip(slots, budgets):
        if spec.name == "vispruner":
            mask = np_vispruner.select(attention[where].T, hidden[where][:, : evidence.main], k,
                                       spec.important_ratio)
            kept.extend(where[mask])
            continue
        contextual = int(k * spec.contextual_ratio)
        mask, tokens, targets, slot_valid = np_visionzip.select(attention[where].T, keys[where], hidden[where],
                                                                k - contextual, contextual)
        kept.extend(where[mask])
        for token, target, ok in zip(tokens, targets, slot_valid):
            if ok:
                kept.append(where[target])
                merged[int(where[target])] = token
    return np.sort(np.asarray(kept, int)), merged


def test_split_budget_is_proportional_and_exact():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(0, 40, size=rng.integers(1, 7))
        keep = int(rng.integers(0, sizes.sum() + 1))
        got = split_budget(keep, sizes)
        assert got.sum() == keep and (got <= sizes).all()
        assert list(got) == proportional_split(keep, list(sizes)) if sizes.sum() else not got.any()


@pytest.mark.parametrize("name", METHODS)
def test_keep_everything_equals_unpruned(family_setup, name):
    _, _, model, inputs, unpruned = family_setup
    out = generate(model, inputs, jp.pruner(name, keep_ratio=1.0), NEW, eos_token_id=[])
    np.testing.assert_array_equal(out.tokens, unpruned.tokens)
    np.testing.assert_array_equal(out.visual_tokens, unpruned.visual_tokens)


@pytest.mark.parametrize("name,keep_ratio", [("visionzip", 0.5), ("visionzip", 0.2), ("vispruner", 0.3)])
def test_keeps_what_its_reference_picks_and_decodes_like_the_reference(family_setup, name, keep_ratio):
    family, _, model, inputs, unpruned = family_setup
    spec = jp.pruner(name, keep_ratio=keep_ratio)
    out = generate(model, inputs, spec, NEW, eos_token_id=[])
    real = out.stats["visual_tokens_before"] - out.stats["newlines"]
    k = np.floor(keep_ratio * real).astype(int)
    np.testing.assert_array_equal(out.visual_tokens, k + out.stats["newlines"])  # the LLM sees the budget
    assert out.stats["llm_flops"] < unpruned.stats["llm_flops"] and out.stats["prune_flops"] > 0

    prepared = stage(model, inputs, 0, evidence=True)
    embeds, additions = tower_select(spec, model, prepared, k)[:2]
    vt = prepared.visual
    any_merged = False
    for b in range(len(out.tokens)):
        index = np.asarray(vt.index[b])
        labels = out.visual_labels[b]
        got = np.sort(np.flatnonzero(np.isin(labels, (KEPT, MERGED)) & (np.asarray(vt.kind[b]) != 2)))
        want, merged = reference_choice(spec, prepared.evidence, b, int(k[b]))
        np.testing.assert_array_equal(got, want, err_msg=f"{family} sample {b}")
        np.testing.assert_array_equal(np.flatnonzero(labels == MERGED), sorted(merged), err_msg="merged slots")
        if name == "vispruner":
            assert not (labels == ABSORBED).any()
        assert not merged or name == "visionzip"
        any_merged = any_merged or bool(merged)
        if merged:
            slots = np.array(sorted(merged))
            projected, extra = model.project_hidden(np.stack([merged[s] for s in slots]).astype(np.float32))
            np.testing.assert_allclose(np.asarray(embeds[b])[index[slots]], np.asarray(projected), atol=2e-5)
            if extra is not None:  # Qwen3-VL: the merged tokens' deepstack features
                np.testing.assert_allclose(np.asarray(additions[:, b])[:, index[slots]], np.asarray(extra), atol=2e-5)
    assert any_merged or name != "visionzip" or keep_ratio < 0.5  # at 0.5 every family forms contextual tokens
    merged_inputs = prepared.replace(inputs_embeds=embeds, layer_additions=additions)
    for b in range(len(out.tokens)):
        want = R.generate_one(model.language_model, merged_inputs, out.visual_labels, b, NEW, mode="pre")
        np.testing.assert_array_equal(out.tokens[b], want, err_msg=f"sample {b} vs the cache-free reference")


@pytest.mark.parametrize("name", METHODS)
def test_each_row_equals_its_solo_run(family_setup, name):
    """Different budgets per sample in one batch: each row as if it ran alone."""
    family, _, model, inputs, _ = family_setup
    spec = jp.pruner(name, keep_ratio=0.4)
    both = generate(model, inputs, spec, NEW, eos_token_id=[])
    sizes = F.MULTI_IMAGE["sizes"][:2]  # sample 0 of the batch: two images (the same seeds), the same words
    solo = generate(model, F.batch(family, sizes=sizes, words=("w1 w2",), images_per_sample=(2,)), spec, NEW,
                    eos_token_id=[])
    np.testing.assert_array_equal(both.tokens[0], solo.tokens[0])
    np.testing.assert_array_equal(both.visual_tokens[0], solo.visual_tokens[0])
    n = int(np.sum(solo.visual.valid[0]))
    np.testing.assert_array_equal(both.visual_labels[0][:n], solo.visual_labels[0][:n])
