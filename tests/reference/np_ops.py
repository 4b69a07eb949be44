"""NumPy reference of the shared selection/graph primitives (no JAX).

Written from the method specs (module docstrings) and the ops contracts in plain NumPy/Python, as an
independent second implementation: sorting by Python keys instead of a
multi-key XLA sort, explicit loops for the budget apportionment.
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def topk_mask(scores, k, valid=None) -> np.ndarray:
    """min(k, n_valid) best valid positions; ties to the lower index; NaN ranks as -inf."""
    scores = np.asarray(scores, F32)
    n = scores.shape[0]
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    clean = [(-math.inf if math.isnan(s) else float(s)) for s in scores]
    candidates = sorted((i for i in range(n) if valid[i]), key=lambda i: (-clean[i], i))
    keep = np.zeros(n, bool)
    keep[candidates[: max(int(k), 0)]] = True
    return keep


def l2_norm(x) -> np.ndarray:
    x = np.asarray(x, F32)
    return np.sqrt((x * x).sum(axis=-1, dtype=F32)).astype(F32)


def cosine(a, b) -> np.ndarray:
    """Cosine similarity; a zero vector has cosine 0 with everything."""
    def unit(x):
        x = np.asarray(x, F32)
        n = l2_norm(x)[:, None]
        return (x / np.where(n > 0, n, F32(1))).astype(F32)

    return (unit(a) @ unit(b).T).astype(F32)


def threshold_graph(sim, threshold) -> np.ndarray:
    sim = np.asarray(sim, F32)
    return np.where(sim >= threshold, sim, F32(0)).astype(F32)


def softmax_graph(sim, threshold, temperature, col_valid=None):
    """Official code: a[a<s]=0; a/=T; a[|a|<1e-6]=-5000; softmax over the valid columns; degree = #(A>0)."""
    sim = np.asarray(sim, F32)
    n, m = sim.shape
    col_valid = np.ones(m, bool) if col_valid is None else np.asarray(col_valid, bool)
    a = sim.copy()
    a[a < threshold] = 0
    a = (a / F32(temperature)).astype(F32)
    a[np.abs(a) < 1e-6] = -5000
    adjacency = np.zeros((n, m), F32)
    cols = np.flatnonzero(col_valid)
    if cols.size:
        sub = a[:, cols]
        e = np.exp(sub - sub.max(axis=1, keepdims=True)).astype(F32)
        adjacency[:, cols] = e / e.sum(axis=1, keepdims=True)
    degree = (adjacency > 0).sum(axis=1).astype(F32)
    return adjacency, degree


def window_index(row, col, window, n_window_cols) -> np.ndarray:
    return (np.asarray(row) // window) * n_window_cols + np.asarray(col) // window


def apportion(weights, total, capacity) -> np.ndarray:
    """Largest-remainder split of `total`, capped per bin, excess re-split over open bins."""
    capacity = np.maximum(np.asarray(capacity, np.int64), 0)
    w_all = np.asarray(weights, F32)
    w_all = np.where(np.isfinite(w_all) & (w_all > 0), w_all, F32(0)).astype(F32)
    share = np.zeros_like(capacity)
    remaining = int(total)
    while remaining > 0 and (share < capacity).any():
        open_bin = share < capacity
        w = np.where(open_bin, w_all, F32(0)).astype(F32)
        if w.sum(dtype=F32) <= 0:
            w = open_bin.astype(F32)
        quota = (F32(remaining) * w / w.sum(dtype=F32)).astype(F32)
        base = np.floor(quota).astype(np.int64)
        extra = topk_mask(quota - base.astype(F32), remaining - base.sum(), open_bin)
        alloc = base + extra
        given = np.minimum(alloc, capacity - share)
        share += given
        remaining -= int(given.sum())
    return share
