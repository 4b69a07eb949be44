"""NumPy reference of MR-Pruner, straight from its spec (the method module's docstring) (no JAX, no padding).

"paper": Algorithm 1. "official": the public code's graph/degree/budget rules.
Ablation switches follow the documented choices of jax_pruning.methods.mr_pruner
(IR off: score = L2 norm; CR off: no cross term; IA off: split by token counts).
Returns (keep_low, keep_high, score_low, score_high, k_low, k_high).
"""

from __future__ import annotations

import numpy as np

from tests.reference.np_ops import F32, cosine, l2_norm, softmax_graph, threshold_graph, topk_mask


def official_budget(keep_ratio, n_base, rows, cols) -> int:
    return int(keep_ratio * (n_base + rows * (cols + 1)))


def _ratio(part_mean, other_mean):
    """part / (part + other) in float32, or None when undefined (-> split by counts)."""
    total = F32(part_mean) + F32(other_mean)
    if not np.isfinite(total) or total <= 0:
        return None
    return F32(part_mean) / total


def _share(k, part_mean, other_mean, part_n, other_n, informativeness):
    ratio = _ratio(part_mean, other_mean) if informativeness else None
    if ratio is None:
        return (k * part_n) // (part_n + other_n) if part_n + other_n else 0
    return int(np.floor(F32(k) * ratio))


def select(low, high, k, variant="official", *, threshold=0.5, cross_threshold=0.5, temperature=0.03,
           alpha=0.3, beta=0.5, intra=True, cross=True, informativeness=True):
    low, high = np.asarray(low, F32), np.asarray(high, F32)
    n_low, n_high = len(low), len(high)
    i_low, i_high = l2_norm(low), l2_norm(high)
    mean_low = i_low.mean(dtype=F32) if n_low else F32(0)
    mean_high = i_high.mean(dtype=F32) if n_high else F32(0)

    if variant == "paper":
        # K^H = floor(K * Ī^H / (Ī^H + Ī^L)), K^L = K - K^H (clamped to what exists)
        k_high = _share(k, mean_high, mean_low, n_high, n_low, informativeness)
        k_high = min(max(k_high, k - n_low), n_high)
        k_low = min(k - k_high, n_low)
        if intra:
            s_high = threshold_graph(cosine(high, high), threshold) @ i_high  # S = A I
            s_low = threshold_graph(cosine(low, low), threshold) @ i_low
        else:
            s_high, s_low = i_high, i_low
        keep_high = topk_mask(s_high, k_high)
        pruned = np.flatnonzero(~keep_high)
        if cross and pruned.size:
            a_cross = threshold_graph(cosine(low, high[pruned]), cross_threshold)  # [N_low, |P^H|]
            s_low = s_low + F32(alpha) * (a_cross @ i_high[pruned])
    else:
        k_low = min(_share(k, mean_low, mean_high, n_low, n_high, informativeness), n_low)
        k_high = min(k - k_low, n_high)

        def intra_score(x, inf):
            adjacency, degree = softmax_graph(cosine(x, x), threshold, temperature)
            return (inf @ adjacency) / degree  # score_j = sum_i I_i A_ij / degree_j

        if intra:
            s_high, s_low = intra_score(high, i_high), intra_score(low, i_low)
        else:
            s_high, s_low = i_high, i_low
        keep_high = topk_mask(s_high, k_high)
        pruned = np.flatnonzero(~keep_high)
        if cross and pruned.size:
            c, degree = softmax_graph(cosine(low, high[pruned]), cross_threshold, temperature)
            propagated = (c @ i_high[pruned]) / degree  # sum_j I^H_j C_ij / degree_i
            s_low = s_low + F32(beta) * propagated
    keep_low = topk_mask(s_low, k_low)
    return keep_low, keep_high, np.asarray(s_low, F32), np.asarray(s_high, F32), k_low, k_high
