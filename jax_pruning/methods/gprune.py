"""G-Prune (AAAI 2025 baseline): iterative information propagation on a token graph.

Per resolution: the official softmax-temperature graph (threshold s, T, -5000
non-edge fill, row softmax), degree counted *before* propagation, then the
informativeness W = ||x||_2 is propagated `steps` times: score = (W A^n) /
degree, computed as n vector-matrix products (never a matrix power). Keep the
k best. On LLaVA-NeXT each resolution keeps int(keep_ratio * N) of its own
tokens (`multires_budget`, `select_multires`); newline tokens are the caller's
and always kept.

Padding: invalid tokens are zeroed, get no weight in any column, never count
in a degree and are never kept. Non-finite features of real tokens raise
ValueError eagerly; inside jit they are not checked and NaN scores rank lowest
(counts stay exact).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from jax_pruning.methods import declaration
from jax_pruning.ops import (
    check_array,
    check_count,
    check_finite,
    check_mask,
    check_real,
    cosine_similarity,
    is_traced,
    l2_norm,
    propagate,
    safe_divide,
    softmax_graph,
    topk_mask,
)

_WHERE = "gprune.select"


def _validate(x, k, valid, threshold, temperature, steps, where=_WHERE, name="x", valid_name="valid", k_name="k"):
    check_array(x, name, where, rank=2)
    check_mask(valid, valid_name, where, x.shape[0])
    check_count(k, k_name, where)
    check_real(threshold, "threshold", where, low=-1.0, high=1.0)
    check_real(temperature, "temperature", where, low=0.0, low_open=True)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"{where}: `steps` must be a static int >= 0, got {steps!r}")
    if not (is_traced(x) or is_traced(valid)):
        check_finite(x if valid is None else np.asarray(x)[np.asarray(valid)], name, where)


@functools.partial(jax.jit, static_argnames=("steps",))
def _scores_core(x, valid, threshold, temperature, *, steps):
    x = jnp.where(valid[:, None], jnp.asarray(x, jnp.float32), 0.0)
    weights = jnp.where(valid, l2_norm(x), 0.0)
    adjacency, degree = softmax_graph(cosine_similarity(x, x), threshold, temperature, col_valid=valid)
    for _ in range(steps):  # W A^n as n vector-matrix products
        weights = propagate(weights, adjacency)
    return safe_divide(weights, degree)


def scores(
    x: Float[Array, "N d"],
    *,
    valid: Bool[Array, "N"] | None = None,
    threshold: float = 0.5,
    temperature: float = 0.03,
    steps: int = 5,
) -> Float[Array, "N"]:
    """G-Prune score (W A^steps) / degree of every token (float32; invalid tokens score 0)."""
    _validate(x, 0, valid, threshold, temperature, steps, where="gprune.scores")
    valid = jnp.ones((x.shape[0],), jnp.bool_) if valid is None else jnp.asarray(valid)
    return _scores_core(x, valid, threshold, temperature, steps=steps)


def select(
    x: Float[Array, "N d"],
    k,
    *,
    valid: Bool[Array, "N"] | None = None,
    threshold: float = 0.5,
    temperature: float = 0.03,
    steps: int = 5,
) -> Bool[Array, "N"]:
    """Keep mask with exactly min(k, n_valid) True: the best G-Prune scores (ties to the lower index).

    `k` is a Python int or an integer scalar (traced is fine).
    """
    _validate(x, k, valid, threshold, temperature, steps)
    valid = jnp.ones((x.shape[0],), jnp.bool_) if valid is None else jnp.asarray(valid)
    return topk_mask(_scores_core(x, valid, threshold, temperature, steps=steps), k, valid)


def multires_budget(keep_ratio, n_low, n_high):
    """(int(keep_ratio * n_low), int(keep_ratio * n_high)): each resolution keeps its own share.

    Python/NumPy numbers give Python ints (float64 product); JAX arrays
    (traced per-sample counts) give int32 computed in float32.
    """
    if any(isinstance(v, jnp.ndarray) for v in (keep_ratio, n_low, n_high)):
        ratio = jnp.asarray(keep_ratio, jnp.float32)
        return (jnp.floor(ratio * jnp.asarray(n_low, jnp.float32)).astype(jnp.int32),
                jnp.floor(ratio * jnp.asarray(n_high, jnp.float32)).astype(jnp.int32))
    return int(float(keep_ratio) * int(n_low)), int(float(keep_ratio) * int(n_high))


def select_multires(
    low: Float[Array, "N_low d"],
    high: Float[Array, "N_high d"],
    k_low,
    k_high,
    *,
    low_valid: Bool[Array, "N_low"] | None = None,
    high_valid: Bool[Array, "N_high"] | None = None,
    threshold: float = 0.5,
    temperature: float = 0.03,
    steps: int = 5,
) -> tuple[Bool[Array, "N_low"], Bool[Array, "N_high"]]:
    """G-Prune on LLaVA-NeXT: each resolution pruned on its own graph (see `multires_budget`)."""
    where = "gprune.select_multires"
    keeps = []
    for x, k, valid, res in ((low, k_low, low_valid, "low"), (high, k_high, high_valid, "high")):
        _validate(x, k, valid, threshold, temperature, steps, where, res, f"{res}_valid", f"k_{res}")
        valid = jnp.ones((x.shape[0],), jnp.bool_) if valid is None else jnp.asarray(valid)
        keeps.append(topk_mask(_scores_core(x, valid, threshold, temperature, steps=steps), k, valid))
    return keeps[0], keeps[1]



def _budget(spec, counts):
    pairs = [multires_budget(spec.keep_ratio, int(nb), int(nt)) for nb, nt in zip(counts.base, counts.tile)]
    low = np.array([lo for lo, _ in pairs], np.int64).reshape(counts.base.shape)
    high = np.array([hi for _, hi in pairs], np.int64).reshape(counts.base.shape)
    return declaration.Budget(low + high, low, high)


def _select_sample(options, s):
    low, high = select_multires(
        s.x, s.x, s.keep_low, s.keep_high, low_valid=s.valid & s.low, high_valid=s.valid & s.high,
        threshold=options["threshold"], temperature=options["temperature"], steps=options["steps"],
    )
    return low | high, jnp.zeros_like(s.valid)


def _flops(spec, n, width, text, tokens):
    return 2 * declaration.graph_flops(n, width) + 2.0 * spec.steps * np.square(np.asarray(n, float))


METHOD = declaration.Method(
    name="gprune",
    stage=declaration.BEFORE_LLM,
    options={
        "threshold": (0.5, declaration.COSINE),
        "temperature": (0.03, declaration.POSITIVE),
        "steps": (5, declaration.integer("an integer >= 1", 1)),
    },
    select=_select_sample,
    budget=_budget,
    flops=_flops,
    multi_resolution=True,
)

__all__ = ["METHOD", "multires_budget", "scores", "select", "select_multires"]
