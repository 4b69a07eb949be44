"""NumPy reference of CDPruner in float64, from the official algorithm (no JAX).

Independent of the JAX code's order of operations: the full kernel
L = diag(r) S diag(r) is formed over the real tokens (as the official code
does) and the Chen et al. greedy reads its rows; the picked set is a Python
list. The choices documented in jax_pruning.methods.cdpruner are followed:
mean instruction embedding, min-max over the real tokens (r = 1 without
contrast), S_ii = 1 exactly, a token stops being a candidate when its gain is
<= epsilon * its L_ii, the greedy stops without candidates (or after max_k
picks) and the rest of the budget goes by relevance (ties to the lower
index). Padding rows are dropped first.
"""

from __future__ import annotations

import numpy as np

OFFSET = 1e-6


def _unit(x):
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def relevance(x, instruction, instruction_valid=None, negate_relevance=True, theta=None):
    """r over the rows of x (all real): min-max normalised (+-)cos(x_i, mean instruction), then exp(alpha r)."""
    t = np.asarray(instruction, np.float64)
    if t.ndim == 2:
        rows = np.ones(len(t), bool) if instruction_valid is None else np.asarray(instruction_valid, bool)
        t = t[rows].mean(axis=0)
    c = _unit(np.asarray(x, np.float64)) @ _unit(t)
    if negate_relevance:
        c = -c
    span = c.max() - c.min() if c.size else 0.0
    r = (c - c.min() + OFFSET) / span if span > 0 else np.ones_like(c)
    if theta is not None:
        r = np.exp(theta / (2 * (1 - theta)) * r)
    return r


def pick_order(x, instruction, k, valid=None, instruction_valid=None, *, negate_relevance=True, theta=None,
               use_relevance=True, epsilon=1e-4, max_k=None):
    """(greedy picks in order as indices into x, fill picks); ([], []) when k >= n_valid."""
    x = np.asarray(x, np.float64)
    valid = np.ones(len(x), bool) if valid is None else np.asarray(valid, bool)
    index = np.flatnonzero(valid)
    n = index.size
    k = int(k)
    if k >= n:
        return [], []
    xv = x[index]
    unit = _unit(xv)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, (np.abs(unit).sum(axis=1) > 0).astype(np.float64))  # S_ii = 1 exactly (0: zero row)
    if use_relevance:
        r = relevance(xv, instruction, instruction_valid, negate_relevance, theta)
    else:
        r = np.ones(n)
    kernel = r[:, None] * similarity * r[None, :]
    gains = np.diag(kernel).copy()
    floor = epsilon * np.diag(kernel)
    steps = min(k, n if max_k is None else max_k)
    factor = np.zeros((steps, n))  # Cholesky factor rows (Chen et al.'s c_i vectors)
    picked = []
    for i in range(steps):
        usable = ~np.isin(np.arange(n), picked) & (gains > floor)
        if not usable.any():
            break
        candidates = np.where(usable, gains, -np.inf)
        j = int(np.argmax(candidates))  # first maximum
        e = (kernel[j] - factor[:i, j] @ factor[:i]) / np.sqrt(candidates[j])
        factor[i] = e
        gains -= e * e
        picked.append(j)
    rest = sorted((i for i in range(n) if i not in picked), key=lambda i: (-r[i], i))[: k - len(picked)]
    return [int(index[j]) for j in picked], [int(index[j]) for j in rest]


def select(x, instruction, k, valid=None, instruction_valid=None, **options) -> np.ndarray:
    """Keep mask with min(k, n_valid) True."""
    valid = np.ones(len(x), bool) if valid is None else np.asarray(valid, bool)
    if int(k) >= valid.sum():
        return valid.copy()
    greedy, fill = pick_order(x, instruction, k, valid, instruction_valid, **options)
    keep = np.zeros(len(valid), bool)
    keep[greedy + fill] = True
    return keep
