"""Graph primitives and window apportionment against the NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jax_pruning.ops import (
    apportion,
    cosine_similarity,
    grid_coordinates,
    max_similarity,
    propagate,
    softmax_graph,
    threshold_graph,
    threshold_graph_scores,
    window_index,
)
from tests.reference import np_ops


def _clustered(rng, n, d=16, clusters=3):
    centers = rng.normal(size=(clusters, d))
    x = centers[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, d))
    return (x * rng.uniform(0.5, 2.0, (n, 1))).astype(np.float32)


def test_cosine_zero_rows_give_zero_not_nan():
    a = np.zeros((3, 4), np.float32)
    a[1] = [1, 2, 3, 4]
    sim = np.asarray(cosine_similarity(jnp.asarray(a), jnp.asarray(a)))
    assert np.isfinite(sim).all()
    np.testing.assert_allclose(sim, np_ops.cosine(a, a), atol=1e-6)
    assert sim[0].max() == 0 and sim[1, 1] > 0.999999


def test_threshold_graph():
    sim = jnp.asarray([[1.0, 0.5, 0.4999], [-0.7, 0.6, 0.0]])
    expected = np.asarray([[1.0, 0.5, 0.0], [0.0, 0.6, 0.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(threshold_graph(sim, 0.5)), expected)


def test_softmax_graph_matches_reference_with_invalid_columns():
    rng = np.random.default_rng(0)
    x = _clustered(rng, 20)
    x[4] = 0  # a zero-norm token: a row without neighbours -> uniform
    sim = np_ops.cosine(x, x)
    col_valid = rng.random(20) < 0.7
    adj, deg = softmax_graph(jnp.asarray(sim), 0.5, 0.03, jnp.asarray(col_valid))
    ref_adj, ref_deg = np_ops.softmax_graph(sim, 0.5, 0.03, col_valid)
    np.testing.assert_allclose(np.asarray(adj), ref_adj, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(deg), ref_deg)
    assert (np.asarray(adj)[:, ~col_valid] == 0).all()
    assert deg[4] == col_valid.sum()  # uniform row over the valid columns
    np.testing.assert_allclose(np.asarray(adj).sum(1), 1, rtol=1e-5)


def test_softmax_graph_no_valid_column_is_zero_not_nan():
    adj, deg = softmax_graph(jnp.ones((3, 2)), 0.5, 0.03, jnp.zeros(2, bool))
    assert np.asarray(adj).sum() == 0 and np.asarray(deg).sum() == 0


def test_propagate_is_vector_matrix_product():
    rng = np.random.default_rng(1)
    w, a = rng.random(5).astype(np.float32), rng.random((5, 7)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(propagate(jnp.asarray(w), jnp.asarray(a))), w @ a, rtol=1e-6)


def test_grid_and_window_index():
    row, col = grid_coordinates(3, 5)
    np.testing.assert_array_equal(row[:6], [0, 0, 0, 0, 0, 1])
    ids = np.asarray(window_index(jnp.asarray(row), jnp.asarray(col), 2, 3))
    np.testing.assert_array_equal(ids.reshape(3, 5), [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]])
    np.testing.assert_array_equal(ids, np_ops.window_index(row, col, 2, 3))


_jit_apportion = jax.jit(apportion)


@given(st.integers(0, 2**31 - 1), st.integers(0, 60), st.booleans())
def test_apportion_matches_reference(seed, total, equal_weights):
    rng = np.random.default_rng(seed)
    weights = np.ones(8, np.float32) if equal_weights else rng.random(8).astype(np.float32)
    weights[rng.random(8) < 0.2] = 0
    capacity = rng.integers(0, 8, 8)
    share = np.asarray(_jit_apportion(jnp.asarray(weights), jnp.int32(total), jnp.asarray(capacity)))
    np.testing.assert_array_equal(share, np_ops.apportion(weights, total, capacity))
    assert share.sum() == min(total, capacity.sum())
    assert (share <= capacity).all() and (share >= 0).all()


def _apportion4(weights, total, capacity):
    """Run the jitted apportion on 4 bins (unused bins: capacity 0, which must get nothing)."""
    w = np.zeros(4, np.float32)
    c = np.zeros(4, np.int32)
    w[: len(weights)], c[: len(capacity)] = weights, capacity
    return np.asarray(_jit_apportion(jnp.asarray(w), jnp.int32(total), jnp.asarray(c)))[: len(weights)]


def test_apportion_largest_remainder_and_ties():
    # quotas 10 * [1, 2, 3] / 6 = [1.67, 3.33, 5]: floors [1, 3, 5], one leftover to bin 0
    np.testing.assert_array_equal(_apportion4([1.0, 2.0, 3.0], 10, [9, 9, 9]), [2, 3, 5])
    # equal weights, 2 units over 3 bins: ties go to the lower bins
    np.testing.assert_array_equal(_apportion4([1.0, 1.0, 1.0], 2, [5, 5, 5]), [1, 1, 0])
    # capped bin: its excess is re-split over the open bins
    np.testing.assert_array_equal(_apportion4([1.0, 2.0, 3.0, 0.0], 10, [4, 4, 1, 4]), [4, 4, 1, 1])
    # all-zero weights: equal split
    np.testing.assert_array_equal(_apportion4([0.0, 0.0], 3, [5, 5]), [2, 1])
    # more units than room: everything filled
    np.testing.assert_array_equal(_apportion4([1.0, 5.0], 30, [2, 3]), [2, 3])


def test_blocked_graph_scores_and_max_similarity_match_dense():
    rng = np.random.default_rng(2)
    x = _clustered(rng, 10, d=8, clusters=2)
    x[6] = 0
    info = np_ops.l2_norm(x)
    group = rng.integers(0, 3, 10)
    sim = np_ops.cosine(x, x)
    dense = (np_ops.threshold_graph(sim, 0.5) * (group[:, None] == group[None, :])) @ info
    for block in (3, 4, 10, 64):  # several blocks with a padded last one, one block, a block larger than N
        got = threshold_graph_scores(jnp.asarray(x), jnp.asarray(info), 0.5, group=jnp.asarray(group), block=block)
        np.testing.assert_allclose(np.asarray(got), dense, rtol=1e-6)
        cols = rng.random(10) < 0.4
        best = np.asarray(max_similarity(jnp.asarray(x), jnp.asarray(cols), block=block))
        expected = np.where(cols[None, :], sim, -1.0).max(axis=1)
        np.testing.assert_allclose(best, expected, rtol=1e-6, atol=1e-7)
    assert (np.asarray(max_similarity(jnp.asarray(x), jnp.zeros(10, bool), block=4)) == -1).all()
    ungrouped = threshold_graph_scores(jnp.asarray(x), jnp.asarray(info), 0.5, block=4)
    np.testing.assert_allclose(np.asarray(ungrouped), np_ops.threshold_graph(sim, 0.5) @ info, rtol=1e-6)
