"""DivPrune against its float64 NumPy reference (real sizes, budgets, padding), ties, jit/vmap, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jax_pruning.methods import divprune
from tests.methods.feature_data import centers, clustered, pad_rows, random_valid
from tests.reference import np_divprune

_jit_select = jax.jit(lambda x, k, valid: divprune.select(x, k, valid=valid))
_jit_order = jax.jit(lambda x, k, valid: divprune.pick_order(x, k, valid=valid))


def case(seed, n, d, clusters=20):
    rng = np.random.default_rng(seed)
    return clustered(rng, n, d, centers(rng, clusters, d))


def budgets(n):
    return [1, n // 10, n // 4, n // 2, n]


def reference_sets(x, ks, valid=None):
    """Reference keep masks for several budgets from one greedy run (the greedy picks do not depend on k)."""
    valid = np.ones(len(x), bool) if valid is None else valid
    n_valid = int(valid.sum())
    order = np_divprune.pick_order(x, max([k for k in ks if k < n_valid], default=0), valid)
    out = []
    for k in ks:
        keep = valid.copy()
        if k < n_valid:
            keep[:] = False
            keep[order[:k]] = True
        out.append(keep)
    return out


_per_budget = jax.vmap(_jit_select, in_axes=(None, 0, None))  # one x, a batch of traced budgets


@pytest.mark.parametrize("n,d", [(576, 256), (576, 1024), (2880, 256), (2880, 1024)])
def test_matches_reference(n, d):
    x = case(n + d, n, d)
    ks = budgets(n)
    keeps = np.asarray(_per_budget(jnp.asarray(x), jnp.asarray(ks, jnp.int32), jnp.ones(n, bool)))
    for k, keep, ref in zip(ks, keeps, reference_sets(x, ks)):
        assert keep.sum() == k
        np.testing.assert_array_equal(keep, ref, err_msg=f"k={k}")
    # the reference helper agrees with the reference itself
    np.testing.assert_array_equal(reference_sets(x, [ks[1]])[0], np_divprune.select(x, ks[1]))


def test_pick_order_matches_reference():
    """The greedy order itself (first pick = the most isolated token), not only the kept set."""
    x = case(5, 576, 256)
    got = np.asarray(_jit_order(jnp.asarray(x), jnp.int32(144), jnp.ones(576, bool)))
    ref = np_divprune.pick_order(x, 144)
    np.testing.assert_array_equal(got[:144], ref)
    assert (got[144:] == -1).all()
    u = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    dist = 1 - u @ u.T
    np.fill_diagonal(dist, np.inf)
    assert got[0] == np.argmax(dist.min(axis=1))


@pytest.mark.parametrize("junk", [np.nan, 1e30, None], ids=["nan", "huge", "noise"])
def test_padding(junk):
    """Real tokens scattered among junk rows: same picks as the reference on the real rows alone."""
    rng = np.random.default_rng(11)
    x = case(12, 500, 256)
    valid = random_valid(rng, 500, 576)
    padded = jnp.asarray(pad_rows(x, valid, rng, junk=junk))
    ks = budgets(500) + [576]
    keeps = np.asarray(_per_budget(padded, jnp.asarray(ks, jnp.int32), jnp.asarray(valid)))
    for k, keep, ref in zip(ks, keeps, reference_sets(x, ks)):
        assert keep.sum() == min(k, 500) and not (keep & ~valid).any()
        np.testing.assert_array_equal(keep[valid], ref, err_msg=f"k={k}")
    eager = np.asarray(divprune.select(padded, 50, valid=jnp.asarray(valid)))  # eager: junk rows are not checked
    np.testing.assert_array_equal(eager[valid], reference_sets(x, [50])[0])


def _exact_rows(patterns, d=8):
    """Rows with four entries +-1 (norm 2): unit entries +-0.5, so every cosine is an exact multiple of 1/4."""
    out = np.zeros((len(patterns), d), np.float32)
    for row, (cols, signs, scale) in enumerate(patterns):
        out[row, list(cols)] = np.asarray(signs, np.float32) * scale
    return out


def test_ties_go_to_the_lower_index():
    a, b, c = (0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 4, 5)
    plus, alt = (1, 1, 1, 1), (1, -1, 1, -1)
    # rows: a, a (copy), b, 2b (same direction), a' (cos 0 with a), c
    x = _exact_rows([(a, plus, 1), (a, plus, 1), (b, plus, 1), (b, plus, 2), (a, alt, 1), (c, plus, 1)])
    # nearest-other distances: 0, 0, 0, 0, 1, 0.5 -> first pick 4 (the most isolated token)
    order = np.asarray(divprune.pick_order(jnp.asarray(x), 5))
    np.testing.assert_array_equal(order[:5], np_divprune.pick_order(x, 5))
    # after 4: min dists 1, 1, 1, 1, -, 1 -> 0; then 1: 0, 2: 1, 3: 1, 5: 0.5 -> 2;
    # then 1: 0, 3: 0, 5: 0.5 -> 5; then 1 and 3 both 0 -> 1
    np.testing.assert_array_equal(order[:5], [4, 0, 2, 5, 1])
    np.testing.assert_array_equal(np.asarray(divprune.select(jnp.asarray(x), 5)), [1, 1, 1, 0, 1, 1])
    # mutually orthogonal tokens: every distance is 1, picks in index order
    ortho = _exact_rows([(a, plus, 1), (b, plus, 3), (a, alt, 2), (b, alt, 1)])
    np.testing.assert_array_equal(np.asarray(divprune.pick_order(jnp.asarray(ortho), 3))[:3], [0, 1, 2])
    # all tokens identical: every distance is 0, the first k indices are kept
    same = np.tile(x[:1], (12, 1))
    for k in (0, 1, 5, 11):
        np.testing.assert_array_equal(np.asarray(divprune.select(jnp.asarray(same), k)), np.arange(12) < k)


def test_jit_vmap_with_per_sample_budget():
    rng = np.random.default_rng(3)
    cap, ks, xs, valids, refs = 300, [30, 0, 299, 120], [], [], []
    for b, n in enumerate([300, 250, 280, 171]):
        x = case(40 + b, n, 64)
        valid = random_valid(rng, n, cap)
        xs.append(pad_rows(x, valid, rng)), valids.append(valid)
        refs.append(np_divprune.select(x, ks[b]))
    batched = np.asarray(jax.vmap(_jit_select)(jnp.asarray(np.stack(xs)), jnp.asarray(ks, jnp.int32),
                                               jnp.asarray(np.stack(valids))))
    for b in range(4):
        eager = np.asarray(divprune.select(jnp.asarray(xs[b]), ks[b], valid=jnp.asarray(valids[b])))
        np.testing.assert_array_equal(batched[b], eager)
        assert batched[b].sum() == min(ks[b], valids[b].sum()) and not (batched[b] & ~valids[b]).any()
        np.testing.assert_array_equal(batched[b][valids[b]], refs[b])


def test_budget_edges():
    x = jnp.asarray(case(8, 40, 16))
    valid = np.arange(40) % 3 == 0  # 14 real tokens
    for k in (14, 15, 40, 1000):
        np.testing.assert_array_equal(np.asarray(divprune.select(x, k, valid=jnp.asarray(valid))), valid)
    assert not np.asarray(divprune.select(x, 0)).any()
    assert not np.asarray(_jit_select(x, jnp.int32(5), jnp.zeros(40, bool))).any()
    one = np.zeros(40, bool)
    one[17] = True
    np.testing.assert_array_equal(np.asarray(_jit_select(x, jnp.int32(1), jnp.asarray(one))), one)
    two = one.copy()
    two[3] = True  # two real tokens, k=1: both are equally isolated -> the lower index
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(divprune.select(x, 1, valid=jnp.asarray(two)))), [3])
    assert divprune.select(jnp.zeros((0, 8)), 3).shape == (0,)
    zero = np.asarray(case(9, 20, 8))
    zero[[2, 5]] = 0  # zero-norm tokens: distance 1 to everything
    keep = np.asarray(divprune.select(jnp.asarray(zero), 6))
    assert keep.sum() == 6
    np.testing.assert_array_equal(keep, np_divprune.select(zero, 6))


@given(st.integers(0, 2**31 - 1), st.integers(0, 24), st.integers(0, 30))
def test_properties(seed, n_valid, k):
    rng = np.random.default_rng(seed)
    x = clustered(rng, 24, 8, centers(rng, 3, 8))
    valid = rng.permutation(np.arange(24) < n_valid)
    keep = np.asarray(_jit_select(jnp.asarray(x), jnp.int32(k), jnp.asarray(valid)))
    assert keep.sum() == min(k, n_valid) and not (keep & ~valid).any()
    if 0 < k < n_valid:  # the first pick is the valid token farthest from its nearest valid neighbour
        u = x[valid] / np.linalg.norm(x[valid].astype(np.float64), axis=1, keepdims=True)
        dist = 1 - u @ u.T
        np.fill_diagonal(dist, np.inf)
        nearest = dist.min(axis=1)
        first = int(np.asarray(_jit_order(jnp.asarray(x), jnp.int32(k), jnp.asarray(valid)))[0])
        assert keep[first] and valid[first]
        assert nearest[np.flatnonzero(valid) == first][0] >= nearest.max() - 1e-6


def test_bad_inputs():
    x = jnp.asarray(case(5, 40, 16))
    with pytest.raises(ValueError, match=r"divprune.select: `x` contains 1 non-finite"):
        divprune.select(x.at[2, 2].set(jnp.nan), 3)
    with pytest.raises(ValueError, match=r"`x` contains 1 non-finite value\(s\) \(NaN/inf\), first at index \[7, 0\]"):
        divprune.select(x.at[7, 0].set(jnp.inf), 3, valid=jnp.ones(40, bool))
    with pytest.raises(ValueError, match="divprune.select: `x` must have rank 2"):
        divprune.select(x[0], 3)
    with pytest.raises(ValueError, match="`x` must have a floating dtype"):
        divprune.select(x.astype(jnp.int32), 3)
    with pytest.raises(ValueError, match="`k` must be >= 0"):
        divprune.select(x, -1)
    with pytest.raises(ValueError, match="`k` must be an integer count"):
        divprune.select(x, 2.5)
    with pytest.raises(ValueError, match="`k` must be an int or an integer scalar array"):
        divprune.select(x, jnp.float32(3))
    with pytest.raises(ValueError, match="`valid` must have length 40"):
        divprune.select(x, 3, valid=jnp.ones(39, bool))
    with pytest.raises(ValueError, match="`valid` must have a bool dtype"):
        divprune.select(x, 3, valid=jnp.ones(40, jnp.int32))
    with pytest.raises(ValueError, match="divprune.pick_order: `k` must be >= 0"):
        divprune.pick_order(x, -3)
    # NaN inside jit: not checked, the count stays exact
    keep = _jit_select(x.at[2, 2].set(jnp.nan), jnp.int32(6), jnp.ones(40, bool))
    assert int(np.sum(keep)) == 6
