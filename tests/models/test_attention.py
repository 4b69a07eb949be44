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


@pytest.mark.parametrize("length,block", [(37, 16), (48, 16), (9, 4)])
def test_causal_key_skipping_equals_the_masked_form(length, block):
    """causal=True reads only keys up to each block's last row; with a causal (+ padding) mask and a bias
    the result is the fully masked attention's."""
    rng = np.random.default_rng(length)
    q = jnp.asarray(rng.normal(size=(2, length, 8, 16)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(2, length, 2, 16)), jnp.float32) for _ in range(2))
    valid = jnp.asarray(np.arange(length)[None] >= np.array([[0], [5]]))  # row 1 left padded
    mask = (jnp.tril(jnp.ones((length, length), bool))[None] & valid[:, None, :])[:, None]
    mask = mask | jnp.eye(length, dtype=bool)[None, None]  # padded queries see themselves: no empty rows
    bias = jnp.asarray(rng.normal(size=(2, 1, length, length)), jnp.float32)
    for b in (None, bias):
        want = jax.nn.dot_product_attention(q, k, v, mask=mask, bias=b, scale=0.25)
        got = _blocked(q, k, v, mask, b, 0.25, block, causal=True)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_text_model_is_unchanged_by_the_blocked_causal_path(monkeypatch):
    """The decoder passes causal=True for its prefill: logits with 8-query blocks == the fused form."""
    import models.attention
    from models.config import TextConfig
    from models.decoder import TextModel

    config = TextConfig(vocab_size=50, hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    from flax import nnx

    model = TextModel(config, rngs=nnx.Rngs(0))
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 50, (2, 45)))
    mask = jnp.asarray(np.arange(45)[None] >= np.array([[0], [7]]))
    with jax.disable_jit():  # QUERY_BLOCK is read at trace time: no cached trace may be reused
        monkeypatch.setattr(models.attention, "QUERY_BLOCK", 1 << 30)
        want = model(ids, attention_mask=mask)
        monkeypatch.setattr(models.attention, "QUERY_BLOCK", 8)
        got = model(ids, attention_mask=mask)
    np.testing.assert_allclose(np.asarray(got)[mask], np.asarray(want)[mask], atol=1e-4)
