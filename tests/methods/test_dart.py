"""DART selection vs its NumPy reference (and the upstream quota rule), padding, ties, jit/vmap, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_pruning.methods import dart
from tests.methods.feature_data import centers, clustered, pad_rows, random_valid
from tests.reference import np_dart

PRE, POST, KEY_WIDTH = 35, 40, 128  # LLaVA-1.5: 35 system-prompt tokens before the image


def case(seed, n_visual, d, pre=PRE, post=POST):
    """Clustered hidden states and keys for pre + n_visual + post tokens; visual mask."""
    rng = np.random.default_rng(seed)
    length = pre + n_visual + post
    hidden = clustered(rng, length, d, centers(rng, 12, d))
    keys = clustered(rng, length, KEY_WIDTH, centers(rng, 6, KEY_WIDTH))
    visual = np.zeros(length, bool)
    visual[pre:pre + n_visual] = True
    return hidden, keys, visual


def run(hidden, keys, visual, k, **kw):
    return np.asarray(dart.select(jnp.asarray(hidden), jnp.asarray(keys), jnp.asarray(visual), k, **kw))


def top_l1(keys, candidates, count):
    l1 = np.abs(keys.astype(np.float64)).sum(1)
    return sorted(np.flatnonzero(candidates), key=lambda i: (-l1[i], i))[:count]


@pytest.mark.parametrize("n_visual", [576, 2880])
@pytest.mark.parametrize("d", [256, 1024])
def test_matches_reference(n_visual, d):
    hidden, keys, visual = case(n_visual + d, n_visual, d)
    pivots = top_l1(keys, visual, 4)
    for k in [0, 1, 4, n_visual // 10, n_visual // 4, n_visual // 2, n_visual]:
        keep = run(hidden, keys, visual, k)
        np.testing.assert_array_equal(keep, np_dart.select(hidden, keys, visual, k), err_msg=f"k={k}")
        assert keep.sum() == k and not (keep & ~visual).any()
        assert keep[pivots[:k]].all()  # image pivots are kept first


@pytest.mark.parametrize("n_visual, m", [(576, 128), (576, 100), (2880, 640)])
def test_upstream_quota_rule(n_visual, m):
    """select(k = P_img + P * (M // P)) is the upstream selection for max_num_trunction = M."""
    hidden, keys, visual = case(m, n_visual, 256)
    official = np_dart.official(hidden, keys, PRE, n_visual, max_num_trunction=m)
    assert len(official) == 4 + 8 * (m // 8)  # 132 for the default M = 128
    keep = run(hidden, keys, visual, len(official))
    np.testing.assert_array_equal(np.flatnonzero(keep), official)


def test_pivot_order_matters_and_is_ascending(monkeypatch):
    """Visiting the pivots in descending position changes the kept set; ours is the ascending one."""
    hidden, keys, visual = case(5, 576, 256)
    ascending = np_dart.select(hidden, keys, visual, 144)
    claim = np_dart._claim
    monkeypatch.setattr(np_dart, "_claim", lambda unit, piv, q, free: claim(unit, piv[::-1], q[::-1], free))
    descending = np_dart.select(hidden, keys, visual, 144)
    keep = run(hidden, keys, visual, 144)
    np.testing.assert_array_equal(keep, ascending)
    assert (keep != descending).any()


def test_padding_garbage_is_ignored():
    hidden, keys, visual = case(7, 516, 256)
    rng = np.random.default_rng(1)
    valid = random_valid(rng, hidden.shape[0], hidden.shape[0] + 60)  # 651 slots, like the other cases
    big_visual = np.zeros(valid.size, bool)
    big_visual[valid] = visual
    big_visual[~valid] = rng.random((~valid).sum()) < 0.5  # padding flagged visual must not count
    p_hidden, p_keys = pad_rows(hidden, valid, rng), pad_rows(keys, valid, rng)  # NaN junk
    for k in [1, 57, 288, 700]:
        keep = run(p_hidden, p_keys, big_visual, k, valid=valid)
        np.testing.assert_array_equal(keep[valid], np_dart.select(hidden, keys, visual, k))
        assert not keep[~valid].any()
        np.testing.assert_array_equal(keep, np_dart.select(p_hidden, p_keys, big_visual, k, valid=valid))
    junk = pad_rows(hidden, valid, rng, junk=None)  # finite junk, huge values
    np.testing.assert_array_equal(run(junk, pad_rows(keys, valid, rng, junk=None), big_visual, 288, valid=valid),
                                  run(p_hidden, p_keys, big_visual, 288, valid=valid))


def test_duplicates_tie_to_lower_index():
    hidden, keys, visual = case(11, 576, 256)
    source = np.arange(PRE, PRE + 288)
    copy = source + 288  # the second half of the image repeats the first
    hidden[copy], keys[copy] = hidden[source], keys[source]
    for k in [4, 37, 100, 200]:
        keep = run(hidden, keys, visual, k)
        np.testing.assert_array_equal(keep, np_dart.select(hidden, keys, visual, k), err_msg=f"k={k}")
        assert not (keep[copy] & ~keep[source]).any()  # a copy is never kept without its original
        assert keep.sum() == k
    # all-equal hidden states: every similarity ties, so the lowest free indices win
    flat = np.ones_like(hidden)
    keep = run(flat, np.ones_like(keys), visual, 20)
    np.testing.assert_array_equal(np.flatnonzero(keep), np.arange(PRE, PRE + 20))


def test_text_before_image_is_never_a_pivot():
    hidden, keys, visual = case(13, 576, 256)
    loud = keys.copy()
    loud[3] *= 1000.0  # a system-prompt token with a huge key
    for k in [57, 200]:
        np.testing.assert_array_equal(run(hidden, loud, visual, k), run(hidden, keys, visual, k))
    louder_after = keys.copy()
    louder_after[-5] *= 1000.0  # a query token with a huge key is a text pivot: the result changes
    changed = [(run(hidden, louder_after, visual, k) != run(hidden, keys, visual, k)).any() for k in [57, 200]]
    assert any(changed)


def test_no_text_pivots():
    """No text after the image (or text_pivots=0): the budget is split over the image pivots only."""
    hidden, keys, visual = case(17, 576, 256, pre=PRE + POST, post=0)  # all text before the image
    for k in [1, 10, 144]:
        keep = run(hidden, keys, visual, k)
        np.testing.assert_array_equal(keep, np_dart.select(hidden, keys, visual, k))
        np.testing.assert_array_equal(keep, run(hidden, keys, visual, k, text_pivots=0))
        assert keep.sum() == k
    hidden, keys, visual = case(19, 576, 256)
    keep = run(hidden, keys, visual, 144, text_pivots=0)
    np.testing.assert_array_equal(keep, np_dart.select(hidden, keys, visual, 144, text_pivots=0))
    assert (keep != run(hidden, keys, visual, 144)).any()
    only_visual = np.ones_like(visual)  # no text at all; other pivot counts
    keep = run(hidden, keys, only_visual, 99, image_pivots=2, text_pivots=3)
    np.testing.assert_array_equal(keep, np_dart.select(hidden, keys, only_visual, 99, image_pivots=2, text_pivots=3))
    assert keep[top_l1(keys, only_visual, 2)].all() and keep.sum() == 99


def test_few_visual_tokens_and_large_k():
    hidden, keys, visual = case(23, 576, 256)
    three = np.zeros_like(visual)
    three[100:103] = True  # fewer visual tokens than image pivots
    for k in [0, 2, 3, 50]:
        keep = run(hidden, keys, three, k)
        np.testing.assert_array_equal(keep, np_dart.select(hidden, keys, three, k))
        assert keep.sum() == min(k, 3) and not (keep & ~three).any()
    np.testing.assert_array_equal(run(hidden, keys, three, 2), np.isin(np.arange(len(three)), top_l1(keys, three, 2)))
    np.testing.assert_array_equal(run(hidden, keys, visual, 10_000), visual)
    assert not run(hidden, keys, np.zeros_like(visual), 5).any()  # no visual token at all


def test_jit_vmap_traced_per_sample_k():
    samples = [case(40 + s, 576, 256) for s in range(3)]
    length = samples[0][0].shape[0]
    valid = np.ones((3, length), bool)
    valid[1, -7:] = False  # right padding in sample 1
    valid[2, :5] = False   # left padding in sample 2
    hidden = np.stack([s[0] for s in samples])
    keys = np.stack([s[1] for s in samples])
    hidden[~valid], keys[~valid] = np.nan, np.inf  # padding garbage
    visual = np.stack([s[2] for s in samples])
    budgets = np.array([1, 144, 600], np.int32)  # 600 > 576 visual tokens: keep them all
    fn = jax.jit(jax.vmap(lambda h, kk, v, k, ok: dart.select(h, kk, v, k, valid=ok)))
    keep = np.asarray(fn(hidden, keys, visual, budgets, valid))
    for b in range(3):
        want = np_dart.select(hidden[b], keys[b], visual[b], budgets[b], valid=valid[b])
        np.testing.assert_array_equal(keep[b], want, err_msg=f"sample {b}")
        np.testing.assert_array_equal(keep[b], run(hidden[b], keys[b], visual[b], int(budgets[b]), valid=valid[b]))
    np.testing.assert_array_equal(keep[2], visual[2] & valid[2])


def _shapes(jaxpr):
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield tuple(getattr(var.aval, "shape", ()))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _shapes(inner)


def test_no_token_by_token_matrix():
    hidden, keys, visual = case(37, 576, 256)
    length = hidden.shape[0]
    jaxpr = jax.make_jaxpr(lambda h, kk, k: dart.select(h, kk, jnp.asarray(visual), k))(hidden, keys, jnp.int32(9))
    shapes = list(_shapes(jaxpr.jaxpr))
    assert any(s == (8, length) for s in shapes)  # the pivots x tokens similarities
    assert not [s for s in shapes if sum(dim >= length for dim in s) >= 2]


def test_bad_inputs():
    hidden, keys, visual = case(3, 576, 256)
    h, kk, v = jnp.asarray(hidden), jnp.asarray(keys), jnp.asarray(visual)
    with pytest.raises(ValueError, match="`hidden` must have rank 2"):
        dart.select(h[0], kk, v, 4)
    with pytest.raises(ValueError, match="`keys` must have 651 rows"):
        dart.select(h, kk[:-1], v, 4)
    with pytest.raises(ValueError, match="`keys` must have a floating dtype"):
        dart.select(h, kk.astype(jnp.int32), v, 4)
    with pytest.raises(ValueError, match="`visual` must have length 651"):
        dart.select(h, kk, v[:-1], 4)
    with pytest.raises(ValueError, match="`valid` must have a bool dtype"):
        dart.select(h, kk, v, 4, valid=jnp.ones(651))
    with pytest.raises(ValueError, match="`k` must be >= 0"):
        dart.select(h, kk, v, -1)
    with pytest.raises(ValueError, match="`k` must be an integer count"):
        dart.select(h, kk, v, 2.5)
    with pytest.raises(ValueError, match="`image_pivots` must be >= 1"):
        dart.select(h, kk, v, 4, image_pivots=0)
    with pytest.raises(ValueError, match="`text_pivots` must be >= 0"):
        dart.select(h, kk, v, 4, text_pivots=-1)
    with pytest.raises(ValueError, match="`text_pivots` must be a Python int"):
        dart.select(h, kk, v, 4, text_pivots=2.0)
    bad = hidden.copy()
    bad[5, 1] = np.inf
    with pytest.raises(ValueError, match="`hidden` contains 1 non-finite"):
        dart.select(jnp.asarray(bad), kk, v, 4)
    bad_keys = keys.copy()
    bad_keys[7, 0] = np.nan
    with pytest.raises(ValueError, match="`keys` contains 1 non-finite"):
        dart.select(h, jnp.asarray(bad_keys), v, 4)
    valid = np.ones(651, bool)
    valid[7] = False  # the same NaN at a padding position is fine
    assert int(dart.select(h, jnp.asarray(bad_keys), v, 4, valid=jnp.asarray(valid)).sum()) == 4
