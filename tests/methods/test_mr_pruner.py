"""MR-Pruner against its NumPy reference (both variants, ablations), jit/vmap/padding, properties, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jax_pruning.methods import mr_pruner
from tests.methods.feature_data import centers, clustered, pad_rows, random_valid
from tests.reference import np_mr_pruner

SWITCHES = ("intra", "cross", "informativeness")


@functools.lru_cache(maxsize=None)
def _jitted(variant, intra, cross, informativeness):
    fn = functools.partial(mr_pruner.select_details, variant=variant, intra=intra, cross=cross,
                           informativeness=informativeness)
    return jax.jit(lambda low, high, k, lv, hv: fn(low, high, k, low_valid=lv, high_valid=hv))


def jitted(variant, intra=True, cross=True, informativeness=True):
    """select_details jitted with a traced k and explicit masks (one compilation per variant/switches/shape)."""
    fn = _jitted(variant, intra, cross, informativeness)

    def call(low, high, k, low_valid=None, high_valid=None):
        lv = jnp.ones(low.shape[-2], bool) if low_valid is None else low_valid
        hv = jnp.ones(high.shape[-2], bool) if high_valid is None else high_valid
        return fn(low, high, k, lv, hv)

    return call


def small_case(seed, n_low=24, n_high=60, d=16):
    rng = np.random.default_rng(seed)
    c = centers(rng, 5, d)
    return clustered(rng, n_low, d, c), clustered(rng, n_high, d, c)


def assert_matches_reference(got, ref):
    keep_low, keep_high, s_low, s_high, k_low, k_high = ref
    assert (int(got.k_low), int(got.k_high)) == (k_low, k_high)
    np.testing.assert_allclose(np.asarray(got.score_high), s_high, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got.score_low), s_low, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(got.keep_high), keep_high)
    np.testing.assert_array_equal(np.asarray(got.keep_low), keep_low)


ABLATIONS = [(True, True, True), (False, True, True), (True, False, True), (True, True, False), (False, False, False)]


@pytest.mark.parametrize("variant", mr_pruner.VARIANTS)
@pytest.mark.parametrize("switches", ABLATIONS, ids=lambda s: "".join("IR CR IA".split()[i] if on else "--"
                                                                         for i, on in enumerate(s)))
def test_matches_reference_small(variant, switches):
    options = dict(zip(SWITCHES, switches))
    fn = jitted(variant, *switches)
    for seed, k in [(0, 0), (1, 9), (2, 30), (3, 84)]:
        low, high = small_case(seed)
        got = fn(jnp.asarray(low), jnp.asarray(high), jnp.int32(k))
        assert_matches_reference(got, np_mr_pruner.select(low, high, k, variant, **options))


@pytest.mark.parametrize("variant", mr_pruner.VARIANTS)
def test_matches_reference_real_size(variant):
    """LLaVA-NeXT-8B sizes: d=4096, 576 base tokens, a 48 x 48 unpadded tile grid."""
    rng = np.random.default_rng(7)
    c = centers(rng, 40, 4096)
    low, high = clustered(rng, 576, 4096, c), clustered(rng, 2304, 4096, c)
    k = mr_pruner.official_budget(0.1, 576, 48, 48)
    assert k == 292
    got = jitted(variant)(jnp.asarray(low), jnp.asarray(high), jnp.int32(k))
    ref = np_mr_pruner.select(low, high, k, variant)
    assert_matches_reference(got, ref)
    assert int(got.k_low) + int(got.k_high) == k


def test_budget_rules_differ_between_variants():
    """Same data, same k: paper floors K^H, official floors K^L."""
    low, high = small_case(11)
    for variant in mr_pruner.VARIANTS:
        got = jitted(variant)(jnp.asarray(low), jnp.asarray(high), jnp.int32(31))
        i_low = np.linalg.norm(low.astype(np.float32), axis=1).mean(dtype=np.float32)
        i_high = np.linalg.norm(high.astype(np.float32), axis=1).mean(dtype=np.float32)
        if variant == "paper":
            expected_high = int(np.floor(np.float32(31) * (i_high / (i_high + i_low))))
            assert int(got.k_high) == expected_high and int(got.k_low) == 31 - expected_high
        else:
            expected_low = int(np.floor(np.float32(31) * (i_low / (i_low + i_high))))
            assert int(got.k_low) == expected_low and int(got.k_high) == 31 - expected_low


def test_official_budget():
    assert mr_pruner.official_budget(0.1, 576, 48, 48) == 292
    assert mr_pruner.official_budget(0.5, 576, 36, 49) == 1188
    assert mr_pruner.official_budget(1.0, 576, 0, 0) == 576
    np.testing.assert_array_equal(mr_pruner.official_budget(0.1, 576, np.array([48, 24]), np.array([48, 32])), [292, 136])
    traced = jax.jit(lambda r, c: mr_pruner.official_budget(0.1, 576, r, c))(jnp.int32(48), jnp.int32(48))
    assert int(traced) == 292


@pytest.mark.parametrize("variant", mr_pruner.VARIANTS)
def test_jit_equals_eager(variant):
    """Op-by-op (jax.disable_jit) == jit with a static k == the public call."""
    low, high = (jnp.asarray(a) for a in small_case(4, n_low=10, n_high=14, d=8))
    with jax.disable_jit():
        eager = mr_pruner.select(low, high, 9, variant)
    static_k = jax.jit(mr_pruner.select, static_argnums=(2, 3))(low, high, 9, variant)
    public = mr_pruner.select(low, high, 9, variant)
    for a, b, c in zip(eager, static_k, public):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    assert int(np.sum(eager[0])) + int(np.sum(eager[1])) == 9


@pytest.mark.parametrize("variant", mr_pruner.VARIANTS)
def test_padded_with_mask_equals_unpadded_and_vmap_equals_loop(variant):
    """Junk (NaN) padding at random positions, per-sample k and real counts, batched with vmap."""
    rng = np.random.default_rng(5)
    cap_low, cap_high, batch = 30, 72, 3
    lows, highs, lvs, hvs, ks, refs = [], [], [], [], [], []
    for b in range(batch):
        low, high = small_case(20 + b, n_low=[24, 17, 30][b], n_high=[60, 72, 41][b])
        lv, hv = random_valid(rng, len(low), cap_low), random_valid(rng, len(high), cap_high)
        k = [15, 40, 7][b]
        lows.append(pad_rows(low, lv, rng)), highs.append(pad_rows(high, hv, rng))
        lvs.append(lv), hvs.append(hv), ks.append(k)
        refs.append(np_mr_pruner.select(low, high, k, variant))
    fn = jitted(variant)
    batched = jax.vmap(_jitted(variant, True, True, True))(jnp.asarray(np.stack(lows)), jnp.asarray(np.stack(highs)), jnp.asarray(ks, jnp.int32),
                           jnp.asarray(np.stack(lvs)), jnp.asarray(np.stack(hvs)))
    for b in range(batch):
        one = fn(jnp.asarray(lows[b]), jnp.asarray(highs[b]), jnp.int32(ks[b]), jnp.asarray(lvs[b]), jnp.asarray(hvs[b]))
        for field in ("keep_low", "keep_high", "k_low", "k_high"):
            np.testing.assert_array_equal(np.asarray(getattr(batched, field)[b]), np.asarray(getattr(one, field)))
        keep_low, keep_high = np.asarray(one.keep_low), np.asarray(one.keep_high)
        assert not (keep_low & ~lvs[b]).any() and not (keep_high & ~hvs[b]).any()
        np.testing.assert_array_equal(keep_low[lvs[b]], refs[b][0])
        np.testing.assert_array_equal(keep_high[hvs[b]], refs[b][1])
        assert (int(one.k_low), int(one.k_high)) == refs[b][4:]


@st.composite
def mr_cases(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    n_low, n_high = draw(st.integers(0, 12)), draw(st.integers(0, 20))
    k = draw(st.integers(0, 36))
    return seed, n_low, n_high, k


@given(mr_cases(), st.sampled_from(mr_pruner.VARIANTS))
def test_properties_counts_validity_determinism_permutation(case, variant):
    seed, n_low, n_high, k = case
    rng = np.random.default_rng(seed)
    c = centers(rng, 3, 8)
    low, high = clustered(rng, 12, 8, c), clustered(rng, 20, 8, c)
    lv, hv = np.arange(12) < n_low, np.arange(20) < n_high
    lv, hv = rng.permutation(lv), rng.permutation(hv)
    fn = jitted(variant)
    args = (jnp.asarray(low), jnp.asarray(high), jnp.int32(k), jnp.asarray(lv), jnp.asarray(hv))
    got = fn(*args)
    keep_low, keep_high = np.asarray(got.keep_low), np.asarray(got.keep_high)
    k_low, k_high = int(got.k_low), int(got.k_high)
    assert keep_low.sum() == k_low and keep_high.sum() == k_high
    assert not (keep_low & ~lv).any() and not (keep_high & ~hv).any()
    if variant == "paper":
        assert k_low + k_high == min(k, n_low + n_high)
    else:
        assert k_low <= n_low and k_high == min(k - k_low, n_high)
    again = fn(*args)
    np.testing.assert_array_equal(np.asarray(again.keep_low), keep_low)
    # permuting tokens (and their masks) permutes the selection
    pl, ph = rng.permutation(12), rng.permutation(20)
    perm = fn(jnp.asarray(low[pl]), jnp.asarray(high[ph]), jnp.int32(k), jnp.asarray(lv[pl]), jnp.asarray(hv[ph]))
    np.testing.assert_array_equal(np.asarray(perm.keep_low), keep_low[pl])
    np.testing.assert_array_equal(np.asarray(perm.keep_high), keep_high[ph])


@pytest.mark.parametrize("variant", mr_pruner.VARIANTS)
def test_edge_budgets_and_degenerate_tokens(variant):
    low, high = small_case(8)
    fn = jitted(variant)
    nothing = fn(jnp.asarray(low), jnp.asarray(high), jnp.int32(0))
    assert not np.asarray(nothing.keep_low).any() and not np.asarray(nothing.keep_high).any()
    everything = fn(jnp.asarray(low), jnp.asarray(high), jnp.int32(500))
    assert np.asarray(everything.keep_low).all() and np.asarray(everything.keep_high).all()
    # all high tokens invalid: the whole budget goes to low
    got = fn(jnp.asarray(low), jnp.asarray(high), jnp.int32(10), None, jnp.zeros(60, bool))
    assert int(got.k_high) == 0 and int(got.k_low) == 10 and not np.asarray(got.keep_high).any()
    # everything invalid: nothing kept, no NaN
    got = fn(jnp.asarray(low), jnp.asarray(high), jnp.int32(10), jnp.zeros(24, bool), jnp.zeros(60, bool))
    assert int(np.sum(got.keep_low)) + int(np.sum(got.keep_high)) == 0
    # zero-norm tokens: cos 0, finite scores, same result as the reference
    low[3] = 0
    high[:5] = 0
    got = fn(jnp.asarray(low), jnp.asarray(high), jnp.int32(30))
    assert np.isfinite(np.asarray(got.score_low)).all() and np.isfinite(np.asarray(got.score_high)).all()
    assert_matches_reference(got, np_mr_pruner.select(low, high, 30, variant))
    # all-zero features: budget split falls back to token counts, no NaN
    got = fn(jnp.zeros((24, 16)), jnp.zeros((60, 16)), jnp.int32(21))
    assert int(got.k_low) + int(got.k_high) == 21
    assert np.isfinite(np.asarray(got.score_low)).all()


def test_bad_inputs_raise_clear_errors():
    low, high = (jnp.asarray(a) for a in small_case(9))
    nan_high = high.at[3, 2].set(jnp.nan)
    with pytest.raises(ValueError, match=r"mr_pruner.select: `high` contains 1 non-finite"):
        mr_pruner.select(low, nan_high, 10)
    with pytest.raises(ValueError, match="non-finite"):
        mr_pruner.select(low.at[0, 0].set(jnp.inf), high, 10, "paper")
    # NaN in a padded row is fine (never read)
    mr_pruner.select(low, nan_high, 10, high_valid=jnp.arange(60) != 3)
    with pytest.raises(ValueError, match="unknown variant 'fast'; valid choices: official, paper"):
        mr_pruner.select(low, high, 10, "fast")
    with pytest.raises(ValueError, match=r"`low` must have rank 2, got shape \(24,\)"):
        mr_pruner.select(low[:, 0], high, 10)
    with pytest.raises(ValueError, match="`high` must have a floating dtype"):
        mr_pruner.select(low, high.astype(jnp.int32), 10)
    with pytest.raises(ValueError, match="same feature size"):
        mr_pruner.select(low, high[:, :8], 10)
    with pytest.raises(ValueError, match="`k` must be >= 0, got -1"):
        mr_pruner.select(low, high, -1)
    with pytest.raises(ValueError, match="`k` must be an integer count"):
        mr_pruner.select(low, high, 2.5)
    with pytest.raises(ValueError, match="`high_valid` must have length 60"):
        mr_pruner.select(low, high, 3, high_valid=jnp.ones(5, bool))
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        mr_pruner.select(low, high, 3, temperature=0.0)


def test_nan_inside_jit_keeps_counts():
    """Documented in-jit behaviour: no check, NaN scores rank lowest, budgets stay exact."""
    low, high = small_case(10)
    high[5] = np.nan
    for variant in mr_pruner.VARIANTS:
        got = jitted(variant)(jnp.asarray(low), jnp.asarray(high), jnp.int32(20))
        assert int(np.sum(got.keep_low)) == int(got.k_low) and int(np.sum(got.keep_high)) == int(got.k_high)
        assert int(got.k_low) + int(got.k_high) == 20


@pytest.mark.parametrize("variant", mr_pruner.VARIANTS)
def test_empty_resolution(variant):
    """A resolution with no tokens at all (shape [0, d]): the other one takes the whole budget."""
    low, high = small_case(12, n_low=8, n_high=10, d=8)
    keep_low, keep_high = mr_pruner.select(jnp.asarray(low), jnp.zeros((0, 8)), 5, variant)
    assert keep_high.shape == (0,)
    np.testing.assert_array_equal(np.asarray(keep_low), np_mr_pruner.select(low, np.zeros((0, 8)), 5, variant)[0])
    keep_low, keep_high = mr_pruner.select(jnp.zeros((0, 8)), jnp.asarray(high), 5, variant)
    assert keep_low.shape == (0,) and int(np.sum(keep_high)) == 5
