"""Pruned generation == a slow cache-free reference of the spec (tests/engine/reference.py).

keep_ratio < 1, so the KV cache really holds fewer tokens than the prompt: this
checks the compaction, the original position ids (1-D and M-RoPE), the two cache
segments of FastV / Hi-Lo, Hi-Lo's mask and bias, deepstack additions, and that
decoding continues at next_position + step.
"""

from __future__ import annotations

import numpy as np

import jax_pruning as jp
from jax_pruning.engine import CANDIDATE, DROPPED, KEPT, generate
from jax_pruning.engine.staging import stage
from tests.engine import reference as R

NEW = 4
CASES = {  # name -> (pruner options, reference mode, split)
    "random": (dict(keep_ratio=0.4, seed=3), "pre", 0),
    "fastv": (dict(keep_ratio=0.4, layer=1), "fastv", 1),
    "hilo": (dict(keep_ratio=0.3, removal_layer=1, bias=0.7), "hilo", 1),
    "hilo_no_merge": (dict(keep_ratio=0.3, removal_layer=1, merge=False), "hilo", 1),
    "mr_pruner": (dict(keep_ratio=0.3), "pre", 0),
}


def test_label_values_match_reference():
    assert (KEPT, DROPPED, CANDIDATE) == (R.KEPT, R.DROPPED, R.CANDIDATE)


def _cases(family):
    return [c for c in CASES if c != "mr_pruner" or family == "llava_next"]


def test_pruned_generation_equals_cache_free_reference(family_setup):
    family, _, model, inputs, _ = family_setup
    prepared = stage(model, inputs, 0)
    lm = model.language_model
    for case in _cases(family):
        options, mode, split = CASES[case]
        spec = jp.pruner(case.removesuffix("_no_merge"), **options)
        out = generate(model, inputs, spec, NEW, eos_token_id=[])
        assert (out.visual_tokens < out.stats["visual_tokens_before"]).all(), case
        for b in range(len(out.tokens)):
            want = R.generate_one(lm, prepared, out.visual_labels, b, NEW, mode=mode, split=split,
                                  merge=spec.name != "hilo" or spec.merge, bias=options.get("bias", 0.0))
            np.testing.assert_array_equal(out.tokens[b], want, err_msg=f"{family} {case} sample {b}")
            if mode == "fastv":
                real = out.stats["visual_tokens_before"][b] - out.stats["newlines"][b]
                chosen = R.fastv_choice(lm, prepared, b, split, int(np.floor(0.4 * real)), NEW)
                kept = np.sort(np.asarray(prepared.visual.index[b])[out.visual_labels[b] == KEPT])
                np.testing.assert_array_equal(kept, chosen, err_msg=f"{family} fastv sample {b}")
