"""NumPy reference of VisionZip in float64, from the upstream algorithm (no JAX).

Follows upstream `CLIPVisionTower_VisionZip.forward` (dvlab-research/VisionZip,
visionzip/clip_encoder.py, commit 3151f6df4fca) step by step on the list of
real tokens: head-summed CLS row, top tokens by a stable descending sort
(ties to the lower index), remaining tokens in index order, targets every
`step` ranks, argmax of normalised-key dot products (first maximum), and
target + mean(assigned). Documented extensions of jax_pruning.methods.visionzip:
fewer than `contextual` targets when fewer tokens remain; zero-norm keys have
cosine 0; padding rows are dropped first.
"""

from __future__ import annotations

import numpy as np


def select(cls_attention, keys, hidden, dominant, contextual, valid=None, cls_first=False):
    """(kept bool [N], contextual tokens [contextual, D], target index [contextual], slot valid [contextual])."""
    cls_attention = np.asarray(cls_attention, np.float64)
    keys = np.asarray(keys, np.float64)
    hidden = np.asarray(hidden, np.float64)
    n, d = hidden.shape
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    real = [i for i in range(n) if valid[i]]
    kept = np.zeros(n, bool)
    if cls_first:
        kept[0] = True
        candidates = [i for i in real if i != 0]
        quota = max(int(dominant) - 1, 0)
    else:
        candidates = real
        quota = int(dominant)
    head_sum = {i: float(np.sum(cls_attention[:, i])) for i in candidates}
    ranked = sorted(candidates, key=lambda i: (-head_sum[i], i))
    for i in ranked[:quota]:
        kept[i] = True

    remaining = [i for i in candidates if not kept[i]]  # index order, like masked_select upstream
    tokens = np.zeros((contextual, d))
    target_index = np.zeros(contextual, np.int64)
    slot_valid = np.zeros(contextual, bool)
    if contextual == 0 or not remaining:
        return kept, tokens, target_index, slot_valid
    step = max(1, len(remaining) // contextual)
    target_ranks = list(range(0, len(remaining), step))[:contextual]
    targets = [remaining[r] for r in target_ranks]
    others = [remaining[r] for r in range(len(remaining)) if r not in set(target_ranks)]

    def unit(v):
        norm = np.linalg.norm(v)
        return v / norm if norm > 0 else np.zeros_like(v)

    target_units = [unit(keys[t]) for t in targets]
    groups = [[] for _ in targets]
    for i in others:
        u = unit(keys[i])
        sims = [float(u @ t) for t in target_units]
        groups[int(np.argmax(sims))].append(i)  # first maximum
    for j, t in enumerate(targets):
        mean = hidden[groups[j]].mean(axis=0) if groups[j] else np.zeros(d)
        tokens[j] = hidden[t] + mean
        target_index[j] = t
        slot_valid[j] = True
    return kept, tokens, target_index, slot_valid


def received_attention(q, k, valid=None):
    """Dense [H, N]: per head, mean over valid queries of softmax(q k^T / sqrt(hd)) over valid keys."""
    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    n, heads, head_dim = q.shape
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    idx = np.flatnonzero(valid)
    out = np.zeros((heads, n))
    for h in range(heads):
        logits = q[idx, h] @ k[idx, h].T / np.sqrt(head_dim)  # [n_valid, n_valid]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        out[h, idx] = probs.mean(axis=0)
    return out
