"""jp.generate on tiny random models of all four families: HF parity, every method, budgets, caches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import jax_pruning as jp
from jax_pruning.engine import ABSORBED, CANDIDATE, DROPPED, KEPT, MERGED, generate
from jax_pruning.engine.staging import stage
from tests.engine import families as F
from tests.engine import reference as R
from tests.engine.families import NEW

torch.set_num_threads(1)
MULTI_RES = ("mr_pruner", "gprune")
METHODS = ("mr_pruner", "gprune", "tome", "random", "fastv", "hilo")
OPTIONS = {"fastv": dict(layer=1), "hilo": dict(removal_layer=1, bias=0.7), "random": dict(seed=3)}


def methods_for(family):
    return METHODS if family == "llava_next" else tuple(m for m in METHODS if m not in MULTI_RES)


def variants_for(family):
    """Pruners at keep_ratio 0.3, + Hi-Lo with its merge stage off on LLaVA-NeXT (1-D positions, newlines)
    and Qwen3-VL (M-RoPE, deepstack) — the other two families share Qwen2's decoder path."""
    specs = [jp.pruner(name, keep_ratio=0.3, **OPTIONS.get(name, {})) for name in methods_for(family)]
    if family in ("llava_next", "qwen3_vl"):
        specs.append(jp.pruner("hilo", keep_ratio=0.3, removal_layer=1, merge=False))
    return specs


def check_against_reference(model, inputs, spec, out):
    """out.tokens == the cache-free reference (tests/engine/reference.py) given the engine's labels;
    FastV's and ToMe's choices recomputed from their definitions."""
    prepared = stage(model, inputs, 0)
    lm = model.language_model
    mode = {"fastv": "fastv", "hilo": "hilo"}.get(spec.name, "pre")
    split = {"fastv": OPTIONS["fastv"]["layer"], "hilo": 1}.get(spec.name, 0)
    vt = prepared.visual
    real = out.stats["visual_tokens_before"] - out.stats["newlines"]
    for b in range(len(out.tokens)):
        kept = np.sort(np.asarray(vt.index[b])[np.isin(out.visual_labels[b], (KEPT, MERGED))])
        k = int(np.floor(spec.keep_ratio * real[b]))
        embeds = None
        if spec.name == "tome":
            embeds, survivors = R.tome_embeds(prepared, b, k)
            newline = np.asarray(vt.index[b])[np.asarray(vt.valid[b]) & (np.asarray(vt.kind[b]) == 2)]
            np.testing.assert_array_equal(np.setdiff1d(kept, newline), survivors, err_msg="ToMe survivors")
        if spec.name == "fastv":
            np.testing.assert_array_equal(kept, R.fastv_choice(lm, prepared, b, split, k, NEW))
        want = R.generate_one(lm, prepared, out.visual_labels, b, NEW, mode=mode, split=split,
                              merge=spec.name != "hilo" or spec.merge, bias=float(spec.options.get("bias", 0.0)),
                              inputs_embeds=embeds)
        np.testing.assert_array_equal(out.tokens[b], want, err_msg=f"{spec} sample {b} vs reference")


def test_unpruned_equals_hf_greedy_generation(family_setup):
    family, hf, _, inputs, unpruned = family_setup
    want = F.hf_generate(hf, inputs, NEW, pad_id=0)
    np.testing.assert_array_equal(unpruned.tokens, want)
    assert len(np.unique(want)) > 2, "the test model must produce varied tokens"
    real = unpruned.stats["visual_tokens_before"]
    np.testing.assert_array_equal(unpruned.visual_tokens, real)


def expected_seen(name: str, ratio: float, visual) -> np.ndarray:
    """Visual tokens the LLM should see per sample, from the spec: keep_ratio of the sample's real
    tokens; MR-Pruner's official total per image (its newlines, one per tile row, count in the base);
    G-Prune per resolution; LLaVA newlines on top."""
    valid, kind, image = np.asarray(visual.valid), np.asarray(visual.kind), np.asarray(visual.image)
    base, tile, newline = ((valid & (kind == k)).sum(axis=1) for k in (0, 1, 2))
    if name == "mr_pruner":
        keep = np.array([sum(np.floor(ratio * (valid[b] & (image[b] == i)).sum()) for i in np.unique(image[b][valid[b]]))
                         for b in range(len(valid))])
    elif name == "gprune":
        keep = np.floor(ratio * base) + np.floor(ratio * tile)
    else:
        keep = np.floor(ratio * (base + tile))
    return keep.astype(int) + newline


def test_keep_everything_equals_unpruned(family_setup):
    family, _, model, inputs, unpruned = family_setup
    for name in methods_for(family):
        out = generate(model, inputs, jp.pruner(name, keep_ratio=1.0, **OPTIONS.get(name, {})), NEW,
                       eos_token_id=[])
        np.testing.assert_array_equal(out.tokens, unpruned.tokens, err_msg=name)


def test_each_method_sees_its_budget_and_matches_the_reference(family_setup):
    """keep_ratio 0.3: exact visual counts, KV cache = text + kept, FLOPs fall, and the tokens equal the
    cache-free reference of the spec (so pruned prefill + decoding over the pruned cache is right)."""
    family, _, model, inputs, unpruned = family_setup
    text = inputs["attention_mask"].sum(axis=1) - unpruned.stats["visual_tokens_before"]
    assert (KEPT, DROPPED, CANDIDATE) == (R.KEPT, R.DROPPED, R.CANDIDATE)
    for spec in variants_for(family):
        name = spec.name
        out = generate(model, inputs, spec, NEW, eos_token_id=[])
        seen = out.visual_tokens
        before = out.stats["visual_tokens_before"]
        assert (seen < before).all() and (seen > 0).all(), (name, seen, before)
        np.testing.assert_array_equal(seen, expected_seen(name, 0.3, out.visual), err_msg=name)
        labels = out.visual_labels
        np.testing.assert_array_equal(np.isin(labels, (KEPT, MERGED)).sum(axis=1), seen, err_msg=name)
        if name == "tome":  # every token it removes is merged into a survivor
            assert (labels == MERGED).any(), name
            np.testing.assert_array_equal((labels == ABSORBED).sum(axis=1), before - seen, err_msg=name)
        else:
            assert not np.isin(labels, (MERGED, ABSORBED)).any(), name
        assert ((labels == CANDIDATE).sum(axis=1) == (out.stats["candidates"] if name == "hilo" else 0)).all(), name
        last_cache = out.stats["kv_cache_tokens"][-1]
        np.testing.assert_array_equal(last_cache, text + seen, err_msg=f"{name}: KV cache != text + kept")
        if name == "fastv":  # layers below K keep the full cache
            np.testing.assert_array_equal(out.stats["kv_cache_tokens"][0], inputs["attention_mask"].sum(axis=1))
        if name == "hilo":  # candidates left every layer's cache
            np.testing.assert_array_equal(out.stats["kv_cache_tokens"][0], text + seen)
            assert (out.stats["candidates"] > 0).all()
        assert out.stats["llm_flops"] < 0.8 * unpruned.stats["llm_flops"], name
        assert out.tokens.shape == (2, NEW)
        check_against_reference(model, inputs, spec, out)


def test_single_resolution_models_refuse_multi_resolution_methods(family_setup):
    family, _, model, inputs, _ = family_setup
    if family == "llava_next":
        return
    for name in MULTI_RES:
        with pytest.raises(ValueError, match="multi-resolution method"):
            generate(model, inputs, jp.pruner(name, keep_ratio=0.5), 2)


def test_eos_stops_and_pads_like_hf(family_setup):
    family, hf, model, inputs, unpruned = family_setup
    eos = int(unpruned.tokens[0, 2])
    tensors = {k: torch.as_tensor(v) for k, v in inputs.items()}
    with torch.no_grad():
        want = hf.generate(**tensors, max_new_tokens=NEW, do_sample=False, pad_token_id=0, eos_token_id=eos)
    want = want[:, inputs["input_ids"].shape[1]:].numpy()
    got = generate(model, inputs, None, NEW, eos_token_id=eos, pad_token_id=0).tokens
    np.testing.assert_array_equal(got[:, : want.shape[1]], want)
    assert (got[:, want.shape[1]:] == 0).all()
    first = int(np.argmax(got[0] == eos))
    assert (got[0, first + 1:] == 0).all()


def test_bad_arguments_are_named(family_setup):
    family, _, model, inputs, _ = family_setup
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, inputs, None, 0)
    with pytest.raises(ValueError, match="inputs lack"):
        generate(model, {"attention_mask": inputs["attention_mask"]}, None, 2)
    sizes_key = "image_sizes" if family == "llava_next" else "image_grid_thw"
    with pytest.raises(ValueError, match=sizes_key):
        generate(model, {k: v for k, v in inputs.items() if k != sizes_key}, None, 2)
    with pytest.raises(ValueError, match="lack 'pixel_values'"):
        generate(model, {k: v for k, v in inputs.items() if k not in ("pixel_values", sizes_key)}, None, 2)
    with pytest.raises(ValueError, match="fastv: layer=9"):
        generate(model, inputs, jp.pruner("fastv", keep_ratio=0.5, layer=9), 2)
    with pytest.raises(ValueError, match="pruner must come from"):
        generate(model, inputs, "hilo", 2)
    with pytest.raises(ValueError, match="model must be a multimodal model"):
        generate(model.language_model, inputs, None, 2)
    with pytest.raises(ValueError, match="inputs must be a dict"):
        generate(model, list(inputs.values()), None, 2)


def test_query_blocked_attention_changes_no_token(family_setup, monkeypatch):
    """The CPU's query-blocked attention (causal key skipping in every causal prefill, the plain masked
    form in Hi-Lo's first layers) generates what the fused form does; these prompts are shorter than the
    default block, so 8-query blocks force that path."""
    import jax

    import models.attention

    family, _, model, inputs, unpruned = family_setup
    specs = [jp.pruner("fastv", keep_ratio=0.3, layer=1), jp.pruner("hilo", keep_ratio=0.3, removal_layer=1, bias=0.7),
             jp.pruner("random", keep_ratio=0.3, seed=3)]
    fused = [generate(model, inputs, spec, NEW, eos_token_id=[]) for spec in specs]
    assert inputs["attention_mask"].shape[1] > 3 * 8
    monkeypatch.setattr(models.attention, "QUERY_BLOCK", 8)
    jax.clear_caches()  # the block size is read when tracing
    try:
        np.testing.assert_array_equal(generate(model, inputs, None, NEW, eos_token_id=[]).tokens, unpruned.tokens)
        for spec, want in zip(specs, fused):
            got = generate(model, inputs, spec, NEW, eos_token_id=[])
            np.testing.assert_array_equal(got.visual_labels, want.visual_labels, err_msg=spec.name)
            np.testing.assert_array_equal(got.tokens, want.tokens, err_msg=spec.name)
    finally:
        jax.clear_caches()
