"""VisionZip selection and received_attention vs NumPy references; upstream transcription, padding, ties,
jit/vmap, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_pruning.methods import visionzip
from tests.methods.feature_data import centers, clustered, pad_rows, random_valid
from tests.reference import np_visionzip

HEADS, KEY_WIDTH = 16, 64  # CLIP ViT-L/14: 16 heads of width 64 (upstream keys are head-averaged)


def sign_clustered(rng, n, d, count=6, flip=0.25):
    """[n, d] float32 +-2^j vectors around `count` random sign patterns.

    Every row has norm sqrt(d) * 2^j (a power of two for d = 64, 256, 1024), so
    unit rows and their dot products are exact in float32 and float64 alike:
    cosines are exact multiples of 1/d with many exact ties.
    """
    signs = rng.choice([-1.0, 1.0], size=(count, d))
    x = signs[rng.integers(0, count, n)] * np.where(rng.random((n, d)) < flip, -1.0, 1.0)
    return (x * 2.0 ** rng.integers(-1, 3, (n, 1))).astype(np.float32)


def case(seed, n, d, exact_keys=False):
    """(cls_attention [H, n], keys [n, 64], hidden [n, d]) with clustered hidden states and keys."""
    rng = np.random.default_rng(seed)
    hidden = clustered(rng, n, d, centers(rng, 12, d))
    keys = sign_clustered(rng, n, KEY_WIDTH) if exact_keys else clustered(rng, n, KEY_WIDTH,
                                                                           centers(rng, 8, KEY_WIDTH))
    attention = rng.dirichlet(np.full(n, 0.3), size=HEADS).astype(np.float32)  # peaked, like a CLS row
    return attention, keys, hidden


def run(attention, keys, hidden, dominant, contextual, valid=None, cls_first=False):
    out = visionzip.select_with_targets(jnp.asarray(attention), jnp.asarray(keys), jnp.asarray(hidden),
                                        dominant, contextual, None if valid is None else jnp.asarray(valid),
                                        cls_first=cls_first)
    return tuple(np.asarray(a) for a in out)


def assert_same(out, ref, msg=""):
    kept, tokens, target, slot_valid = out
    r_kept, r_tokens, r_target, r_valid = ref
    np.testing.assert_array_equal(kept, r_kept, err_msg=msg)
    np.testing.assert_array_equal(slot_valid, r_valid, err_msg=msg)
    np.testing.assert_array_equal(target, r_target, err_msg=msg)
    np.testing.assert_allclose(tokens, r_tokens, atol=1e-5, rtol=1e-5, err_msg=msg)


# Few distinct (shape, contextual, cls_first) triples: each one is a compilation (about a second on CPU).
BUDGETS = [(54, 10), (108, 10), (0, 10), (1, 10), (300, 10)]


@pytest.mark.parametrize("n, d, cls_first", [(576, 256, False), (577, 1024, True), (2880, 256, False),
                                             (2880, 1024, False)])
def test_matches_reference(n, d, cls_first):
    attention, keys, hidden = case(n + d, n, d)
    extra = [(108, 20), (162, 30)] if cls_first else []  # upstream's 128- and 192-token settings
    for dominant, contextual in BUDGETS + extra + [(n - 4, 10), (n + 3, 10)]:
        if cls_first and dominant == 0:
            continue
        msg = f"dominant={dominant} contextual={contextual}"
        out = run(attention, keys, hidden, dominant, contextual, cls_first=cls_first)
        assert_same(out, np_visionzip.select(attention, keys, hidden, dominant, contextual, cls_first=cls_first),
                    msg)
        assert out[0].sum() == min(dominant, n), msg
        assert out[1].shape == (contextual, d)
        assert out[3].sum() == min(contextual, n - min(dominant, n)), msg  # fewer slots only when few remain


@pytest.mark.parametrize("n, d", [(577, 1024), (2880, 256)])
def test_exact_key_ties_and_duplicated_tokens(n, d):
    """Keys with exact cosines (many equal similarities) and repeated tokens (equal attention sums)."""
    attention, keys, hidden = case(n, n, d, exact_keys=True)
    half = (n + 1) // 2
    for x in (attention.T, keys, hidden):
        x[half:] = x[1:n - half + 1]  # the second half repeats the first, so the CLS row has exact ties
    cls_first = n % 2 == 1
    for dominant, contextual in [(54, 10), (64, 10), (200, 10), (10, 10)]:
        out = run(attention, keys, hidden, dominant, contextual, cls_first=cls_first)
        assert_same(out, np_visionzip.select(attention, keys, hidden, dominant, contextual, cls_first=cls_first))
        # Of two equal tokens the lower index is preferred for dominant: never the copy without the original.
        kept = out[0]
        assert not (kept[half:] & ~kept[1:n - half + 1]).any()


def test_matches_upstream_transcription():
    """A NumPy transcription of upstream's tensor code (577-token crop, CLS counted in dominant = 54)."""
    attention, keys, hidden = case(11, 577, 1024)
    for dominant, contextual in [(54, 10), (108, 20), (162, 30), (191, 30)]:  # 64 / 128 / 192 / 221 tokens
        out = run(attention, keys, hidden, dominant, contextual, cls_first=True)
        kept, tokens = out[0], out[1]
        all_indices, merged = upstream(attention, keys, hidden, dominant - 1, contextual)
        np.testing.assert_array_equal(np.flatnonzero(kept), np.sort(all_indices))
        # Upstream output: [CLS + dominant patches in index order, contextual tokens]; ours: hidden[kept] + tokens.
        ours = np.concatenate([hidden[kept], tokens])
        np.testing.assert_allclose(ours, merged, atol=1e-5, rtol=1e-5)


def upstream(attention, keys, hidden, dominant_num, contextual_num):
    """Upstream `CLIPVisionTower_VisionZip.forward` on one crop, op for op, in NumPy (float64)."""
    attention, keys, hidden = (np.asarray(a, np.float64) for a in (attention, keys, hidden))
    cls_attention_sum = attention[:, 1:].sum(axis=0)
    topk = np.argsort(-cls_attention_sum, kind="stable")[:dominant_num] + 1
    all_indices = np.concatenate([[0], topk])
    mask = np.ones(hidden.shape[0], bool)
    mask[all_indices] = False
    dominant_tokens = hidden[~mask]
    metric = keys[mask]
    filtered = hidden[mask]
    metric = metric / np.linalg.norm(metric, axis=-1, keepdims=True)
    step = max(1, metric.shape[0] // contextual_num)
    target_indices = np.arange(0, metric.shape[0], step)[:contextual_num]
    is_target = np.isin(np.arange(metric.shape[0]), target_indices)
    similarity = metric[~is_target] @ metric[target_indices].T
    assign = np.zeros((similarity.shape[0], contextual_num))
    assign[np.arange(similarity.shape[0]), similarity.argmax(axis=1)] = 1
    counts = np.maximum(assign.sum(axis=0), 1)[:, None]
    aggregated = assign.T @ filtered[~is_target] / counts
    contextual = filtered[target_indices] + aggregated
    return all_indices, np.concatenate([dominant_tokens, contextual])


@pytest.mark.parametrize("junk", [np.nan, None])
def test_padding_is_ignored(junk):
    """Padded rows (NaN or huge junk) change nothing: same as the reference on the real rows alone."""
    n_real, capacity, d = 300, 576, 256
    attention, keys, hidden = case(3, n_real, d)
    rng = np.random.default_rng(4)
    valid = random_valid(rng, n_real, capacity)
    slots = np.flatnonzero(valid)
    p_att = pad_rows(attention.T, valid, rng, junk).T
    p_keys, p_hidden = pad_rows(keys, valid, rng, junk), pad_rows(hidden, valid, rng, junk)
    for dominant, contextual, cls_first in [(54, 10, False), (64, 10, False), (295, 10, False), (400, 10, False)]:
        out = run(p_att, p_keys, p_hidden, dominant, contextual, valid=valid, cls_first=cls_first)
        assert_same(out, np_visionzip.select(p_att, p_keys, p_hidden, dominant, contextual, valid, cls_first))
        kept, tokens, target, slot_valid = np_visionzip.select(attention, keys, hidden, dominant, contextual,
                                                               cls_first=cls_first)
        np.testing.assert_array_equal(np.flatnonzero(out[0]), slots[kept])
        np.testing.assert_array_equal(out[2][out[3]], slots[target[slot_valid]])
        np.testing.assert_allclose(out[1], tokens, atol=1e-5, rtol=1e-5)


def test_jit_and_vmap_with_traced_dominant():
    n, d, contextual = 400, 256, 10
    cases = [case(20 + b, n, d) for b in range(3)]
    rng = np.random.default_rng(5)
    valid = np.stack([random_valid(rng, m, n) for m in (400, 250, 30)])
    dominant = np.array([54, 120, 25], np.int32)
    stacked = [np.stack(x) for x in zip(*cases)]
    fn = jax.jit(jax.vmap(lambda a, k, h, v, dom: visionzip.select_with_targets(a, k, h, dom, contextual, v)))
    batched = [np.asarray(x) for x in fn(*(jnp.asarray(x) for x in stacked), jnp.asarray(valid),
                                         jnp.asarray(dominant))]
    for b in range(3):
        single = run(*cases[b], int(dominant[b]), contextual, valid=valid[b])
        for got, want in zip(batched, single):
            np.testing.assert_allclose(got[b], want, atol=1e-6)
        assert_same(single, np_visionzip.select(*cases[b], int(dominant[b]), contextual, valid[b]))
    assert batched[0][2].sum() == 25 and batched[3][2].sum() == 5  # 30 real tokens: 5 remain for 10 slots


def test_no_contextual_and_few_remaining():
    attention, keys, hidden = case(8, 20, 16)
    for dominant, contextual, cls_first in [(5, 0, False), (17, 6, False), (17, 6, True), (20, 6, False)]:
        out = run(attention, keys, hidden, dominant, contextual, cls_first=cls_first)
        assert_same(out, np_visionzip.select(attention, keys, hidden, dominant, contextual, cls_first=cls_first))
        assert out[1].shape == (contextual, 16) and out[0].sum() == dominant
        assert out[3].sum() == min(contextual, 20 - dominant)
        assert not out[1][~out[3]].any() and not out[2][~out[3]].any()  # unused slots: zeros
    # Padding with a CLS in slot 0.
    valid = np.arange(20) % 3 != 2
    p_att, p_keys, p_hidden = attention.copy(), keys.copy(), hidden.copy()
    p_att[:, ~valid], p_keys[~valid], p_hidden[~valid] = np.nan, np.nan, np.nan
    for dominant in (1, 4, 13, 14):
        out = run(p_att, p_keys, p_hidden, dominant, 6, valid=valid, cls_first=True)
        assert_same(out, np_visionzip.select(p_att, p_keys, p_hidden, dominant, 6, valid, cls_first=True))
        assert out[0][0] and out[0].sum() == min(dominant, 14) and not (out[0] & ~valid).any()


def test_bad_inputs():
    attention, keys, hidden = case(0, 20, 8)
    good = dict(cls_attention=attention, keys=keys, hidden=hidden, dominant=5, contextual=3)

    def call(**kw):
        args = {**good, **kw}
        return visionzip.select(args.pop("cls_attention"), args.pop("keys"), args.pop("hidden"),
                                args.pop("dominant"), args.pop("contextual"), **args)

    nan_hidden, nan_keys, nan_att = hidden.copy(), keys.copy(), attention.copy()
    nan_hidden[3, 1], nan_keys[4, 0], nan_att[2, 5] = np.nan, np.inf, np.nan
    bad = [
        (dict(cls_attention=attention[0]), "`cls_attention` must have rank 2"),
        (dict(cls_attention=attention[:, :19]), "`cls_attention` must have 20 columns"),
        (dict(keys=keys[:19]), "`keys` must have 20 rows"),
        (dict(hidden=hidden.astype(np.int32)), "`hidden` must have a floating dtype"),
        (dict(valid=np.ones(19, bool)), "`valid` must have length 20"),
        (dict(dominant=-1), "`dominant` must be >= 0"),
        (dict(dominant=2.0), "`dominant` must be an integer count"),
        (dict(contextual=-2), "`contextual` must be >= 0"),
        (dict(contextual=jnp.int32(3)), "`contextual` must be a static Python int"),
        (dict(hidden=nan_hidden), "`hidden` contains 1 non-finite"),
        (dict(keys=nan_keys), "`keys` contains 1 non-finite"),
        (dict(cls_attention=nan_att), "`cls_attention` contains 1 non-finite"),
        (dict(cls_first=True, dominant=0), "`dominant` counts the CLS"),
        (dict(cls_first=True, valid=np.arange(20) > 0), r"`valid\[0\]` must be True"),
        (dict(cls_first=1), "`cls_first` must be a bool"),
    ]
    for kw, message in bad:
        with pytest.raises(ValueError, match="visionzip.select: " + message):
            call(**kw)
    # NaN in a padding row is fine.
    valid = np.ones(20, bool)
    valid[3] = False
    call(hidden=nan_hidden, valid=valid)
