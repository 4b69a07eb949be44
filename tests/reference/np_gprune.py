"""NumPy reference of G-Prune, straight from its spec (the method module's docstring) (no JAX, no padding).

Independent of the JAX code's order of operations: A^n is formed with
np.linalg.matrix_power here (the JAX code uses n vector-matrix products).
"""

from __future__ import annotations

import numpy as np

from tests.reference.np_ops import F32, cosine, l2_norm, softmax_graph, topk_mask


def scores(x, threshold=0.5, temperature=0.03, steps=5) -> np.ndarray:
    x = np.asarray(x, F32)
    adjacency, degree = softmax_graph(cosine(x, x), threshold, temperature)  # degree before the power
    power = np.linalg.matrix_power(adjacency, steps)  # float32, like the method
    return ((l2_norm(x) @ power) / degree).astype(F32)  # (W A^n) / degree


def select(x, k, **options) -> np.ndarray:
    return topk_mask(scores(x, **options), k)


def select_multires(low, high, keep_ratio, **options):
    """Each resolution keeps int(keep_ratio * N) of its own tokens."""
    return (select(low, int(keep_ratio * len(low)), **options),
            select(high, int(keep_ratio * len(high)), **options))
