"""NumPy reference of Hi-Lo Prune stage 1 (hierarchical selection), from its spec (jax_pruning/methods/hilo.py) and the
documented reading in jax_pruning.methods.hilo (no JAX, no padding; explicit per-window loops).
"""

from __future__ import annotations

import numpy as np

from tests.reference.np_ops import F32, apportion, cosine, l2_norm, threshold_graph, topk_mask


def select(x, row, col, k, m, *, window=2, threshold=0.5, coarse=True, candidates=True):
    """Returns (retained, candidates, dropped) bool masks."""
    x = np.asarray(x, F32)
    n = len(x)
    info = l2_norm(x)
    retained = np.zeros(n, bool)
    if coarse:
        n_window_cols = int(np.max(col)) // window + 1 if n else 1
        win = (np.asarray(row) // window) * n_window_cols + np.asarray(col) // window
        count = np.bincount(win, minlength=n)[:n]
        score = np.zeros(n, F32)
        for w in np.unique(win):
            score[w] = info[win == w].mean(dtype=F32)  # window score = mean I
        share = apportion(score, k, count)
        for w in np.unique(win):
            members = np.flatnonzero(win == w)  # ascending index: ties go to the lower index
            a = threshold_graph(cosine(x[members], x[members]), threshold)  # graph within the window
            s = a @ info[members]  # S = A I
            retained[members[topk_mask(s, share[w])]] = True
    else:
        s = threshold_graph(cosine(x, x), threshold) @ info
        retained = topk_mask(s, k)
    cand = np.zeros(n, bool)
    if candidates:
        rest = np.flatnonzero(~retained)
        kept = np.flatnonzero(retained)
        loss = np.zeros(n, F32)
        for i in rest:
            best = cosine(x[i : i + 1], x[kept]).max() if kept.size else F32(-1)
            loss[i] = info[i] * (F32(1) - best)  # what R represents worst
        cand = topk_mask(loss, m, ~retained)
    return retained, cand, ~retained & ~cand
