"""G-Prune against its NumPy reference (matrix power there, vector-matrix products here), jit/vmap/padding, properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jax_pruning.methods import gprune
from tests.methods.feature_data import centers, clustered, pad_rows, random_valid
from tests.reference import np_gprune

_jit_select = jax.jit(lambda x, k, valid: gprune.select(x, k, valid=valid))
_jit_scores = jax.jit(lambda x, valid: gprune.scores(x, valid=valid))


def case(seed, n=40, d=16, clusters=4):
    rng = np.random.default_rng(seed)
    return clustered(rng, n, d, centers(rng, clusters, d))


@pytest.mark.parametrize("steps", [0, 1, 5])
def test_matches_reference(steps):
    for seed, k in [(0, 0), (1, 7), (2, 20), (3, 40)]:
        x = case(seed)
        got_scores = np.asarray(gprune.scores(jnp.asarray(x), steps=steps))
        np.testing.assert_allclose(got_scores, np_gprune.scores(x, steps=steps), rtol=1e-5)
        keep = np.asarray(gprune.select(jnp.asarray(x), k, steps=steps))
        np.testing.assert_array_equal(keep, np_gprune.select(x, k, steps=steps))


def test_multires_matches_reference_at_real_size():
    """LLaVA-NeXT sizes (d=4096, 576 + 2304 tokens), keep ratio 0.3 per resolution."""
    rng = np.random.default_rng(3)
    c = centers(rng, 40, 4096)
    low, high = clustered(rng, 576, 4096, c), clustered(rng, 2304, 4096, c)
    k_low, k_high = gprune.multires_budget(0.3, 576, 2304)
    assert (k_low, k_high) == (172, 691)
    keep_low, keep_high = jax.jit(gprune.select_multires, static_argnums=(2, 3))(jnp.asarray(low), jnp.asarray(high),
                                                                              k_low, k_high)
    ref_low, ref_high = np_gprune.select_multires(low, high, 0.3)
    np.testing.assert_array_equal(np.asarray(keep_low), ref_low)
    np.testing.assert_array_equal(np.asarray(keep_high), ref_high)


def test_multires_budget_traced():
    got = jax.jit(gprune.multires_budget)(jnp.float32(0.3), jnp.int32(576), jnp.int32(2304))
    assert (int(got[0]), int(got[1])) == (172, 691)


def test_op_by_op_equals_jit():
    x = jnp.asarray(case(12, n=14, d=8))
    with jax.disable_jit():
        eager = gprune.select(x, 6)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jax.jit(gprune.select, static_argnums=1)(x, 6)))


def test_jit_equals_eager_and_padding_and_vmap():
    rng = np.random.default_rng(9)
    cap, ks, xs, valids, refs = 48, [5, 17, 0], [], [], []
    for b, n in enumerate([40, 31, 48]):
        x = case(30 + b, n=n)
        valid = random_valid(rng, n, cap)
        xs.append(pad_rows(x, valid, rng)), valids.append(valid)
        refs.append(np_gprune.select(x, ks[b]))
    batched = np.asarray(jax.vmap(_jit_select)(jnp.asarray(np.stack(xs)), jnp.asarray(ks, jnp.int32),
                                               jnp.asarray(np.stack(valids))))
    for b in range(3):
        eager = np.asarray(gprune.select(jnp.asarray(xs[b]), ks[b], valid=jnp.asarray(valids[b])))
        np.testing.assert_array_equal(batched[b], eager)
        assert not (eager & ~valids[b]).any()
        np.testing.assert_array_equal(eager[valids[b]], refs[b])


@given(st.integers(0, 2**31 - 1), st.integers(0, 24), st.integers(0, 30))
def test_properties(seed, n_valid, k):
    rng = np.random.default_rng(seed)
    x = clustered(rng, 24, 8, centers(rng, 3, 8))
    valid = rng.permutation(np.arange(24) < n_valid)
    keep = np.asarray(_jit_select(jnp.asarray(x), jnp.int32(k), jnp.asarray(valid)))
    assert keep.sum() == min(k, n_valid) and not (keep & ~valid).any()
    perm = rng.permutation(24)
    keep_perm = np.asarray(_jit_select(jnp.asarray(x[perm]), jnp.int32(k), jnp.asarray(valid[perm])))
    np.testing.assert_array_equal(keep_perm, keep[perm])
    np.testing.assert_array_equal(np.asarray(_jit_select(jnp.asarray(x), jnp.int32(k), jnp.asarray(valid))), keep)


def test_degenerate_inputs():
    x = case(4)
    x[:3] = 0  # zero-norm tokens
    s = np.asarray(_jit_scores(jnp.asarray(x), jnp.ones(40, bool)))
    assert np.isfinite(s).all() and (s[:3] == 0).all()
    assert not np.asarray(_jit_select(jnp.asarray(x), jnp.int32(5), jnp.zeros(40, bool))).any()
    assert np.asarray(_jit_select(jnp.asarray(x), jnp.int32(99), jnp.ones(40, bool))).all()


def test_bad_inputs():
    x = jnp.asarray(case(5))
    with pytest.raises(ValueError, match=r"gprune.select: `x` contains 1 non-finite"):
        gprune.select(x.at[2, 2].set(jnp.nan), 3)
    with pytest.raises(ValueError, match="`x` must have rank 2"):
        gprune.select(x[0], 3)
    with pytest.raises(ValueError, match="`x` must have a floating dtype"):
        gprune.select(x.astype(jnp.int32), 3)
    with pytest.raises(ValueError, match="`k` must be >= 0"):
        gprune.select(x, -2)
    with pytest.raises(ValueError, match="`steps` must be a static int >= 0"):
        gprune.select(x, 2, steps=-1)
    with pytest.raises(ValueError, match="gprune.select_multires: `k_high` must be >= 0"):
        gprune.select_multires(x, x, 2, -1)
    with pytest.raises(ValueError, match="gprune.select_multires: `high_valid` must have length 40"):
        gprune.select_multires(x, x, 2, 2, high_valid=jnp.ones(3, bool))
    # NaN inside jit: not checked, counts stay exact
    keep = _jit_select(x.at[2, 2].set(jnp.nan), jnp.int32(6), jnp.ones(40, bool))
    assert int(np.sum(keep)) == 6


def test_empty_input():
    assert gprune.select(jnp.zeros((0, 8)), 3).shape == (0,)
