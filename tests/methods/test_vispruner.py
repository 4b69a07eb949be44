"""VisPruner selection vs its NumPy reference: exact-arithmetic and continuous clustered features, ratios,
odd residual sizes, padding, ties, jit/vmap with traced k, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_pruning.methods import vispruner
from jax_pruning.ops.graph import cosine_similarity
from tests.methods.feature_data import centers, clustered, pad_rows, random_valid
from tests.reference import np_vispruner

HEADS = 16  # CLIP ViT-L/14


def sign_clustered(rng, n, d, count=12, flip=0.3):
    """[n, d] float32 +-2^j vectors around `count` random sign patterns.

    Row norms are sqrt(d) * 2^j, a power of two for d = 256 and 1024, so unit
    rows and all cosines (multiples of 1/d) are exact in float32 and float64:
    JAX and the float64 reference see identical similarities, with many exact
    ties, and every comparison of the rounds is reproducible bit for bit.
    """
    signs = rng.choice([-1.0, 1.0], size=(count, d))
    x = signs[rng.integers(0, count, n)] * np.where(rng.random((n, d)) < flip, -1.0, 1.0)
    return (x * 2.0 ** rng.integers(-1, 3, (n, 1))).astype(np.float32)


def quantized_attention(rng, n, heads=HEADS):
    """CLS rows [H, n] on a 2^-20 grid: head means are exact in float32 (and tie often)."""
    return (rng.integers(0, 1 << 11, (heads, n)) * 2.0 ** -20).astype(np.float32)


def run(attention, features, k, ratio=vispruner.IMPORTANT_RATIO, valid=None):
    return np.asarray(vispruner.select(jnp.asarray(attention), jnp.asarray(features), k, ratio,
                                       None if valid is None else jnp.asarray(valid)))


def check(attention, features, k, ratio=vispruner.IMPORTANT_RATIO, valid=None, similarity=None):
    keep = run(attention, features, k, ratio, valid)
    want = np_vispruner.select(attention, features, k, ratio, valid, similarity)
    msg = f"k={k} ratio={ratio}"
    np.testing.assert_array_equal(keep, want, err_msg=msg)
    n_valid = features.shape[0] if valid is None else int(np.sum(valid))
    assert keep.sum() == min(k, n_valid), msg
    # The important part: the int(k * ratio) highest head-mean attentions (lower index on ties).
    mean = attention.astype(np.float64).mean(axis=0)
    real = np.flatnonzero(np.ones(len(keep), bool) if valid is None else valid)
    top = sorted(real, key=lambda i: (-mean[i], i))[:int(min(k, n_valid) * ratio)]
    assert keep[top].all(), msg
    return keep


# k = 7 and 63 leave an odd residual (R = 573, 545 for N = 576) and, for k = 7, fewer than 8 diverse tokens.
@pytest.mark.parametrize("n, d, budgets", [
    (576, 256, [0, 1, 2, 7, 16, 63, 64, 128, 192, 575, 576, 600]),
    (576, 1024, [32, 64, 320]),
    (2880, 256, [160]),
    (2880, 1024, [1440]),
])
def test_matches_reference_exact(n, d, budgets):
    rng = np.random.default_rng(n + d)
    attention, features = quantized_attention(rng, n), sign_clustered(rng, n, d)
    for k in budgets:
        check(attention, features, k)


@pytest.mark.parametrize("n, d, budgets", [(576, 256, [64, 128]), (576, 1024, [32, 192]), (2880, 1024, [640])])
def test_matches_reference_clustered(n, d, budgets):
    """Continuous clustered features (feature_data); the reference is handed the float32 cosine matrix,
    because over hundreds of rounds some boundary between the r-th and (r+1)-th score is closer than
    float32 rounding. The rounds themselves stay independent of the JAX code."""
    rng = np.random.default_rng(n * d)
    features = clustered(rng, n, d, centers(rng, 16, d))
    attention = rng.dirichlet(np.full(n, 0.3), size=HEADS).astype(np.float32)
    similarity = np.asarray(cosine_similarity(jnp.asarray(features), jnp.asarray(features)))
    for k in budgets:
        check(attention, features, k, similarity=similarity)


@pytest.mark.parametrize("neighbours, fallback_rows", [(1, 0), (2, 3)])
def test_neighbour_lists_and_fallback_scans(monkeypatch, neighbours, fallback_rows):
    """Tiny neighbour lists force the full-row scans: (1, 0) scans every A-row whenever one list misses;
    (2, 3) mixes the few-rows scan (late rounds, small A) with the all-rows scan. Same result either way."""
    monkeypatch.setattr(vispruner, "NEIGHBOURS", neighbours)
    monkeypatch.setattr(vispruner, "FALLBACK_ROWS", fallback_rows)
    rng = np.random.default_rng(neighbours)
    n = 200
    attention, features = quantized_attention(rng, n), sign_clustered(rng, n, 256)
    valid = np.arange(n) % 7 != 3
    for k in (5, 40, 120):
        check(attention, features, k, valid=valid)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.75, 1.0, 0.3])
def test_important_ratio(ratio):
    rng = np.random.default_rng(3)
    n = 576
    attention, features = quantized_attention(rng, n), sign_clustered(rng, n, 256)
    for k in (10, 64, 100):
        keep = check(attention, features, k, ratio)
        if ratio == 1.0:  # important only: the plain top-k by attention
            mean = attention.astype(np.float64).mean(axis=0)
            top = sorted(range(n), key=lambda i: (-mean[i], i))[:k]
            np.testing.assert_array_equal(np.flatnonzero(keep), np.sort(top))
    assert vispruner.important_count(64, 0.75) == 48 and vispruner.important_count(10, 0.3) == 3


def test_duplicated_tokens_tie_to_lower_index():
    rng = np.random.default_rng(4)
    base_att, base = quantized_attention(rng, 144), sign_clustered(rng, 144, 256)
    attention = np.concatenate([base_att] * 4, axis=1)  # every token four times
    features = np.concatenate([base] * 4)
    for k in (8, 36, 100, 144, 300):
        check(attention, features, k)  # check(): the important part is the lowest copies on ties


@pytest.mark.parametrize("junk", [np.nan, None])
def test_padding_is_ignored(junk):
    n_real, capacity, d = 300, 576, 256
    rng = np.random.default_rng(5)
    attention, features = quantized_attention(rng, n_real), sign_clustered(rng, n_real, d)
    valid = random_valid(rng, n_real, capacity)
    slots = np.flatnonzero(valid)
    p_att = pad_rows(attention.T, valid, rng, junk).T
    p_features = pad_rows(features, valid, rng, junk)
    for k in (0, 37, 64, 150, 299, 300, 400):
        keep = check(p_att, p_features, k, valid=valid)
        want = np_vispruner.select(attention, features, k)
        np.testing.assert_array_equal(np.flatnonzero(keep), slots[want])


def test_jit_and_vmap_with_traced_k():
    n, d = 300, 256
    rng = np.random.default_rng(6)
    attention = np.stack([quantized_attention(rng, n) for _ in range(3)])
    features = np.stack([sign_clustered(rng, n, d) for _ in range(3)])
    valid = np.stack([random_valid(rng, m, n) for m in (300, 200, 20)])
    ks = np.array([64, 7, 50], np.int32)
    fn = jax.jit(jax.vmap(lambda a, f, k, v: vispruner.select(a, f, k, 0.75, v)))
    batched = np.asarray(fn(jnp.asarray(attention), jnp.asarray(features), jnp.asarray(ks), jnp.asarray(valid)))
    for b in range(3):
        want = np_vispruner.select(attention[b], features[b], int(ks[b]), 0.75, valid[b])
        np.testing.assert_array_equal(batched[b], want)
    assert batched.sum(axis=1).tolist() == [64, 7, 20]
    # One compiled function serves every budget (k is traced, not static).
    for k in (0, 33, 299, 500):
        again = np.asarray(fn(jnp.asarray(attention), jnp.asarray(features), jnp.full(3, k, jnp.int32),
                              jnp.asarray(valid)))
        np.testing.assert_array_equal(again[0], np_vispruner.select(attention[0], features[0], k, 0.75, valid[0]))


def test_zero_features_and_tiny_inputs():
    rng = np.random.default_rng(7)
    attention = quantized_attention(rng, 20)
    features = sign_clustered(rng, 20, 256)
    features[[2, 5, 9, 14]] = 0.0  # cosine 0 with everything
    for k in range(21):
        check(attention, features, k)
    one = run(attention[:, :1], features[:1], 1)
    assert one.tolist() == [True]


def test_bad_inputs():
    rng = np.random.default_rng(8)
    attention, features = quantized_attention(rng, 20), sign_clustered(rng, 20, 256)
    nan_features, nan_att = features.copy(), attention.copy()
    nan_features[3, 1], nan_att[2, 5] = np.nan, np.inf
    bad = [
        (dict(cls_attention=attention[0]), "`cls_attention` must have rank 2"),
        (dict(cls_attention=attention[:, :19]), "`cls_attention` must have 20 columns"),
        (dict(features=features.astype(np.int32)), "`features` must have a floating dtype"),
        (dict(valid=np.ones(21, bool)), "`valid` must have length 20"),
        (dict(valid=np.ones(20, np.int32)), "`valid` must have a bool dtype"),
        (dict(k=-1), "`k` must be >= 0"),
        (dict(k=3.0), "`k` must be an integer count"),
        (dict(important_ratio=1.5), "`important_ratio` must be <= 1"),
        (dict(important_ratio=float("nan")), "`important_ratio` must be finite"),
        (dict(important_ratio="half"), "`important_ratio` must be a real number"),
        (dict(features=nan_features), "`features` contains 1 non-finite"),
        (dict(cls_attention=nan_att), "`cls_attention` contains 1 non-finite"),
    ]
    for kw, message in bad:
        args = {"cls_attention": attention, "features": features, "k": 5, **kw}
        with pytest.raises(ValueError, match="vispruner.select: " + message):
            vispruner.select(**args)
    valid = np.ones(20, bool)
    valid[3] = False
    assert run(attention, nan_features, 5, valid=valid).sum() == 5  # NaN in a padding row is fine
