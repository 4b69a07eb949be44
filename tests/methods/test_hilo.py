"""Hi-Lo stage-1 selection against its NumPy reference, window budgets, jit/vmap/padding, properties, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jax_pruning as jp
from jax_pruning.methods import hilo
from jax_pruning.ops import grid_coordinates
from tests.methods.feature_data import centers, clustered, pad_rows, random_valid
from tests.reference import np_hilo


@functools.lru_cache(maxsize=None)
def jitted(window=2, coarse=True, candidates=True):
    """select_details with traced k, m and mask (one compilation per switches and shape)."""
    return jax.jit(lambda x, row, col, k, m, valid: hilo.select_details(
        x, row, col, k, m, valid=valid, window=window, coarse=coarse, candidates=candidates))


def grid_case(seed, h, w, d=16, clusters=5):
    rng = np.random.default_rng(seed)
    row, col = grid_coordinates(h, w)
    return clustered(rng, h * w, d, centers(rng, clusters, d)), row, col


def run(x, row, col, k, m, valid=None, **switches):
    valid = np.ones(len(x), bool) if valid is None else valid
    return jitted(**switches)(jnp.asarray(x), jnp.asarray(row), jnp.asarray(col), jnp.int32(k), jnp.int32(m),
                              jnp.asarray(valid))


@pytest.mark.parametrize("switches", [dict(), dict(window=3), dict(coarse=False), dict(candidates=False),
                                      dict(coarse=False, candidates=False)], ids=str)
def test_matches_reference(switches):
    for seed, (h, w), k, m in [(0, (5, 7), 8, 8), (1, (5, 7), 0, 5), (2, (6, 6), 13, 30), (3, (4, 9), 36, 3)]:
        x, row, col = grid_case(seed, h, w)
        got = run(x, row, col, k, m, **switches)
        ref = np_hilo.select(x, row, col, k, m, **switches)
        for name, a, b in zip(("retained", "candidates", "dropped"), got[:3], ref):
            np.testing.assert_array_equal(np.asarray(a), b, err_msg=f"{name} seed={seed}")


def test_matches_reference_qwen_size():
    """A 28 x 40 merged grid (a 784 x 1120 image on Qwen2-VL), d=512, keep 25 %, m = k."""
    x, row, col = grid_case(11, 28, 40, d=512, clusters=30)
    k, m = hilo.budgets(0.25, 1.0, 28 * 40)
    assert (k, m) == (280, 280)
    got = run(x, row, col, k, m)
    ref = np_hilo.select(x, row, col, k, m)
    for a, b in zip(got[:3], ref):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_window_shares_follow_scores():
    """Shares: largest remainders of k * mean-I / sum, capped by the window's token count."""
    x, row, col = grid_case(4, 4, 4, d=8)
    x[:, :] = np.abs(x)  # positive, so scales add up
    x[(row < 2) & (col < 2)] *= 10.0  # window 0 is far more informative than the others
    got = run(x, row, col, 6, 0)
    share = np.asarray(got.share)[:4]
    assert share[0] == 4  # capped at its 4 tokens, excess re-split
    assert share.sum() == 6
    retained, win = np.asarray(got.retained), np.asarray(got.window)
    for w in range(4):
        assert retained[win == w].sum() == share[w]


def test_budgets():
    assert hilo.budgets(0.25, 1.0, 1120) == (280, 280)
    assert hilo.budgets(0.6, 1.0, 100) == (60, 40)  # m capped by what is left
    assert hilo.budgets(0.1, 0.5, 35) == (3, 1)
    k, m = jax.jit(hilo.budgets)(jnp.float32(0.25), jnp.float32(1.0), jnp.int32(1120))
    assert (int(k), int(m)) == (280, 280)


def test_op_by_op_equals_jit():
    x, row, col = (jnp.asarray(a) for a in grid_case(13, 3, 5, d=8))
    with jax.disable_jit():
        eager = hilo.select(x, row, col, 4, 5)
    jitted_static = jax.jit(hilo.select, static_argnums=(3, 4))(x, row, col, 4, 5)
    for a, b in zip(eager, jitted_static):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_jit_equals_eager_padding_and_vmap():
    rng = np.random.default_rng(6)
    cap, grids, ks, ms = 48, [(5, 7), (6, 8), (3, 5)], [9, 12, 4], [9, 5, 20]
    xs, rows, cols, valids, refs = [], [], [], [], []
    for b, (h, w) in enumerate(grids):
        x, row, col = grid_case(40 + b, h, w)
        valid = random_valid(rng, h * w, cap)
        xs.append(pad_rows(x, valid, rng))
        r = rng.integers(-50, 50, cap)  # junk coordinates in the padding
        c = rng.integers(-50, 50, cap)
        r[valid], c[valid] = row, col
        rows.append(r), cols.append(c), valids.append(valid)
        refs.append(np_hilo.select(x, row, col, ks[b], ms[b]))
    fn = jitted()
    batched = jax.vmap(fn)(jnp.asarray(np.stack(xs)), jnp.asarray(np.stack(rows)), jnp.asarray(np.stack(cols)),
                           jnp.asarray(ks, jnp.int32), jnp.asarray(ms, jnp.int32), jnp.asarray(np.stack(valids)))
    for b in range(3):
        eager = hilo.select(jnp.asarray(xs[b]), jnp.asarray(rows[b]), jnp.asarray(cols[b]), ks[b], ms[b],
                            valid=jnp.asarray(valids[b]))
        for i, mask in enumerate(eager):
            mask = np.asarray(mask)
            np.testing.assert_array_equal(np.asarray(batched[i][b]), mask)
            assert not (mask & ~valids[b]).any()
            np.testing.assert_array_equal(mask[valids[b]], refs[b][i])


@given(st.integers(0, 2**31 - 1), st.integers(0, 30), st.integers(0, 40), st.integers(0, 40), st.booleans())
def test_properties(seed, n_valid, k, m, coarse):
    rng = np.random.default_rng(seed)
    x, row, col = grid_case(seed % 1000, 5, 6, d=8, clusters=3)
    valid = rng.permutation(np.arange(30) < n_valid)
    got = run(x, row, col, k, m, valid, coarse=coarse)
    r, c, d = (np.asarray(a) for a in got[:3])
    assert r.sum() == min(k, n_valid)
    assert c.sum() == min(m, n_valid - r.sum())
    assert not (r & c).any() and not (r & d).any() and not (c & d).any()
    np.testing.assert_array_equal(r | c | d, valid)
    again = run(x, row, col, k, m, valid, coarse=coarse)
    np.testing.assert_array_equal(np.asarray(again.retained), r)
    # the token order does not matter (coordinates travel with the tokens)
    perm = rng.permutation(30)
    p = run(x[perm], row[perm], col[perm], k, m, valid[perm], coarse=coarse)
    for a, b in zip(p[:3], (r, c, d)):
        np.testing.assert_array_equal(np.asarray(a), b[perm])


def test_degenerate_inputs():
    x, row, col = grid_case(7, 4, 6)
    x[:5] = 0  # zero-norm tokens: cos 0, loss 0, no NaN
    got = run(x, row, col, 6, 6)
    assert np.isfinite(np.asarray(got.graph_score)).all() and np.isfinite(np.asarray(got.loss)).all()
    ref = np_hilo.select(x, row, col, 6, 6)
    for a, b in zip(got[:3], ref):
        np.testing.assert_array_equal(np.asarray(a), b)
    # k = 0: R empty, candidates are the most informative tokens
    got = run(x, row, col, 0, 4)
    info = np.linalg.norm(x, axis=1)
    assert not np.asarray(got.retained).any()
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(got.candidates)), np.sort(np.argsort(-info)[:4]))
    # k >= N keeps everything; all-invalid keeps nothing
    assert np.asarray(run(x, row, col, 99, 3).retained).all()
    none = run(x, row, col, 5, 5, np.zeros(24, bool))
    assert not any(np.asarray(a).any() for a in none[:3])


def test_bad_inputs():
    x, row, col = (jnp.asarray(a) for a in grid_case(8, 4, 5))
    with pytest.raises(ValueError, match=r"hilo.select: `x` contains 1 non-finite"):
        hilo.select(x.at[1, 1].set(jnp.inf), row, col, 3, 3)
    with pytest.raises(ValueError, match="`row` must have an integer dtype"):
        hilo.select(x, row.astype(jnp.float32), col, 3, 3)
    with pytest.raises(ValueError, match="`col` must have length 20"):
        hilo.select(x, row, col[:5], 3, 3)
    with pytest.raises(ValueError, match="`window` must be a static int >= 1"):
        hilo.select(x, row, col, 3, 3, window=0)
    with pytest.raises(ValueError, match="`m` must be >= 0"):
        hilo.select(x, row, col, 3, -1)
    with pytest.raises(ValueError, match="window ids must be < N=20"):
        hilo.select(x, row * 10, col, 3, 3)
    with pytest.raises(ValueError, match="`row`/`col` of valid tokens must be >= 0"):
        hilo.select(x, row - 1, col, 3, 3)
    with pytest.raises(ValueError, match="exceeds n_window_cols=2"):
        hilo.select(x, row, col, 3, 3, n_window_cols=2)
    # inside jit: no value checks, counts stay exact
    got = run(np.asarray(x.at[1, 1].set(jnp.nan)), np.asarray(row), np.asarray(col), 4, 4)
    assert int(np.sum(got.retained)) == 4 and int(np.sum(got.candidates)) == 4


def test_empty_input():
    empty = jnp.zeros((0,), jnp.int32)
    masks = hilo.select(jnp.zeros((0, 8)), empty, empty, 3, 3)
    assert all(mask.shape == (0,) for mask in masks)


def test_space_time_windows_span_temporal_window_patches_and_never_mix_groups():
    """A video of 5 temporal patches of a 4 x 6 grid (plus padding): windows are 2 patches x 2 rows x 2 cols."""
    t, h, w, s = 5, 4, 6, 2
    n = t * h * w
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n + 7, 16)).astype(np.float32)
    frame = np.concatenate([np.repeat(np.arange(t), h * w), np.zeros(7, int)])
    row = np.concatenate([np.tile(np.repeat(np.arange(h), w), t), np.zeros(7, int)])
    col = np.concatenate([np.tile(np.tile(np.arange(w), h), t), np.zeros(7, int)])
    valid = np.arange(n + 7) < n
    sel = hilo.select_details(x, row, col, 30, 20, valid=valid, window=s, frame=frame, temporal_window=2)
    win = np.asarray(sel.window)[valid]
    cell = (frame[valid] // 2, row[valid] // s, col[valid] // s)
    for w_id in np.unique(win):
        members = win == w_id
        assert all(len(np.unique(c[members])) == 1 for c in cell), w_id  # one group, one spatial cell
    assert len(np.unique(win)) == 3 * (h // s) * (w // s)  # groups {0,1}, {2,3}, {4}
    assert np.asarray(sel.retained).sum() == 30 and np.asarray(sel.candidates).sum() == 20
    # an image (every token in patch 0) gets exactly the image windows
    image = hilo.select_details(x[:24], row[:24], col[:24], 6, 4, window=s)
    same = hilo.select_details(x[:24], row[:24], col[:24], 6, 4, window=s, frame=np.zeros(24, int))
    for a, b in zip(image[:3], same[:3]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_hilo_runs_over_video_in_generate(tmp_path):
    from jax_pruning.engine import CANDIDATE, KEPT, generate
    from tests.engine import families as F
    from tests.models.test_qwen_video import _inputs

    _, model = F.build("qwen2_vl", tmp_path)
    inputs = _inputs("qwen2_vl", "video_only")
    spec = jp.pruner("hilo", keep_ratio=0.25, removal_layer=1)
    out = generate(model, inputs, spec, 3, eos_token_id=[])
    real = out.stats["visual_tokens_before"]
    np.testing.assert_array_equal((out.visual_labels == KEPT).sum(axis=1), np.floor(0.25 * real).astype(int))
    assert (out.visual_labels == CANDIDATE).sum() > 0
