"""Hi-Lo Prune, stage 1: hierarchical (coarse-to-fine) selection of R, C and D.

Our fixed reading of the Hi-Lo Prune paper (its code is not public), in full here:
- coarse: tokens are grouped into s x s windows of the merged token grid by
  their own (row, col) coordinates: window id = (row // s) * n_window_cols +
  col // s. Window score = mean I (L2 norm) over the window's valid tokens.
  The k retained slots are apportioned over the windows in proportion to the
  window scores by largest remainders (`ops.apportion`: floors first, leftover
  units to the largest fractional parts, ties to the lower window id); a share
  is capped by the window's valid token count and the excess is apportioned
  again over the windows that still have room, so exactly min(k, n_valid)
  tokens are retained. If all open windows score 0 they share equally.
- fine: inside each window keep its share by the paper-style graph score
  S = A I with A_ij = cos if cos >= threshold else 0, the graph built *within
  the window* (only window mates are neighbours); ties to the lower index.
- candidates: among the valid tokens not retained, the m with the largest
  loss_i = I_i (1 - max_{r in R} cos(x_i, x_r)) (with R empty the max is taken
  as -1); ties to the lower index. Everything else valid is dropped.
- switches: coarse=False scores every token on one graph over the whole image
  and keeps the global top-k; candidates=False means m = 0.
- space-time (video): with `frame` (each token's temporal patch) the windows
  are temporal_window patches x s rows x s cols: rows are spatial (within a
  temporal patch) and the temporal group frame // temporal_window is stacked
  below the previous one (by whole windows), so a window never mixes groups;
  window ids are then renumbered densely (same order), so any grid fits N.
  Default temporal_window = 2 (our choice: the paper has no video). Images
  (frame 0) get exactly the image windows; candidates and their removal at L
  are unchanged.
- k and m are Python ints or integer scalars (traced is fine); the masks are
  always [N], so the static capacity is N. Cosines are computed in column
  blocks of 1024 tokens (memory N x 1024, never N x N; compute O(N^2 d)).
- Padding: invalid tokens are zeroed, never scored into a window, never
  neighbours, never in R, C or D. Non-finite features of real tokens raise
  ValueError eagerly; inside jit they are not checked (NaN scores rank lowest,
  counts stay exact). Window ids must be < N (true for grid coordinates with
  n_window_cols = ceil(w / s)); eagerly a larger id raises, inside jit it is
  clipped to N - 1.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from jax_pruning.methods import declaration
from jax_pruning.ops import (
    apportion,
    check_array,
    check_count,
    check_finite,
    check_mask,
    check_real,
    is_traced,
    l2_norm,
    max_similarity,
    segment_topk_mask,
    threshold_graph_scores,
    topk_mask,
    window_index,
)

_WHERE = "hilo.select"


class Selection(NamedTuple):
    """Retained R, candidates C, dropped D (disjoint; their union is the valid tokens), plus scores."""

    retained: Bool[Array, "N"]
    candidates: Bool[Array, "N"]
    dropped: Bool[Array, "N"]
    graph_score: Float[Array, "N"]  # S = A I (within windows when coarse)
    loss: Float[Array, "N"]  # candidate loss I (1 - max_R cos)
    window: Int[Array, "N"]  # window id of each token (0 when coarse=False)
    share: Int[Array, "N"]  # retained slots per window id


def budgets(keep_ratio, candidate_ratio, n_valid):
    """(k, m) = (int(keep_ratio * n), min(int(candidate_ratio * k), n - k)) for n real tokens.

    Python numbers give Python ints; JAX arrays (traced counts) give int32 via float32.
    """
    if any(isinstance(v, jnp.ndarray) for v in (keep_ratio, candidate_ratio, n_valid)):
        n = jnp.asarray(n_valid, jnp.int32)
        k = jnp.floor(jnp.asarray(keep_ratio, jnp.float32) * n.astype(jnp.float32)).astype(jnp.int32)
        m = jnp.floor(jnp.asarray(candidate_ratio, jnp.float32) * k.astype(jnp.float32)).astype(jnp.int32)
        return k, jnp.minimum(m, n - k)
    n = int(n_valid)
    k = int(float(keep_ratio) * n)
    return k, min(int(float(candidate_ratio) * k), n - k)


def _window_ids(row, col, valid, window, n_window_cols, frame=None, temporal_window: int = 1):
    """Window id per token; n_window_cols defaults to (max valid col) // s + 1 (works traced). With `frame`:
    space-time windows (module docstring), ids renumbered densely in their order."""
    if n_window_cols is None:
        n_window_cols = jnp.max(jnp.where(valid, jnp.asarray(col, jnp.int32), 0), initial=0) // window + 1
    if frame is None:
        return jnp.clip(window_index(row, col, window, n_window_cols), 0, max(row.shape[0] - 1, 0))
    height = (jnp.max(jnp.where(valid, row, 0), initial=0) // window + 1) * window  # whole windows
    ids = window_index(row + (jnp.asarray(frame, jnp.int32) // temporal_window) * height, col, window, n_window_cols)
    ids = jnp.where(valid, ids, jnp.iinfo(jnp.int32).max)
    order = jnp.argsort(ids, stable=True)
    ranked = ids[order]
    dense = jnp.cumsum(jnp.concatenate([jnp.zeros((1,), jnp.int32), (ranked[1:] != ranked[:-1]).astype(jnp.int32)]))
    return jnp.zeros_like(ids).at[order].set(dense)


@functools.partial(jax.jit, static_argnames=("window", "coarse", "candidates", "block", "temporal_window"))
def _select_core(x, row, col, k, m, valid, threshold, n_window_cols, frame=None, *, window, coarse, candidates,
                 block=1024, temporal_window=1) -> Selection:
    n = x.shape[0]
    x = jnp.where(valid[:, None], jnp.asarray(x, jnp.float32), 0.0)
    info = jnp.where(valid, l2_norm(x), 0.0)
    if coarse:
        win = _window_ids(row, col, valid, window, n_window_cols, frame, temporal_window)
        count = jnp.zeros((n,), jnp.int32).at[win].add(valid.astype(jnp.int32))
        total = jnp.zeros((n,), jnp.float32).at[win].add(info)
        score = jnp.where(count > 0, total / jnp.maximum(count, 1).astype(jnp.float32), 0.0)
        share = apportion(score, k, count)
        graph_score = threshold_graph_scores(x, info, threshold, group=win, block=block)  # S = A I in windows
        retained = segment_topk_mask(graph_score, win, share, valid)
    else:
        win = jnp.zeros((n,), jnp.int32)
        graph_score = threshold_graph_scores(x, info, threshold, block=block)
        retained = topk_mask(graph_score, k, valid)
        share = jnp.zeros((n,), jnp.int32).at[0].set(jnp.sum(retained.astype(jnp.int32)))
    loss = info * (1.0 - max_similarity(x, retained, block=block))  # max over an empty R is -1
    redundant = valid & ~retained
    cand = topk_mask(loss, m, redundant) if candidates else jnp.zeros((n,), jnp.bool_)
    return Selection(retained, cand, redundant & ~cand, graph_score, loss, win, share)


def _validate(x, row, col, k, m, valid, window, threshold, n_window_cols):
    check_array(x, "x", _WHERE, rank=2)
    n = x.shape[0]
    for name, coord in (("row", row), ("col", col)):
        check_array(coord, name, _WHERE, rank=1, kind="int")
        if coord.shape[0] != n:
            raise ValueError(f"{_WHERE}: `{name}` must have length {n} (one per token), got {coord.shape[0]}")
    check_mask(valid, "valid", _WHERE, n)
    check_count(k, "k", _WHERE)
    check_count(m, "m", _WHERE)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"{_WHERE}: `window` must be a static int >= 1, got {window!r}")
    check_real(threshold, "threshold", _WHERE, low=-1.0, high=1.0)
    if n_window_cols is not None:
        check_count(n_window_cols, "n_window_cols", _WHERE)
    if any(is_traced(a) for a in (x, row, col, valid, n_window_cols)):
        return
    real = np.ones(n, bool) if valid is None else np.asarray(valid)
    check_finite(np.asarray(x)[real], "x", _WHERE)
    r, c = np.asarray(row)[real], np.asarray(col)[real]
    if (r < 0).any() or (c < 0).any():
        raise ValueError(f"{_WHERE}: `row`/`col` of valid tokens must be >= 0")
    if real.any():
        cols = int(c.max()) // window + 1 if n_window_cols is None else int(n_window_cols)
        if (c // window >= cols).any():
            raise ValueError(f"{_WHERE}: a valid token's col // window exceeds n_window_cols={cols}")
        if int((r // window * cols + c // window).max()) >= n:
            raise ValueError(
                f"{_WHERE}: window ids must be < N={n}; coordinates span more windows than tokens "
                "(row/col should be positions in an h x w grid with h * w <= N)"
            )


def select_details(
    x: Float[Array, "N d"],
    row: Int[Array, "N"],
    col: Int[Array, "N"],
    k,
    m,
    *,
    valid: Bool[Array, "N"] | None = None,
    window: int = 2,
    threshold: float = 0.5,
    coarse: bool = True,
    candidates: bool = True,
    n_window_cols=None,
    frame=None,
    temporal_window: int = 2,
) -> Selection:
    """`select` plus the graph scores, candidate losses and window shares."""
    _validate(x, row, col, k, m, valid, window, threshold, n_window_cols)
    valid = jnp.ones((x.shape[0],), jnp.bool_) if valid is None else jnp.asarray(valid)
    return _select_core(
        x, jnp.asarray(row, jnp.int32), jnp.asarray(col, jnp.int32), jnp.asarray(k, jnp.int32),
        jnp.asarray(m, jnp.int32), valid, threshold, n_window_cols, None if frame is None else jnp.asarray(frame),
        window=window, coarse=coarse, candidates=candidates, temporal_window=temporal_window,
    )


def select(
    x: Float[Array, "N d"],
    row: Int[Array, "N"],
    col: Int[Array, "N"],
    k,
    m,
    *,
    valid: Bool[Array, "N"] | None = None,
    window: int = 2,
    threshold: float = 0.5,
    coarse: bool = True,
    candidates: bool = True,
    n_window_cols=None,
    frame=None,
    temporal_window: int = 2,
) -> tuple[Bool[Array, "N"], Bool[Array, "N"], Bool[Array, "N"]]:
    """(retained, candidates, dropped) masks [N]: min(k, n) retained, min(m, n - |R|) candidates.

    x: merged visual tokens; row/col: each token's coordinates on the merged
    grid; k, m: Python ints or integer scalars (traced is fine); window: s
    (static); n_window_cols: None derives it from the largest valid col, or an
    int (ceil(w / s)). coarse=False / candidates=False are the ablations. frame [N] (optional): each
    token's temporal patch; windows then span temporal_window patches (module docstring).
    """
    selection = select_details(
        x, row, col, k, m, valid=valid, window=window, threshold=threshold, coarse=coarse,
        candidates=candidates, n_window_cols=n_window_cols, frame=frame, temporal_window=temporal_window,
    )
    return selection.retained, selection.candidates, selection.dropped



def _budget(spec, counts):
    ratio = spec.candidate_ratio if spec.candidates else 0.0
    pairs = [budgets(spec.keep_ratio, ratio, int(n)) for n in counts.real]
    keep = np.array([k for k, _ in pairs], np.int64).reshape(counts.real.shape)
    cand = np.array([m for _, m in pairs], np.int64).reshape(counts.real.shape)
    return declaration.Budget(keep, candidates=cand)


def _select_sample(options, s):
    retained, cands, _ = select(
        s.x, s.row, s.col, s.keep, s.candidates, valid=s.valid, window=options["window"],
        threshold=options["threshold"], coarse=options["coarse"], candidates=options["candidates"],
        frame=s.frame, temporal_window=options["temporal_window"],
    )
    return retained, cands


def _effective(spec, n_layers: int) -> str:
    """Without candidates (switched off, ratio 0, or L = 0) Hi-Lo is plain before-LLM pruning."""
    with_candidates = spec.candidates and spec.candidate_ratio > 0 and spec.removal_layer > 0
    return declaration.BIAS_THEN_REMOVE if with_candidates else declaration.BEFORE_LLM


METHOD = declaration.Method(
    name="hilo",
    stage=declaration.BIAS_THEN_REMOVE,
    options={
        "candidate_ratio": (1.0, declaration.NON_NEGATIVE),
        "window": (2, declaration.integer("an integer >= 1", 1)),
        "temporal_window": (2, declaration.integer("an integer >= 1", 1)),
        "removal_layer": (2, declaration.LAYER),
        "bias": (0.0, declaration.NON_NEGATIVE),
        "threshold": (0.5, declaration.COSINE),
        "coarse": (True, declaration.flag),
        "candidates": (True, declaration.flag),
        "merge": (True, declaration.flag),
    },
    select=_select_sample,
    budget=_budget,
    flops=lambda spec, n, width, text, tokens: 2 * declaration.graph_flops(n, width),  # windowed graph + max-sim to R
    layer_option="removal_layer",
    effective=_effective,
    selection_ignores={"candidate_ratio": 1.0, "bias": 0.0, "merge": True, "removal_layer": 2},
)

__all__ = ["METHOD", "Selection", "budgets", "select", "select_details"]
