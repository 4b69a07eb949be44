"""NumPy reference for FastV scores and selection, written from its spec (the method module's docstring) (float64 loops)."""

import numpy as np


def fastv_scores(q_last, keys, key_valid=None):
    """Mean over heads of softmax_t(q_h · k_{t, h // group} / sqrt(hd)) over valid keys."""
    q = np.asarray(q_last, np.float64)
    kv = np.asarray(keys, np.float64)
    heads, head_dim = q.shape
    length, kv_heads, _ = kv.shape
    valid = np.ones(length, bool) if key_valid is None else np.asarray(key_valid, bool)
    group = heads // kv_heads
    total = np.zeros(length)
    for h in range(heads):
        logits = kv[:, h // group, :] @ q[h] / np.sqrt(head_dim)
        probs = np.zeros(length)
        ex = np.exp(logits[valid] - logits[valid].max())
        probs[valid] = ex / ex.sum()
        total += probs
    return total / heads


def fastv_select(scores, visual, k):
    """Top-k visual positions by score, ties to the lower index (stable sort)."""
    scores = np.asarray(scores, np.float64)
    candidates = [t for t in np.argsort(-scores, kind="stable") if visual[t]]
    keep = np.zeros(len(scores), bool)
    keep[candidates[:k]] = True
    return keep
