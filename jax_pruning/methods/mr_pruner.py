"""MR-Pruner: multi-resolution graph-based token selection (LLaVA-NeXT).

Two variants, both specified here: "paper" is Algorithm 1 (thresholded cosine graph,
S = A I, K^H = floor(K Ī^H / (Ī^H + Ī^L)), cross score from pruned high tokens
weighted by alpha); "official" is the public code (temperature-softmax graph
with a -5000 non-edge fill, score = (I A) / degree, K^L from the low share,
cross propagation divided by a per-low-token degree, weighted by beta).
High-resolution tokens are selected first, then the low-resolution ones,
whose score borrows from the high tokens that were just pruned.

Choices beyond the spec (all deterministic):
- Padding: `low_valid` / `high_valid` mark real tokens. Invalid rows are zeroed
  before anything else, are never kept, never count in means Ī or degrees and
  never send information through any graph.
- Ablations (paper Table 3): intra=False scores tokens by I (L2 norm) alone;
  cross=False drops the cross term; informativeness=False splits the budget
  in proportion to the valid token counts instead of the mean norms (exact
  integer floor, same floor/cap rules as the variant).
- Budget caps: "official" uses exactly K^L = min(floor(k r_L), n_low),
  K^H = min(k - K^L, n_high) (so it may keep fewer than k tokens when k is
  close to n_low + n_high, as the public code does). "paper" clamps
  K^H = min(max(floor(k r_H), k - n_low), n_high), K^L = min(k - K^H, n_low):
  equal to Algorithm 1 whenever that is feasible, and always min(k, n_low +
  n_high) in total.
- If Ī^L + Ī^H is 0 or not finite (all-zero or non-finite features) the split
  falls back to token counts. With no pruned high token the cross term is 0
  (the public code would divide 0 by 0).
- The cross graph uses `cross_threshold` (s_c) in both variants (the public
  code's `cross_similarity`, 0.5 like s_a).
- Non-finite features in real tokens raise ValueError when called eagerly.
  Inside jit/vmap they are not checked: NaN scores rank lowest (see
  `topk_mask`) and the counts K^L, K^H stay exact, but the choice among those
  tokens is then meaningless.
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
    check_array,
    check_count,
    check_finite,
    check_mask,
    check_real,
    check_same_width,
    is_traced,
    cosine_similarity,
    l2_norm,
    propagate,
    safe_divide,
    softmax_graph,
    threshold_graph,
    topk_mask,
)

VARIANTS = ("official", "paper")
_WHERE = "mr_pruner.select"


class Selection(NamedTuple):
    """Keep masks plus the scores and per-resolution budgets that produced them."""

    keep_low: Bool[Array, "N_low"]
    keep_high: Bool[Array, "N_high"]
    score_low: Float[Array, "N_low"]  # final low score (intra + cross term)
    score_high: Float[Array, "N_high"]
    k_low: Int[Array, ""]
    k_high: Int[Array, ""]


def official_budget(keep_ratio, n_base, rows, cols):
    """Total kept tokens of the public code: int(keep_ratio * (n_base + rows * (cols + 1))).

    The rows newline tokens count in the base of the ratio but are not part of
    the returned total (the caller keeps them on top of it). Python
    or NumPy numbers give a Python int (float64, like the public code); JAX
    arrays (e.g. per-sample traced rows/cols) give int32 computed in float32.
    """
    if any(isinstance(v, jnp.ndarray) for v in (keep_ratio, n_base, rows, cols)):
        base = jnp.asarray(n_base, jnp.float32) + jnp.asarray(rows, jnp.float32) * (jnp.asarray(cols, jnp.float32) + 1)
        return jnp.floor(jnp.asarray(keep_ratio, jnp.float32) * base).astype(jnp.int32)
    if np.ndim(rows) or np.ndim(cols) or np.ndim(n_base) or np.ndim(keep_ratio):
        base = np.asarray(n_base, np.float64) + np.asarray(rows, np.float64) * (np.asarray(cols, np.float64) + 1)
        return np.floor(np.asarray(keep_ratio, np.float64) * base).astype(np.int64)
    return int(float(keep_ratio) * (n_base + rows * (cols + 1)))


def _masked_mean(values: Float[Array, "N"], valid: Bool[Array, "N"]) -> Float[Array, ""]:
    count = jnp.sum(valid.astype(jnp.float32))
    return jnp.where(count > 0, jnp.sum(jnp.where(valid, values, 0.0)) / jnp.maximum(count, 1.0), 0.0)


def _share(k, part_mean, other_mean, part_count, other_count, informativeness: bool):
    """floor(k * part / (part + other)) by mean norm (float32) or, as fallback/ablation, by counts (exact)."""
    k = jnp.asarray(k, jnp.int32)
    by_count = jnp.where(part_count + other_count > 0, (k * part_count) // jnp.maximum(part_count + other_count, 1), 0)
    if not informativeness:
        return by_count
    ratio = part_mean / (part_mean + other_mean)
    by_norm = jnp.floor(k.astype(jnp.float32) * ratio)
    usable = jnp.isfinite(ratio) & (part_mean + other_mean > 0)
    return jnp.where(usable, jnp.where(usable, by_norm, 0.0).astype(jnp.int32), by_count)


def _budgets(variant, k, inf_low, inf_high, low_valid, high_valid, informativeness):
    n_low = jnp.sum(low_valid.astype(jnp.int32))
    n_high = jnp.sum(high_valid.astype(jnp.int32))
    k = jnp.asarray(k, jnp.int32)
    mean_low, mean_high = _masked_mean(inf_low, low_valid), _masked_mean(inf_high, high_valid)
    if variant == "official":
        k_low = jnp.minimum(_share(k, mean_low, mean_high, n_low, n_high, informativeness), n_low)
        k_high = jnp.minimum(k - k_low, n_high)
    else:
        k_high = _share(k, mean_high, mean_low, n_high, n_low, informativeness)
        k_high = jnp.minimum(jnp.maximum(k_high, k - n_low), n_high)
        k_low = jnp.minimum(k - k_high, n_low)
    return jnp.maximum(k_low, 0), jnp.maximum(k_high, 0)


def _intra_scores(variant, x, inf, valid, threshold, temperature):
    """Paper: S = A I with A thresholded cos. Official: (I A) / degree with the softmax graph."""
    sim = cosine_similarity(x, x)
    if variant == "paper":
        return propagate(inf, threshold_graph(sim, threshold).T)  # S = A I (I A^T as a row vector)
    adjacency, degree = softmax_graph(sim, threshold, temperature, col_valid=valid)
    return safe_divide(propagate(inf, adjacency), degree)


def _cross_scores(variant, low, high, inf_high, pruned, cross_threshold, temperature):
    """Information of the pruned high tokens propagated to every low token."""
    sim = cosine_similarity(low, high)  # [N_low, N_high]
    weights = jnp.where(pruned, inf_high, 0.0)
    if variant == "paper":
        return propagate(weights, threshold_graph(sim, cross_threshold).T)
    adjacency, degree = softmax_graph(sim, cross_threshold, temperature, col_valid=pruned)
    return safe_divide(propagate(weights, adjacency.T), degree)


def _validate(low, high, k, variant, low_valid, high_valid, threshold, cross_threshold, temperature, alpha, beta):
    if variant not in VARIANTS:
        raise ValueError(f"{_WHERE}: unknown variant {variant!r}; valid choices: {', '.join(VARIANTS)}")
    check_array(low, "low", _WHERE, rank=2)
    check_array(high, "high", _WHERE, rank=2)
    check_same_width(low, high, "low", "high", _WHERE)
    check_mask(low_valid, "low_valid", _WHERE, low.shape[0])
    check_mask(high_valid, "high_valid", _WHERE, high.shape[0])
    check_count(k, "k", _WHERE)
    for name, value in (("threshold", threshold), ("cross_threshold", cross_threshold)):
        check_real(value, name, _WHERE, low=-1.0, high=1.0)
    check_real(temperature, "temperature", _WHERE, low=0.0, low_open=True)
    check_real(alpha, "alpha", _WHERE)
    check_real(beta, "beta", _WHERE)
    for name, x, valid in (("low", low, low_valid), ("high", high, high_valid)):
        check_finite(x if valid is None else _rows_or_empty(x, valid), name, _WHERE)


def _rows_or_empty(x, valid):
    """Concrete rows of x marked valid; tracers pass through (check_finite skips them)."""
    if is_traced(x) or is_traced(valid):
        return x
    return np.asarray(x)[np.asarray(valid)]


def select_details(
    low: Float[Array, "N_low d"],
    high: Float[Array, "N_high d"],
    k,
    variant: str = "official",
    *,
    low_valid: Bool[Array, "N_low"] | None = None,
    high_valid: Bool[Array, "N_high"] | None = None,
    threshold: float = 0.5,
    cross_threshold: float = 0.5,
    temperature: float = 0.03,
    alpha: float = 0.3,
    beta: float = 0.5,
    intra: bool = True,
    cross: bool = True,
    informativeness: bool = True,
) -> Selection:
    """`select` plus the final scores and the budgets K^L, K^H (for tests and analysis)."""
    _validate(low, high, k, variant, low_valid, high_valid, threshold, cross_threshold, temperature, alpha, beta)
    low_valid = jnp.ones((low.shape[0],), jnp.bool_) if low_valid is None else jnp.asarray(low_valid)
    high_valid = jnp.ones((high.shape[0],), jnp.bool_) if high_valid is None else jnp.asarray(high_valid)
    return _select_core(
        low, high, jnp.asarray(k, jnp.int32), low_valid, high_valid, threshold, cross_threshold, temperature,
        alpha, beta, variant=variant, intra=intra, cross=cross, informativeness=informativeness,
    )


@functools.partial(jax.jit, static_argnames=("variant", "intra", "cross", "informativeness"))
def _select_core(low, high, k, low_valid, high_valid, threshold, cross_threshold, temperature, alpha, beta, *,
                 variant, intra, cross, informativeness) -> Selection:
    """The selection itself, jitted so that eager calls compile once (inlined under an outer jit)."""
    low = jnp.where(low_valid[:, None], jnp.asarray(low, jnp.float32), 0.0)  # padding never contributes
    high = jnp.where(high_valid[:, None], jnp.asarray(high, jnp.float32), 0.0)
    inf_low, inf_high = l2_norm(low), l2_norm(high)

    k_low, k_high = _budgets(variant, k, inf_low, inf_high, low_valid, high_valid, informativeness)
    if intra:
        score_high = _intra_scores(variant, high, inf_high, high_valid, threshold, temperature)
        score_low = _intra_scores(variant, low, inf_low, low_valid, threshold, temperature)
    else:
        score_high, score_low = inf_high, inf_low
    keep_high = topk_mask(score_high, k_high, high_valid)
    if cross:
        pruned = high_valid & ~keep_high
        weight = alpha if variant == "paper" else beta
        cross_term = _cross_scores(variant, low, high, inf_high, pruned, cross_threshold, temperature)
        score_low = score_low + weight * cross_term
    keep_low = topk_mask(score_low, k_low, low_valid)
    return Selection(keep_low, keep_high, score_low, score_high, k_low, k_high)


def select(
    low: Float[Array, "N_low d"],
    high: Float[Array, "N_high d"],
    k,
    variant: str = "official",
    *,
    low_valid: Bool[Array, "N_low"] | None = None,
    high_valid: Bool[Array, "N_high"] | None = None,
    threshold: float = 0.5,
    cross_threshold: float = 0.5,
    temperature: float = 0.03,
    alpha: float = 0.3,
    beta: float = 0.5,
    intra: bool = True,
    cross: bool = True,
    informativeness: bool = True,
) -> tuple[Bool[Array, "N_low"], Bool[Array, "N_high"]]:
    """Keep masks (keep_low [N_low], keep_high [N_high]) with K^L + K^H Trues in total.

    low: base-image tokens; high: anyres tile tokens after unpad, newline tokens
    excluded (the caller keeps those). `k` is a Python int or an integer scalar
    (traced is fine, e.g. per sample under vmap). threshold = s_a,
    cross_threshold = s_c, temperature = T (official), alpha (paper) / beta
    (official) weigh the cross term; intra/cross/informativeness are the
    ablation switches IR/CR/IA (see the module docstring).
    """
    selection = select_details(
        low, high, k, variant, low_valid=low_valid, high_valid=high_valid, threshold=threshold,
        cross_threshold=cross_threshold, temperature=temperature, alpha=alpha, beta=beta, intra=intra,
        cross=cross, informativeness=informativeness,
    )
    return selection.keep_low, selection.keep_high


__all__ = ["VARIANTS", "Selection", "official_budget", "select", "select_details"]


def _budget(spec, counts):
    """official: `official_budget` per image, summed per sample (capped by the real tokens);
    paper: floor(keep_ratio x real tokens)."""
    if spec.variant != "official":
        return declaration.proportional_budget(spec, counts)
    totals = np.array([sum(official_budget(spec.keep_ratio, n_base, rows, cols) for n_base, rows, cols in images)
                       for images in counts.images], np.int64).reshape(counts.real.shape)
    return declaration.Budget(np.minimum(totals, counts.real))


def _select_sample(options, s):
    low, high = select(
        s.x, s.x, s.keep, options["variant"], low_valid=s.valid & s.low, high_valid=s.valid & s.high,
        threshold=options["threshold"], cross_threshold=options["cross_threshold"],
        temperature=options["temperature"], alpha=options["alpha"], beta=options["beta"], intra=options["intra"],
        cross=options["cross"], informativeness=options["informativeness"],
    )
    return low | high, jnp.zeros_like(s.valid)


METHOD = declaration.Method(
    name="mr_pruner",
    stage=declaration.BEFORE_LLM,
    options={
        "variant": ("official", declaration.choice(*VARIANTS)),
        "threshold": (0.5, declaration.COSINE),
        "cross_threshold": (0.5, declaration.COSINE),
        "temperature": (0.03, declaration.POSITIVE),
        "alpha": (0.3, declaration.NON_NEGATIVE),
        "beta": (0.5, declaration.NON_NEGATIVE),
        "intra": (True, declaration.flag),
        "cross": (True, declaration.flag),
        "informativeness": (True, declaration.flag),
    },
    select=_select_sample,
    budget=_budget,
    flops=lambda spec, n, width, text, tokens: 3 * declaration.graph_flops(n, width),  # low, high, cross graphs
    multi_resolution=True,
)
