"""Query-blocked CPU attention == jax.nn.dot_product_attention (masks, bias, GQA, ragged blocks)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.attention import _blocked, attention


@pytest.mark.parametrize("length,keys,block", [(37, 37, 16), (16, 40, 16), (5, 5, 8)])
def test_blocked_equals_fused_reference(length, keys, block):
    rng = np.random.default_rng(length)
    q = jnp.asarray(rng.normal(size=(2, length, 8, 16)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(2, keys, 2, 16)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(2, keys, 2, 16)), jnp.float32)
    mask = jnp.asarray(rng.random((2, 1, length, keys)) < 0.7)
    mask = mask.at[:, :, :, 0].set(True)
    bias = jnp.asarray(rng.normal(size=(2, 1, length, keys)), jnp.float32)
    for b in (None, bias):
        unmasked = _blocked(q, k, v, None, b, 0.25, block)
        ref = jax.nn.dot_product_attention(q, k, v, bias=b, scale=0.25)
        np.testing.assert_allclose(np.asarray(unmasked), np.asarray(ref), atol=1e-5)
        want = jax.nn.dot_product_attention(q, k, v, mask=mask, bias=b, scale=0.25)
        got = _blocked(q, k, v, mask, b, 0.25, block)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_long_prompts_take_the_blocked_path_on_cpu():
    q = jnp.ones((1, 300, 4, 8))
    k = v = jnp.ones((1, 300, 2, 8))
    mask = jnp.tril(jnp.ones((300, 300), bool))[None, None]
    lowered = jax.jit(lambda q, k, v: attention(q, k, v, mask=mask, scale=1.0)).lower(q, k, v).as_text()
    assert ("while" in lowered) == (jax.default_backend() == "cpu")  # lax.map over query blocks


@pytest.mark.parametrize("block", [16, 1000])
def test_segments_equal_a_block_diagonal_mask(block):
    rng = np.random.default_rng(3)
    q, k, v = (jnp.asarray(rng.normal(size=(1, 50, 4, 8)), jnp.float32) for _ in range(3))
    segments = jnp.asarray(np.repeat([0, 1, 2, 3], [10, 17, 20, 3])[None])
    mask = (segments[:, :, None] == segments[:, None, :])[:, None]
    want = jax.nn.dot_product_attention(q, k, v, mask=mask, scale=0.3)
    got = _blocked(q, k, v, None, None, 0.3, block, segments)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
    np.testing.assert_allclose(np.asarray(attention(q, k, v, segment_ids=segments, scale=0.3)), np.asarray(want),
                               atol=1e-5)
