"""Eager validation helpers raise clear ValueErrors; tracers skip value checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_pruning.ops import check_array, check_count, check_finite, check_mask, check_real, is_traced


def test_check_array_rank_and_dtype():
    check_array(jnp.ones((2, 3)), "x", "f", rank=2)
    with pytest.raises(ValueError, match=r"f: `x` must have rank 2, got shape \(3,\)"):
        check_array(jnp.ones(3), "x", "f", rank=2)
    with pytest.raises(ValueError, match="`x` must have a floating dtype, got int32"):
        check_array(jnp.ones((2, 3), jnp.int32), "x", "f", rank=2)
    with pytest.raises(ValueError, match="`x` must be an array, got list"):
        check_array([[1.0]], "x", "f", rank=2)


def test_check_finite():
    check_finite(np.ones((2, 2), np.float32), "x", "f")
    bad = np.ones((2, 2), np.float32)
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"f: `x` contains 1 non-finite value\(s\) \(NaN/inf\), first at index \[1, 0\]"):
        check_finite(bad, "x", "f")
    with pytest.raises(ValueError, match="non-finite"):
        check_finite(jnp.asarray([1.0, jnp.inf], jnp.bfloat16), "x", "f")
    # inside jit the value check is skipped (no error, no host sync)
    jax.jit(lambda x: (check_finite(x, "x", "f"), x)[1])(jnp.asarray(bad))


def test_check_mask_and_count():
    check_mask(None, "valid", "f", 3)
    with pytest.raises(ValueError, match="`valid` must have length 3, got 2"):
        check_mask(jnp.ones(2, bool), "valid", "f", 3)
    with pytest.raises(ValueError, match="`valid` must have a bool dtype"):
        check_mask(jnp.ones(3), "valid", "f", 3)
    check_count(0, "k", "f")
    check_count(np.int64(4), "k", "f")
    check_count(jnp.int32(4), "k", "f")
    for bad, msg in [(-1, "must be >= 0, got -1"), (2.5, "must be an integer count"), (True, "got bool"),
                     (jnp.asarray([1, 2]), "integer scalar array"), (jnp.int32(-3), "must be >= 0, got -3")]:
        with pytest.raises(ValueError, match=msg):
            check_count(bad, "k", "f")
    jax.jit(lambda k: (check_count(k, "k", "f"), k)[1])(jnp.int32(-1))  # traced: dtype/rank only


def test_check_real_and_is_traced():
    check_real(0.5, "threshold", "f", low=-1, high=1)
    with pytest.raises(ValueError, match="`temperature` must be > 0, got 0"):
        check_real(0, "temperature", "f", low=0, low_open=True)
    with pytest.raises(ValueError, match="must be finite"):
        check_real(float("nan"), "alpha", "f")
    assert not is_traced(jnp.ones(2))
    assert jax.jit(lambda x: jnp.asarray(is_traced(x)))(jnp.ones(2))
