"""The Qwen ViT's received attention (its stand-in for a [CLS] row) vs a dense NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_pruning.methods import visionzip
from models.qwen_vision.received import received_attention
from tests.reference import np_visionzip

@pytest.mark.parametrize("n, block", [(13, 1), (50, 7), (50, 16), (50, 64)])
def test_received_attention_matches_dense(n, block):
    rng = np.random.default_rng(n * 100 + block)
    heads, head_dim = 3, 8
    q = rng.normal(size=(n, heads, head_dim)).astype(np.float32) * 2
    k = rng.normal(size=(n, heads, head_dim)).astype(np.float32) * 2
    valid = rng.random(n) < 0.7
    valid[0] = True
    q[~valid], k[~valid] = np.nan, np.nan  # junk in padding
    got = np.asarray(received_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(valid), block=block))
    want = np_visionzip.received_attention(q, k, valid)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)  # each valid query row sums to 1
    assert not got[:, ~valid].any()
    full = np.asarray(received_attention(q[valid], k[valid], np.ones(valid.sum(), bool), block=block))
    np.testing.assert_allclose(got[:, valid], full, atol=1e-6)


def test_received_attention_jit_vmap_and_as_cls_row():
    rng = np.random.default_rng(9)
    n, heads, head_dim = 40, 4, 16
    q = rng.normal(size=(2, n, heads, head_dim)).astype(np.float32)
    k = rng.normal(size=(2, n, heads, head_dim)).astype(np.float32)
    valid = np.ones((2, n), bool)
    valid[1, 25:] = False
    fn = jax.jit(jax.vmap(lambda q, k, v: received_attention(q, k, v, block=9)))
    batched = np.asarray(fn(jnp.asarray(q), jnp.asarray(k), jnp.asarray(valid)))
    for b in range(2):
        np.testing.assert_allclose(batched[b], np_visionzip.received_attention(q[b], k[b], valid[b]), atol=1e-6)
    # The stand-in row feeds select like a CLS row.
    hidden = rng.normal(size=(n, 32)).astype(np.float32)
    keys = k[0].mean(axis=1)
    out = visionzip.select_with_targets(batched[0], keys, hidden, 12, 4)
    want = np_visionzip.select(batched[0], keys, hidden, 12, 4)
    np.testing.assert_array_equal(np.asarray(out[0]), want[0])
    np.testing.assert_allclose(np.asarray(out[1]), want[1], atol=1e-5)


