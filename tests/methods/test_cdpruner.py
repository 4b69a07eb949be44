"""CDPruner against its float64 NumPy reference (real sizes, budgets, padding, options), ties, jit/vmap, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jax_pruning.methods import cdpruner
from tests.methods.feature_data import centers, clustered, pad_rows, random_valid
from tests.reference import np_cdpruner


@functools.lru_cache(maxsize=None)
def jitted(max_k=None, **options):
    """select with traced k and masks (one compilation per shape, max_k and options)."""
    return jax.jit(lambda x, t, k, valid, t_valid: cdpruner.select(
        x, t, k, valid, t_valid if t.ndim == 2 else None, max_k=max_k, **options))


@functools.lru_cache(maxsize=None)
def jitted_order(max_k=None, **options):
    return jax.jit(lambda x, t, k, valid: cdpruner.pick_order(x, t, k, valid, max_k=max_k, **options))


def case(seed, n, d, m=12, clusters=20, shared=0.0):
    """Clustered visual tokens and an instruction whose rows sit near three of the clusters.

    `shared` adds a common direction to every center (cross-cluster cosines ~0.4 at 0.8 instead of ~0):
    the plain DPP's second pick maximises 1 - cos^2 to the first one, which for nearly orthogonal
    clusters separates candidates by less than float32 resolution (official float32 code included).
    """
    rng = np.random.default_rng(seed)
    c = centers(rng, clusters, d)
    c = c + shared * rng.normal(size=(1, d)) / np.sqrt(d)
    return clustered(rng, n, d, c), clustered(rng, m, d, c[:3], spread=2.0)


def reference_sets(x, t, ks, valid=None, t_valid=None, **options):
    """Reference keep masks for several budgets from one run (greedy picks, then the fill, do not depend on k)."""
    valid = np.ones(len(x), bool) if valid is None else valid
    n_valid = int(valid.sum())
    greedy, fill = np_cdpruner.pick_order(x, t, max([k for k in ks if k < n_valid], default=0), valid, t_valid,
                                          **options)
    out = []
    for k in ks:
        keep = valid.copy()
        if k < n_valid:
            keep[:] = False
            keep[(greedy + fill)[:k]] = True
        out.append(keep)
    return out


def call(fn, x, t, k, valid=None, t_valid=None):
    valid = np.ones(len(x), bool) if valid is None else valid
    t_valid = np.ones(len(t), bool) if t_valid is None and np.ndim(t) == 2 else t_valid
    t_valid = jnp.zeros((0,), bool) if t_valid is None else jnp.asarray(t_valid)
    return np.asarray(fn(jnp.asarray(x), jnp.asarray(t), jnp.int32(k), jnp.asarray(valid), t_valid))


# N = 2880, d = 1024 stops at 25% (max_k = 720): 50% runs 1440 float32 Cholesky updates against a
# [1440, 2880] factor (slow on CPU) and the float64 reference needs ~10 s; N=2880, d=256 covers 50%.
SIZES = [(576, 256, [1, 57, 144, 288, 576]), (576, 1024, [1, 57, 144, 288, 576]),
         (2880, 256, [1, 288, 720, 1440, 2880]), (2880, 1024, [1, 288, 720, 2880])]


@pytest.mark.parametrize("n,d,ks", SIZES, ids=[f"{n}-{d}" for n, d, _ in SIZES])
def test_matches_reference(n, d, ks):
    x, t = case(n + d, n, d)
    fn = jitted(max_k=max(k for k in ks if k < n))
    for k, ref in zip(ks, reference_sets(x, t, ks)):
        keep = call(fn, x, t, k)
        assert keep.sum() == k
        np.testing.assert_array_equal(keep, ref, err_msg=f"k={k}")
    if d == 256:  # rank 256 < budget: the greedy stops when the kernel is exhausted, the fill takes over
        greedy, fill = np_cdpruner.pick_order(x, t, ks[-2])
        assert len(greedy) == 256 and len(fill) == ks[-2] - 256


def test_pick_order_and_relevance_match_reference():
    x, t = case(5, 576, 256)
    order = np.asarray(jitted_order(max_k=144)(jnp.asarray(x), jnp.asarray(t), jnp.int32(144), jnp.ones(576, bool)))
    greedy, fill = np_cdpruner.pick_order(x, t, 144)
    np.testing.assert_array_equal(order, greedy)
    assert fill == []
    r_ref = np_cdpruner.relevance(x, t)
    assert order[0] == np.argmax(r_ref)  # first pick: the largest L_ii = r_i^2
    r = np.asarray(cdpruner.relevance(jnp.asarray(x), cdpruner.instruction_embedding(jnp.asarray(t)),
                                      jnp.ones(576, bool)))
    np.testing.assert_allclose(r, r_ref, rtol=1e-5, atol=1e-6)
    assert 0 < r.min() < 1e-4 and abs(r.max() - 1) < 1e-4  # min-max normalised, +1e-6 offset


@pytest.mark.parametrize("junk", [np.nan, 1e30, None], ids=["nan", "huge", "noise"])
def test_padding(junk):
    """Real tokens and instruction rows among junk rows: same kept set as the reference on the real rows."""
    rng = np.random.default_rng(11)
    x, t = case(12, 500, 256, m=9)
    valid = random_valid(rng, 500, 576)
    t_valid = random_valid(rng, 9, 16)
    padded, t_padded = pad_rows(x, valid, rng, junk=junk), pad_rows(t, t_valid, rng, junk=junk)
    ks = [1, 50, 125, 250, 500, 576]
    fn = jitted(max_k=250)
    for k, ref in zip(ks, reference_sets(x, t, ks)):
        keep = call(fn, padded, t_padded, k, valid, t_valid)
        assert keep.sum() == min(k, 500) and not (keep & ~valid).any()
        np.testing.assert_array_equal(keep[valid], ref, err_msg=f"k={k}")
    eager = np.asarray(cdpruner.select(jnp.asarray(padded), jnp.asarray(t_padded), 50, jnp.asarray(valid),
                                       jnp.asarray(t_valid)))  # eager: junk rows are not checked
    np.testing.assert_array_equal(eager[valid], reference_sets(x, t, [50])[0])


SMALL = dict(n=300, d=64, m=12, shared=0.8)  # the small tests share this shape and max_k (fewer compilations)
MAX_K = 150
OPTIONS = [dict(use_relevance=False), dict(theta=0.5), dict(negate_relevance=False), dict(epsilon=0.1)]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_options_match_reference(options):
    x, t = case(21, **SMALL)
    ks = [1, 30, 75, 150]
    fn = jitted(max_k=MAX_K, **options)
    for k, ref in zip(ks, reference_sets(x, t, ks, **options)):
        np.testing.assert_array_equal(call(fn, x, t, k), ref, err_msg=f"k={k}")
    default = jitted(max_k=MAX_K)
    if "epsilon" in options:  # a larger epsilon ends the greedy earlier (rank 64 here), the fill takes over
        assert len(np_cdpruner.pick_order(x, t, 150, **options)[0]) < len(np_cdpruner.pick_order(x, t, 150)[0])
        assert (call(fn, x, t, 75) != call(default, x, t, 75)).any()
    else:  # every other switch changes the kept set below the rank already
        assert (call(fn, x, t, 30) != call(default, x, t, 30)).any()


def test_instruction_forms():
    """[D] is used as is; [M, D] is averaged over the valid rows; plain DPP needs no instruction."""
    x, t = case(31, **SMALL)
    fn = jitted(max_k=MAX_K)
    np.testing.assert_array_equal(call(fn, x, t, 40), reference_sets(x, t, [40])[0])
    t_valid = np.arange(12) < 5  # averaging only the valid rows = the instruction of those rows alone
    np.testing.assert_array_equal(call(fn, x, t, 40, t_valid=t_valid), reference_sets(x, t[:5], [40])[0])
    for vector in (t.mean(axis=0), t[3]):
        np.testing.assert_array_equal(call(fn, x, vector, 40), reference_sets(x, vector, [40])[0])
    plain = call(jitted(max_k=MAX_K, use_relevance=False), x, t, 40)  # instruction ignored
    np.testing.assert_array_equal(plain, reference_sets(x, None, [40], use_relevance=False)[0])
    np.testing.assert_array_equal(np.asarray(cdpruner.select(jnp.asarray(x), None, 40, use_relevance=False,
                                                             max_k=MAX_K)), plain)
    # a zero instruction gives no relevance contrast: r = 1, the plain DPP
    np.testing.assert_array_equal(call(fn, x, np.zeros(64, np.float32), 40), plain)


def test_ties_and_exhaustion():
    # one-hot rows: every cosine is exactly 0 or 1; instruction on e0..e3 -> with the official sign the
    # tokens on e4..e7 get r = 1 + 2e-6, those on e0..e3 get r = 2e-6 (equal r within each group)
    cols = [4, 5, 4, 0, 6, 1, 5, 0]
    scale = [1, 1, 3, 1, 1, 2, 1, 1]
    x = np.zeros((8, 8), np.float32)
    x[np.arange(8), cols] = scale
    t = np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32)
    order = np.asarray(cdpruner.pick_order(jnp.asarray(x), jnp.asarray(t), 7))
    # high group 0, 1, 4 (ties to the lower index; 2 and 6 copy 0 and 1: exhausted), then the low group 3, 5
    # (7 copies 3); then no candidate is left and the fill takes 2, 6 (r tie: lower index first), then 7
    np.testing.assert_array_equal(order, [0, 1, 4, 3, 5, -1, -1, -1])  # [max_k = N]
    greedy, fill = np_cdpruner.pick_order(x, t, 7)
    assert (greedy, fill) == ([0, 1, 4, 3, 5], [2, 6])
    for k, kept in [(1, [0]), (3, [0, 1, 4]), (5, [0, 1, 3, 4, 5]), (6, [0, 1, 2, 3, 4, 5]),
                    (7, [0, 1, 2, 3, 4, 5, 6]), (8, list(range(8)))]:
        keep = np.asarray(cdpruner.select(jnp.asarray(x), jnp.asarray(t), k))
        np.testing.assert_array_equal(np.flatnonzero(keep), kept, err_msg=f"k={k}")
        np.testing.assert_array_equal(keep, np_cdpruner.select(x, t, k), err_msg=f"k={k}")
    # identical tokens, plain DPP: the first pick exhausts the kernel, the fill keeps the lowest indices
    same = np.tile(x[:1], (10, 1))
    for k in (0, 1, 4, 9):
        keep = np.asarray(cdpruner.select(jnp.asarray(same), None, k, use_relevance=False))
        np.testing.assert_array_equal(keep, np.arange(10) < k)


def test_jit_vmap_with_per_sample_budget():
    rng = np.random.default_rng(3)
    cap, m_cap, ks = 300, 12, [30, 0, 299, 120]
    xs, ts, valids, t_valids, refs = [], [], [], [], []
    for b, (n, m) in enumerate([(300, 12), (250, 5), (280, 1), (171, 8)]):
        x, t = case(40 + b, n, 64, m=m)
        valid, t_valid = random_valid(rng, n, cap), random_valid(rng, m, m_cap)
        xs.append(pad_rows(x, valid, rng)), ts.append(pad_rows(t, t_valid, rng))
        valids.append(valid), t_valids.append(t_valid)
        refs.append(reference_sets(x, t, [ks[b]])[0])
    fn = jitted(max_k=MAX_K)
    batched = np.asarray(jax.vmap(fn)(jnp.asarray(np.stack(xs)), jnp.asarray(np.stack(ts)), jnp.asarray(ks, jnp.int32),
                                      jnp.asarray(np.stack(valids)), jnp.asarray(np.stack(t_valids))))
    for b in range(4):
        eager = np.asarray(cdpruner.select(jnp.asarray(xs[b]), jnp.asarray(ts[b]), ks[b], jnp.asarray(valids[b]),
                                           jnp.asarray(t_valids[b]), max_k=MAX_K))
        np.testing.assert_array_equal(batched[b], eager)
        assert batched[b].sum() == min(ks[b], valids[b].sum()) and not (batched[b] & ~valids[b]).any()
        np.testing.assert_array_equal(batched[b][valids[b]], refs[b])


def test_max_k():
    """A traced k above the static max_k runs max_k greedy steps and fills the rest by relevance."""
    x, t = case(51, **SMALL)
    keep = call(jitted(max_k=20), x, t, 50)
    greedy, fill = np_cdpruner.pick_order(x, t, 50, max_k=20)
    assert len(greedy) == 20 and len(fill) == 30
    np.testing.assert_array_equal(np.flatnonzero(keep), sorted(greedy + fill))
    assert not np.array_equal(keep, call(jitted(max_k=MAX_K), x, t, 50))
    np.testing.assert_array_equal(call(jitted(max_k=20), x, t, 300), np.ones(300, bool))  # k >= n_valid: all


def test_budget_edges():
    x, t = case(8, **SMALL)
    fn = jitted(max_k=MAX_K)
    valid = np.arange(300) % 3 == 0  # 100 real tokens
    for k in (100, 101, 300, 1000):
        np.testing.assert_array_equal(call(fn, x, t, k, valid), valid)
    np.testing.assert_array_equal(np.asarray(cdpruner.select(jnp.asarray(x), jnp.asarray(t), 1000)),
                                  np.ones(300, bool))  # eager, concrete k above max_k but >= n_valid: fine
    assert not call(fn, x, t, 0).any()
    assert not call(fn, x, t, 5, np.zeros(300, bool)).any()  # no valid token (traced: not checked)
    one = np.zeros(300, bool)
    one[17] = True
    np.testing.assert_array_equal(call(fn, x, t, 1, one), one)
    assert cdpruner.select(jnp.zeros((0, 8)), jnp.zeros(8), 3).shape == (0,)
    zero = x.copy()
    zero[[2, 5]] = 0  # zero-norm tokens: L_ii = 0, only the fill can keep them (here 234 of the 236 left)
    keep = call(fn, zero, t, 298)
    assert keep.sum() == 298
    np.testing.assert_array_equal(keep, np_cdpruner.select(zero, t, 298))
    greedy, fill = np_cdpruner.pick_order(zero, t, 298)
    assert len(greedy) == 64 and {2, 5} & set(fill) and not {2, 5} & set(greedy)


@given(st.integers(0, 2**31 - 1), st.integers(0, 300), st.integers(0, 320), st.booleans())
def test_properties(seed, n_valid, k, use_relevance):
    rng = np.random.default_rng(seed)
    c = centers(rng, 3, 64)
    x, t = clustered(rng, 300, 64, c), clustered(rng, 12, 64, c[:1])
    valid = rng.permutation(np.arange(300) < n_valid)
    keep = call(jitted(max_k=MAX_K, use_relevance=use_relevance), x, t, k, valid)
    assert keep.sum() == min(k, n_valid) and not (keep & ~valid).any()


def test_bad_inputs():
    x, t = case(5, **SMALL)
    x, t = jnp.asarray(x), jnp.asarray(t)
    where = "cdpruner.select"
    with pytest.raises(ValueError, match=rf"{where}: `x` contains 1 non-finite"):
        cdpruner.select(x.at[2, 2].set(jnp.nan), t, 3)
    with pytest.raises(ValueError, match=rf"{where}: `instruction` contains 1 non-finite.*first at index \[3, 1\]"):
        cdpruner.select(x, t.at[3, 1].set(jnp.inf), 3)
    with pytest.raises(ValueError, match=r"`instruction` contains 1 non-finite.*first at index \[4\]"):
        cdpruner.select(x, t[0].at[4].set(jnp.nan), 3)
    with pytest.raises(ValueError, match="`x` must have rank 2"):
        cdpruner.select(x[0], t, 3)
    with pytest.raises(ValueError, match="`x` must have a floating dtype"):
        cdpruner.select(x.astype(jnp.int32), t, 3)
    with pytest.raises(ValueError, match="`instruction` must be an array of rank 1 or 2"):
        cdpruner.select(x, t[None], 3)
    with pytest.raises(ValueError, match="`instruction` must have a floating dtype"):
        cdpruner.select(x, t.astype(jnp.int32), 3)
    with pytest.raises(ValueError, match="`x` and `instruction` must have the same feature size"):
        cdpruner.select(x, t[:, :8], 3)
    with pytest.raises(ValueError, match="`instruction` is required when use_relevance=True"):
        cdpruner.select(x, None, 3)
    with pytest.raises(ValueError, match="`instruction` has no valid row"):
        cdpruner.select(x, t, 3, instruction_valid=jnp.zeros(12, bool))
    with pytest.raises(ValueError, match="`instruction_valid` must have length 12"):
        cdpruner.select(x, t, 3, instruction_valid=jnp.ones(3, bool))
    with pytest.raises(ValueError, match="`instruction_valid` needs a 2-D `instruction`"):
        cdpruner.select(x, t[0], 3, instruction_valid=jnp.ones(12, bool))
    with pytest.raises(ValueError, match="`valid` must have length 300"):
        cdpruner.select(x, t, 3, valid=jnp.ones(39, bool))
    with pytest.raises(ValueError, match="`k` must be >= 0"):
        cdpruner.select(x, t, -1)
    with pytest.raises(ValueError, match="`k` must be an integer count"):
        cdpruner.select(x, t, 2.0)
    with pytest.raises(ValueError, match=r"`k` \(30\) exceeds the static `max_k` \(10\)"):
        cdpruner.select(x, t, 30, max_k=10)
    with pytest.raises(ValueError, match="`max_k` must be a static int >= 1 or None"):
        cdpruner.select(x, t, 3, max_k=0)
    with pytest.raises(ValueError, match="`theta` must be < 1"):
        cdpruner.select(x, t, 3, theta=1.0)
    with pytest.raises(ValueError, match="`theta` must be >= 0.0"):
        cdpruner.select(x, t, 3, theta=-0.5)
    with pytest.raises(ValueError, match="`epsilon` must be >= 0.0"):
        cdpruner.select(x, t, 3, epsilon=-1e-3)
    with pytest.raises(ValueError, match="cdpruner.pick_order: `k` must be >= 0"):
        cdpruner.pick_order(x, t, -3)
    # junk in padding rows of the instruction is fine eagerly
    keep = cdpruner.select(x, t.at[0].set(jnp.nan), 3, instruction_valid=jnp.arange(12) > 0)
    assert int(np.sum(keep)) == 3
    # NaN inside jit: not checked, the count stays exact
    keep = call(jitted(max_k=MAX_K), x.at[2, 2].set(jnp.nan), t, 6)
    assert int(np.sum(keep)) == 6
