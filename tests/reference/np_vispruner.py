"""NumPy reference of VisPruner in float64, from the upstream algorithm (no JAX).

Follows upstream `encode_images` (Theia-4869/VisPruner, llava/model/llava_arch.py,
commit aefa01adc7c7) on Python lists of the real tokens: head-mean CLS row,
stable descending sort (ties to the lower index), important = first
int(k * ratio), then the matching-and-pruning rounds on the residual list
kept in its current order. Documented extensions of
jax_pruning.methods.vispruner: odd R (A = even positions, one more than B),
r capped at |A|, score ties to the earlier A position (stable sort), zero-norm
features have cosine 0, padding rows dropped first.
"""

from __future__ import annotations

import numpy as np


def select(cls_attention, features, k, important_ratio=0.5, valid=None, similarity=None):
    """Keep mask [N]. `similarity` [N, N] replaces the float64 cosine matrix of `features` when given
    (tests pass float32 cosines of continuous features, whose last bits the rounds are sensitive to)."""
    cls_attention = np.asarray(cls_attention, np.float64)
    features = np.asarray(features, np.float64)
    n = features.shape[0]
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    real = [i for i in range(n) if valid[i]]
    budget = min(int(k), len(real))
    important_num = int(budget * important_ratio)
    diverse_num = budget - important_num

    head_mean = {i: float(np.mean(cls_attention[:, i])) for i in real}
    order = sorted(real, key=lambda i: (-head_mean[i], i))
    important, residual = order[:important_num], order[important_num:]

    if similarity is None:
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        unit = features / np.where(norms > 0, norms, 1.0)
        similarity = unit @ unit.T
    similarity = np.asarray(similarity)
    while diverse_num > 0:
        size = len(residual)
        a, b = residual[0::2], residual[1::2]
        r = min(8, size - diverse_num, len(a))
        if r <= 0:
            break
        scores = np.take(np.take(similarity, a, axis=0), b, axis=1).max(axis=1)
        ranked = np.argsort(-scores, kind="stable")  # descending, earlier A position first on ties
        residual = [a[j] for j in ranked[r:]] + b

    keep = np.zeros(n, bool)
    keep[important] = True
    if diverse_num > 0:
        keep[residual] = True
    return keep
