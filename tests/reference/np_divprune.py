"""NumPy reference of DivPrune in float64, from the official algorithm (no JAX).

Independent of the JAX code's order of operations: the full N x N distance
matrix D = 1 - cos is formed over the real tokens (as the official code
does), the first pick uses the second smallest entry of each column of D
(np.partition; the smallest is the token's own distance 0), and later picks
keep a running min over the rows of D of the picked tokens. Already picked
tokens are excluded (the documented choice of jax_pruning.methods.divprune);
ties to the lower index. Padding rows are dropped before anything else.
"""

from __future__ import annotations

import numpy as np


def _unit(x):
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def pick_order(x, k, valid=None) -> list[int]:
    """Indices (into x) of the greedy picks, in order; [] when k >= n_valid (everything is kept)."""
    x = np.asarray(x, np.float64)
    valid = np.ones(len(x), bool) if valid is None else np.asarray(valid, bool)
    index = np.flatnonzero(valid)
    n = index.size
    k = int(k)
    if k >= n:
        return []
    unit = _unit(x[index])
    dist = 1.0 - unit @ unit.T  # [n, n]
    if n == 1:
        first = np.array([np.inf])
    else:
        first = np.partition(dist, 1, axis=0)[1]  # second smallest per column: nearest other token
    picked = np.zeros(n, bool)
    order = []
    min_dist = None
    for step in range(k):
        score = first if step == 0 else min_dist
        j = int(np.argmax(np.where(picked, -np.inf, score)))  # first maximum
        picked[j] = True
        order.append(j)
        min_dist = dist[j].copy() if step == 0 else np.minimum(min_dist, dist[j])
    return [int(index[j]) for j in order]


def select(x, k, valid=None) -> np.ndarray:
    """Keep mask with min(k, n_valid) True."""
    valid = np.ones(len(x), bool) if valid is None else np.asarray(valid, bool)
    order = pick_order(x, k, valid)
    if int(k) >= valid.sum():
        return valid.copy()
    keep = np.zeros(len(valid), bool)
    keep[order] = True
    return keep
