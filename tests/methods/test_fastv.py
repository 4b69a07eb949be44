"""FastV scores/selection vs the NumPy reference, plus GQA, padding, jit/vmap, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jax_pruning.methods import fastv
from tests.reference.np_fastv import fastv_scores, fastv_select


def _qk(seed, heads, kv_heads, length, head_dim=8, scale=2.0):
    rng = np.random.default_rng(seed)
    q = (scale * rng.normal(size=(heads, head_dim))).astype(np.float32)
    k = (scale * rng.normal(size=(length, kv_heads, head_dim))).astype(np.float32)
    return q, k


@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (8, 2), (6, 1)])  # MHA, GQA, MQA
@pytest.mark.parametrize("masked", [False, True])
def test_scores_match_reference(heads, kv_heads, masked):
    q, k = _qk(heads + kv_heads, heads, kv_heads, 23)
    valid = None
    if masked:
        valid = np.random.default_rng(3).random(23) < 0.6
        valid[0] = True
    got = np.asarray(fastv.scores(q, k, valid))
    np.testing.assert_allclose(got, fastv_scores(q, k, valid), atol=1e-6, rtol=1e-5)
    assert got.dtype == np.float32
    assert got.sum() == pytest.approx(1.0, abs=1e-5)  # a mean of softmax rows
    if masked:
        assert np.all(got[~valid] == 0)


def test_padding_and_garbage_in_invalid_keys_do_not_matter():
    q, k = _qk(0, 8, 2, 10)
    padded = np.concatenate([k[:4], np.full((5, 2, 8), 1e4, np.float32), k[4:]])
    valid = np.r_[np.ones(4, bool), np.zeros(5, bool), np.ones(6, bool)]
    got = np.asarray(fastv.scores(q, padded, valid))
    want = np.asarray(fastv.scores(q, k))
    np.testing.assert_allclose(got[valid], want, atol=1e-7)
    assert np.all(got[~valid] == 0)


def test_jit_and_vmap_equal_eager():
    batch = [_qk(s, 8, 2, 16) for s in range(3)]
    qs = jnp.asarray(np.stack([q for q, _ in batch]))
    ks = jnp.asarray(np.stack([k for _, k in batch]))
    valid = jnp.asarray(np.random.default_rng(0).random((3, 16)) < 0.8).at[:, 0].set(True)
    batched = jax.jit(jax.vmap(fastv.scores))(qs, ks, valid)
    visual = jnp.zeros(16, bool).at[2:12].set(True)
    kept = jax.jit(jax.vmap(fastv.select, in_axes=(0, None, None)))(batched, visual, 4)
    for b in range(3):
        single = fastv.scores(batch[b][0], batch[b][1], valid[b])
        np.testing.assert_allclose(np.asarray(batched[b]), np.asarray(single), atol=1e-7)
        np.testing.assert_array_equal(np.asarray(kept[b]), np.asarray(fastv.select(single, visual, 4)))


@given(length=st.sampled_from([5, 12]), k=st.integers(0, 14), seed=st.integers(0, 2**16),
       ties=st.booleans())
def test_select_matches_reference(length, k, seed, ties):
    rng = np.random.default_rng(seed)
    scores = rng.random(length).astype(np.float32)
    if ties:
        scores = np.round(scores * 3) / 3  # many exact ties -> lower index wins
    visual = rng.random(length) < 0.6
    keep = np.asarray(fastv.select(jnp.asarray(scores), jnp.asarray(visual), k))
    np.testing.assert_array_equal(keep, fastv_select(scores, visual, k))
    assert keep.sum() == min(k, visual.sum()) and not (keep & ~visual).any()
    traced = jax.jit(fastv.select)(jnp.asarray(scores), jnp.asarray(visual), jnp.int32(k))
    np.testing.assert_array_equal(np.asarray(traced), keep)


def test_bad_inputs():
    q, k = _qk(0, 8, 2, 6)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        fastv.scores(q[:6], k[:, :1].repeat(4, 1))
    with pytest.raises(ValueError, match="head size"):
        fastv.scores(q[:, :4], k)
    with pytest.raises(ValueError, match="`keys` must have rank 3"):
        fastv.scores(q, k[:, 0])
    with pytest.raises(ValueError, match="`key_valid` has no True entry"):
        fastv.scores(q, k, np.zeros(6, bool))
    with pytest.raises(ValueError, match="`key_valid` must have length 6"):
        fastv.scores(q, k, np.ones(5, bool))
    bad = k.copy()
    bad[2, 1, 3] = np.nan
    with pytest.raises(ValueError, match="`keys` contains 1 non-finite"):
        fastv.scores(q, bad)
    with pytest.raises(ValueError, match="`scores` contains 1 non-finite"):
        fastv.select(jnp.asarray([0.1, np.nan]), jnp.ones(2, bool), 1)
    with pytest.raises(ValueError, match="fastv.select: `k` must be >= 0"):
        fastv.select(jnp.ones(3), jnp.ones(3, bool), -1)
