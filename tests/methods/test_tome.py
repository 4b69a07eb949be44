"""ToMe merge vs the NumPy reference, plus jit/vmap/padding/property/bad-input checks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jax_pruning.methods import tome
from tests.reference.np_tome import tome_merge


def _features(seed, n, d):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _assert_matches_reference(out, ref):
    merged, size, index, slot_valid = (np.asarray(a) for a in out)
    ref_merged, ref_size, ref_index, ref_valid = ref
    np.testing.assert_array_equal(slot_valid, ref_valid)
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_array_equal(size, ref_size)
    np.testing.assert_allclose(merged, ref_merged, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n, k, d", [(2, 1, 3), (9, 4, 5), (16, 5, 8), (33, 3, 6), (40, 39, 4), (12, 12, 3)])
@pytest.mark.parametrize("padded", [False, True])
def test_matches_reference(n, k, d, padded):
    x = _features(n * 100 + k, n, d)
    valid = None
    if padded:
        valid = np.random.default_rng(n).random(n) < 0.7
        valid[n // 2] = True
    _assert_matches_reference(tome.merge(x, k, valid=valid), tome_merge(x, k, valid))


def test_ties_go_to_lower_index_and_zero_tokens_are_safe():
    # Duplicated tokens make exact ties in the best-match scores; a zero token has cosine 0.
    base = _features(7, 4, 3)
    x = np.concatenate([base, base, np.zeros((2, 3), np.float32), base[::-1]])
    for k in (1, 3, 5, 9):
        _assert_matches_reference(tome.merge(x, k), tome_merge(x, k))


def test_identity_when_k_equals_n():
    x = _features(1, 6, 4)
    merged, size, index, slot_valid = tome.merge(x, 6)
    np.testing.assert_array_equal(merged, x)
    np.testing.assert_array_equal(size, np.ones(6))
    np.testing.assert_array_equal(index, np.arange(6))
    assert bool(slot_valid.all())


def test_schedule_is_static_and_halves():
    assert tome.schedule(2880, 288) == [2880, 1440, 720, 360, 288]
    assert tome.schedule(5, 1) == [5, 2, 1]
    assert tome.schedule(7, 7) == [7]


def test_jit_equals_eager():
    x = _features(3, 20, 6)
    valid = np.arange(20) % 5 != 2
    eager = tome.merge(x, 6, valid=valid)
    jitted = jax.jit(functools.partial(tome.merge, k=6))(jnp.asarray(x), valid=jnp.asarray(valid))
    for a, b in zip(eager, jitted):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_vmap_equals_per_sample_loop():
    n, k, d, batch = 14, 4, 5, 4
    xs = np.stack([_features(s, n, d) for s in range(batch)])
    valid = np.random.default_rng(0).random((batch, n)) < 0.6
    valid[:, 0] = True
    valid[1] = True
    valid[2, 1:] = False  # a single real token: fewer than k survive
    batched = jax.vmap(lambda x, v: tome.merge(x, k, valid=v))(jnp.asarray(xs), jnp.asarray(valid))
    for b in range(batch):
        single = tome.merge(xs[b], k, valid=valid[b])
        for a, s in zip(batched, single):
            np.testing.assert_array_equal(np.asarray(a)[b], np.asarray(s))
    assert int(np.asarray(batched[3])[2].sum()) == 1


def test_padded_equals_unpadded():
    n_real, capacity, k, d = 11, 24, 4, 6
    x_real = _features(5, n_real, d)
    slots = np.sort(np.random.default_rng(1).choice(capacity, n_real, replace=False))
    x_pad = np.full((capacity, d), 123.0, np.float32)  # garbage in padding must not matter
    x_pad[slots] = x_real
    valid = np.zeros(capacity, bool)
    valid[slots] = True
    merged, size, index, slot_valid = tome.merge(x_pad, k, valid=valid)
    ref_merged, ref_size, ref_index, ref_valid = tome.merge(x_real, k)
    np.testing.assert_array_equal(slot_valid, ref_valid)
    np.testing.assert_array_equal(size, ref_size)
    np.testing.assert_array_equal(index, slots[np.asarray(ref_index)])
    np.testing.assert_allclose(merged, ref_merged, atol=1e-6)


def test_all_invalid_under_jit_gives_empty_slots():
    x = jnp.asarray(_features(2, 8, 3))
    out = jax.jit(lambda x, v: tome.merge(x, 3, valid=v))(x, jnp.zeros(8, bool))
    merged, size, index, slot_valid = (np.asarray(a) for a in out)
    assert not slot_valid.any() and not size.any() and not index.any()
    assert np.all(merged == 0)


# Few distinct (n, k) so that jit compiles stay few; the masks vary the real token count.
@given(
    n=st.sampled_from([2, 13]),
    k_frac=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_properties(n, k_frac, seed):
    k, d = 1 + int(k_frac * (n - 1)), 3
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    valid = rng.random(n) < 0.75
    valid[rng.integers(n)] = True
    out = tome.merge(x, k, valid=valid)
    merged, size, index, slot_valid = (np.asarray(a) for a in out)
    n_valid = int(valid.sum())
    kept = min(k, n_valid)
    assert merged.shape == (k, d) and size.shape == index.shape == slot_valid.shape == (k,)
    assert index.dtype == np.int32
    np.testing.assert_array_equal(slot_valid, np.arange(k) < kept)  # counts; filled first
    assert np.all(np.diff(index[:kept]) > 0)  # original order
    assert valid[index[:kept]].all()  # only real tokens represent slots
    assert int(size.sum()) == n_valid and np.all(size[:kept] >= 1)  # every token lands somewhere
    # Size-weighted averages conserve the feature sum.
    np.testing.assert_allclose((merged * size[:, None]).sum(0), x[valid].sum(0), atol=1e-4)
    again = tome.merge(x, k, valid=valid)
    for a, b in zip(out, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # deterministic
    _assert_matches_reference(out, tome_merge(x, k, valid))


@pytest.mark.parametrize("k", [0, -1, 9, 2.0, True, jnp.int32(2)])
def test_bad_k(k):
    with pytest.raises(ValueError, match="tome.merge: `k`"):
        tome.merge(_features(0, 8, 3), k)


def test_bad_inputs():
    x = _features(0, 8, 3)
    with pytest.raises(ValueError, match="no True entry"):
        tome.merge(x, 2, valid=np.zeros(8, bool))
    for bad in (np.nan, np.inf):
        y = x.copy()
        y[3, 1] = bad
        with pytest.raises(ValueError, match=r"`x` contains 1 non-finite value\(s\).*\[3, 1\]"):
            tome.merge(y, 2)
    with pytest.raises(ValueError, match="`x` must have rank 2"):
        tome.merge(x[0], 1)
    with pytest.raises(ValueError, match="`valid` must have length 8"):
        tome.merge(x, 2, valid=np.ones(7, bool))
    with pytest.raises(ValueError, match="`valid` must have a bool dtype"):
        tome.merge(x, 2, valid=np.ones(8, np.int32))
