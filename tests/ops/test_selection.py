"""topk_mask / gather_kept / segment_topk_mask against the NumPy reference and their properties."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jax_pruning.ops import gather_kept, segment_topk_mask, topk_mask
from tests.reference import np_ops

# Small integer-valued scores make ties frequent, which is what the tie rule is about.
scores_st = st.lists(st.integers(-3, 3), min_size=1, max_size=24)


@st.composite
def scores_valid_k(draw):
    s = draw(scores_st)
    valid = draw(st.lists(st.booleans(), min_size=len(s), max_size=len(s)))
    k = draw(st.integers(-2, len(s) + 3))
    return np.asarray(s, np.float32), np.asarray(valid, bool), k


_jit_topk = jax.jit(topk_mask)
CAP = 32  # every hypothesis case is padded to one capacity: one compilation, and padding is exercised


def _padded_topk(scores, k, valid):
    """jit(topk_mask) on inputs padded with invalid slots (garbage scores), cut back to length n."""
    n = scores.size
    s = np.concatenate([scores, np.full(CAP - n, 99.0, np.float32)])
    v = np.concatenate([valid, np.zeros(CAP - n, bool)])
    return np.asarray(_jit_topk(jnp.asarray(s), jnp.int32(k), jnp.asarray(v)))


@given(scores_valid_k())
def test_topk_mask_matches_reference_and_counts(case):
    scores, valid, k = case
    padded = _padded_topk(scores, k, valid)
    keep = padded[: scores.size]
    assert not padded[scores.size :].any()
    np.testing.assert_array_equal(keep, np_ops.topk_mask(scores, k, valid))
    assert keep.sum() == min(max(k, 0), valid.sum())
    assert not (keep & ~valid).any()


def test_topk_eager_static_k_equals_jit_traced_k():
    rng = np.random.default_rng(3)
    scores = rng.integers(-2, 3, 20).astype(np.float32)
    valid = rng.random(20) < 0.7
    for k in (0, 3, 20, 25):
        eager = np.asarray(topk_mask(jnp.asarray(scores), k, jnp.asarray(valid)))
        np.testing.assert_array_equal(eager, _padded_topk(scores, k, valid)[:20])


@given(scores_valid_k())
def test_topk_keeps_the_best(case):
    scores, valid, k = case
    keep = _padded_topk(scores, k, valid)[: scores.size]
    if keep.any() and (valid & ~keep).any():
        assert scores[keep].min() >= scores[valid & ~keep].max()


@given(st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(0, 32))
def test_topk_permutation_equivariant_for_distinct_scores(seed, n, k):
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n).astype(np.float32)  # distinct
    perm = rng.permutation(n)
    valid = np.ones(n, bool)
    keep = _padded_topk(scores, k, valid)[:n]
    keep_perm = _padded_topk(scores[perm], k, valid)[:n]
    np.testing.assert_array_equal(keep_perm, keep[perm])


def test_topk_deterministic():
    s = jnp.asarray(np.random.default_rng(5).integers(0, 3, 50).astype(np.float32))
    first = np.asarray(topk_mask(s, 17))
    for _ in range(3):
        np.testing.assert_array_equal(np.asarray(topk_mask(s, 17)), first)


def test_topk_nan_is_lowest_but_counts_and_ties_go_low():
    s = jnp.asarray([1.0, 3.0, 3.0, np.nan, -np.inf, 2.0])
    np.testing.assert_array_equal(topk_mask(s, 2), [0, 1, 1, 0, 0, 0])
    # NaN (index 3) and -inf (index 4) tie as -inf: the lower index wins
    np.testing.assert_array_equal(topk_mask(s, 5), [1, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(topk_mask(s, 6), [1] * 6)
    assert not np.asarray(topk_mask(s, 0)).any()
    assert not np.asarray(topk_mask(s, -1)).any()


def test_topk_signed_zeros_tie():
    np.testing.assert_array_equal(topk_mask(jnp.asarray([-0.0, 0.0]), 1), [True, False])
    np.testing.assert_array_equal(topk_mask(jnp.asarray([0.0, -0.0]), 1), [True, False])


def test_topk_all_invalid_and_vmap():
    s = jnp.asarray(np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32))
    valid = jnp.asarray([[True] * 7, [False] * 7, [True, False] * 3 + [True]])
    k = jnp.asarray([2, 3, 9], jnp.int32)
    batched = np.asarray(jax.vmap(topk_mask)(s, k, valid))
    for b in range(3):
        np.testing.assert_array_equal(batched[b], np_ops.topk_mask(np.asarray(s[b]), int(k[b]), np.asarray(valid[b])))
    assert batched[1].sum() == 0


_jit_gather = jax.jit(gather_kept, static_argnums=2)


@given(st.lists(st.booleans(), min_size=20, max_size=20), st.sampled_from([1, 4, 12, 24]))
def test_gather_kept(keep_list, k):
    keep = np.asarray(keep_list)
    n = keep.size
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 1
    kept, index, slot_valid = _jit_gather(jnp.asarray(x), jnp.asarray(keep), k)
    expected = np.flatnonzero(keep)[:k]
    m = expected.size
    np.testing.assert_array_equal(np.asarray(slot_valid), np.arange(k) < m)
    np.testing.assert_array_equal(np.asarray(index)[:m], expected)  # original order
    np.testing.assert_array_equal(np.asarray(index)[m:], 0)
    np.testing.assert_array_equal(np.asarray(kept)[:m], x[expected])
    np.testing.assert_array_equal(np.asarray(kept)[m:], 0)


def _np_segment_topk(scores, segment, share, valid):
    keep = np.zeros(scores.size, bool)
    for s in range(share.size):
        members = np.flatnonzero((segment == s) & valid)
        local = np_ops.topk_mask(scores[members], share[s])
        keep[members[local]] = True
    return keep


_jit_segment_topk = jax.jit(segment_topk_mask)


@given(st.integers(0, 2**31 - 1), st.integers(1, 6))
def test_segment_topk_mask(seed, n_seg):
    rng = np.random.default_rng(seed)
    n = 25
    scores = rng.integers(-2, 3, n).astype(np.float32)  # ties
    segment = rng.integers(0, n_seg, n)
    share = np.zeros(6, np.int64)
    share[:n_seg] = rng.integers(0, 5, n_seg)
    valid = rng.random(n) < 0.8
    got = _jit_segment_topk(jnp.asarray(scores), jnp.asarray(segment), jnp.asarray(share), jnp.asarray(valid))
    np.testing.assert_array_equal(np.asarray(got), _np_segment_topk(scores, segment, share, valid))


def test_topk_static_k_under_jit():
    s = jnp.asarray(np.random.default_rng(1).normal(size=10).astype(np.float32))
    a = jax.jit(topk_mask, static_argnums=1)(s, 4)
    np.testing.assert_array_equal(np.asarray(a), np_ops.topk_mask(np.asarray(s), 4))
