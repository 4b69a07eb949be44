"""EVS: the pure selection equals a NumPy transcription of vLLM's code per video; exact repeats go first;
inside jp.generate on the Qwen families it keeps what the reference picks from the merged video features,
images stay whole, keep 1.0 equals unpruned, the LLM sees the budget; LLaVA-NeXT is refused."""

from __future__ import annotations

import numpy as np
import pytest

import jax_pruning as jp
from jax_pruning.engine import KEPT, generate
from jax_pruning.engine.select import previous_slots
from jax_pruning.engine.staging import stage
from jax_pruning.methods import evs
from tests.reference import np_evs


def _video_slots(t: int, h: int, w: int):
    """previous-slot map of one video laid out patch after patch (row-major cells)."""
    image = np.zeros((1, t * h * w), np.int32)
    frame = np.repeat(np.arange(t), h * w)[None].astype(np.int32)
    return previous_slots(image, frame, np.ones_like(image, bool))[0]


@pytest.mark.parametrize("metric", evs.METRICS)
@pytest.mark.parametrize("t,h,w,keep_ratio", [(4, 3, 5, 0.5), (6, 4, 4, 0.3), (3, 2, 3, 0.1), (5, 6, 7, 0.9)])
def test_select_equals_the_vllm_transcription(t, h, w, keep_ratio, metric):
    rng = np.random.default_rng(t * h * w)
    x = rng.normal(size=(t * h * w, 32)).astype(np.float32)
    x[h * w: 2 * h * w: 3] = x[: h * w: 3]  # some cells repeat exactly
    want = np_evs.retention_mask(x, (t, h, w), keep_ratio, metric)
    budget = np_evs.retained_count(h * w, t, keep_ratio)
    got = np.asarray(evs.select(x, _video_slots(t, h, w), np.zeros(len(x), np.int32), np.array([budget]),
                                np.ones(len(x), bool), metric))
    np.testing.assert_array_equal(got, want)
    assert got[: h * w].all() and got.sum() == budget


def test_exact_repeats_go_first_and_videos_keep_their_own_budgets():
    t, h, w = 4, 2, 3
    rng = np.random.default_rng(1)
    a = rng.normal(size=(t, h * w, 8)).astype(np.float32)
    a[2] = a[1]  # patch 2 repeats patch 1 exactly
    b = rng.normal(size=(2, h * w, 8)).astype(np.float32)
    x = np.concatenate([a.reshape(-1, 8), b.reshape(-1, 8), np.zeros((5, 8), np.float32)])  # + padding
    item = np.concatenate([np.zeros(t * h * w), np.ones(2 * h * w), np.zeros(5)]).astype(np.int32)
    frame = np.concatenate([np.repeat(np.arange(t), h * w), np.repeat(np.arange(2), h * w), np.zeros(5)]).astype(np.int32)
    valid = np.arange(len(x)) < len(x) - 5
    previous = previous_slots(item[None], frame[None], valid[None])[0]
    keep = np.asarray(evs.select(x, previous, item, np.array([3 * h * w, h * w + 2]), valid))
    assert not keep[2 * h * w: 3 * h * w].any()  # the repeated patch is pruned first
    assert keep[: t * h * w].sum() == 3 * h * w and keep[t * h * w: -5].sum() == h * w + 2 and not keep[-5:].any()
    np.testing.assert_array_equal(keep[t * h * w: -5], np_evs.retention_mask(b.reshape(-1, 8), (2, h, w),
                                                                             (h * w + 2) / (2 * h * w)))


def test_llava_next_is_refused(tmp_path):
    from tests.engine import families as F

    _, model = F.build("llava_next", tmp_path)
    with pytest.raises(ValueError, match="evs prunes video tokens.*LLaVA-NeXT takes no video"):
        generate(model, F.batch("llava_next"), jp.pruner("evs", keep_ratio=0.5), 2)


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def video_setup(request, tmp_path_factory):
    from tests.engine import families as F
    from tests.models.test_qwen_video import _inputs

    family = request.param
    _, model = F.build(family, tmp_path_factory.mktemp(family))
    inputs = _inputs(family, "two_videos")  # sample 0: video, image, video; sample 1: text only
    return family, model, inputs, generate(model, inputs, None, 4, eos_token_id=[])


def test_in_generate_keeps_what_the_reference_picks(video_setup):
    family, model, inputs, unpruned = video_setup
    out = generate(model, inputs, jp.pruner("evs", keep_ratio=1.0), 4, eos_token_id=[])
    np.testing.assert_array_equal(out.tokens, unpruned.tokens)
    for keep_ratio in (0.5, 0.25):
        out = generate(model, inputs, jp.pruner("evs", keep_ratio=keep_ratio), 4, eos_token_id=[])
        prepared = stage(model, inputs, 0)
        vt = prepared.visual
        embeds = np.asarray(prepared.inputs_embeds)
        b = 0
        valid = np.asarray(vt.valid[b])
        want = np.zeros(valid.shape, bool)
        for item in np.unique(np.asarray(vt.image[b])[valid]):
            slots = np.flatnonzero(valid & (np.asarray(vt.image[b]) == item))
            frames = int(np.asarray(vt.frames[b])[item])
            n = len(slots)
            if np.asarray(vt.video[b])[slots[0]] < 0:  # an image: kept whole
                want[slots] = True
                continue
            per_frame = n // frames
            h = int(np.asarray(vt.grid_rows[b])[item, 0]) // frames
            mask = np_evs.retention_mask(embeds[b, np.asarray(vt.index[b])[slots]], (frames, h, per_frame // h),
                                         keep_ratio)
            want[slots[mask]] = True
        got = out.visual_labels[b] == KEPT
        np.testing.assert_array_equal(got, want, err_msg=f"{family} keep {keep_ratio}")
        assert out.visual_tokens[b] == want.sum() < unpruned.visual_tokens[b]
        assert out.visual_tokens[1] == 0
