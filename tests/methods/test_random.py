"""Random baseline: exact counts, validity, reproducibility, uniformity, jit/vmap."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jax_pruning.methods import random


def _reference(key, k, valid):
    """The k valid positions with the highest permutation priority (NumPy)."""
    priority = np.asarray(jax.random.permutation(key, len(valid)))
    order = [i for i in np.argsort(-priority, kind="stable") if valid[i]]
    keep = np.zeros(len(valid), bool)
    keep[order[:k]] = True
    return keep


@given(n=st.sampled_from([1, 6, 17]), k=st.integers(0, 20), seed=st.integers(0, 2**31 - 1),
       mask_seed=st.integers(0, 2**16))
def test_counts_validity_determinism(n, k, seed, mask_seed):
    valid = np.random.default_rng(mask_seed).random(n) < 0.6
    keep = np.asarray(random.select(jax.random.key(seed), k, jnp.asarray(valid)))
    assert keep.sum() == min(k, valid.sum())
    assert not (keep & ~valid).any()
    np.testing.assert_array_equal(keep, np.asarray(random.select(jax.random.key(seed), k, valid)))
    np.testing.assert_array_equal(keep, _reference(jax.random.key(seed), k, valid))
    np.testing.assert_array_equal(keep, np.asarray(random.select(seed, k, valid)))  # int seed


def test_different_keys_differ():
    valid = jnp.ones(100, bool)
    masks = {tuple(np.flatnonzero(random.select(jax.random.key(s), 10, valid))) for s in range(5)}
    assert len(masks) == 5


def test_uniform_over_subsets():
    # 6 valid among 8 tokens, k = 2: each of the 15 pairs should appear ~1/15 of the time.
    valid = jnp.asarray([1, 1, 0, 1, 1, 1, 0, 1], bool)
    keys = jax.random.split(jax.random.key(42), 6000)
    masks = np.asarray(jax.vmap(lambda key: random.select(key, 2, valid))(keys))
    assert (masks.sum(1) == 2).all() and not masks[:, ~np.asarray(valid)].any()
    counts = {pair: 0 for pair in itertools.combinations(np.flatnonzero(valid), 2)}
    for row in masks:
        counts[tuple(np.flatnonzero(row))] += 1
    expected = len(keys) / len(counts)
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 40.0, (chi2, counts)  # 14 degrees of freedom: p(chi2 > 40) < 1e-3


def test_jit_and_vmap_with_traced_budget():
    valid = np.random.default_rng(0).random((3, 12)) < 0.7
    keys = jax.random.split(jax.random.key(1), 3)
    budgets = jnp.asarray([0, 3, 20], jnp.int32)
    batched = jax.jit(jax.vmap(random.select))(keys, budgets, jnp.asarray(valid))
    for b in range(3):
        single = random.select(keys[b], int(budgets[b]), valid[b])
        np.testing.assert_array_equal(np.asarray(batched[b]), np.asarray(single))
        assert int(single.sum()) == min(int(budgets[b]), valid[b].sum())


@pytest.mark.parametrize("k", [-1, 2.5, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="random.select: `k`"):
        random.select(jax.random.key(0), k, jnp.ones(4, bool))


def test_bad_valid_and_seed():
    with pytest.raises(ValueError, match="`valid` must have a bool dtype"):
        random.select(jax.random.key(0), 2, jnp.ones(4, jnp.int32))
    with pytest.raises(ValueError, match="`valid` must have rank 1"):
        random.select(jax.random.key(0), 2, jnp.ones((2, 2), bool))
    with pytest.raises(ValueError, match="seed must be >= 0"):
        random.select(-3, 2, jnp.ones(4, bool))
