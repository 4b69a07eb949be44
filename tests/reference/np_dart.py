"""NumPy reference for DART, written from the upstream algorithm (see jax_pruning/methods/dart.py docstring).

Plain Python/NumPy in the shape of the upstream `get_retained_image_token`:
Python sets of indices, one pivot at a time, float64 cosines over the still
free candidates, ties resolved by sorting (value, index) tuples. Two entry
points: `official` (contiguous image block, per-pivot quota computed from
`max_num_trunction` as upstream does) and `select` (the library contract:
an exact budget k over any visual mask with padding).
"""

from __future__ import annotations

import math

import numpy as np


def _l1(keys) -> np.ndarray:
    return np.abs(np.asarray(keys, np.float64)).sum(axis=1)


def _unit(hidden) -> np.ndarray:
    x = np.asarray(hidden, np.float64)
    norm = np.sqrt((x * x).sum(axis=1))
    return x / np.where(norm > 0, norm, 1.0)[:, None]


def _largest(values, candidates, count):
    """`count` candidates with the largest value, ties to the lower index."""
    return sorted(candidates, key=lambda i: (-values[i], i))[:count]


def _claim(unit, pivots_in_order, quotas, free):
    """Each pivot in turn takes its quota of the free tokens least cosine-similar to it."""
    free = set(free)
    kept = set()
    for pivot, quota in zip(pivots_in_order, quotas):
        order = sorted(free)
        sims = dict(zip(order, (unit[order] * unit[pivot]).sum(axis=1).tolist()))  # row-wise: equal rows, equal sims
        chosen = sorted(order, key=lambda i: (sims[i], i))[:quota]
        kept.update(chosen)
        free.difference_update(chosen)
    return kept


def official(hidden, keys, start, length, max_num_trunction=128, pivot_image_token=4, pivot_text_token=4):
    """Upstream LLaVA-1.5 rule on one sequence; returns the sorted kept image indices.

    Image block = [start, start + length); text pivots come from the tokens after it.
    Quota per pivot = ceil(M // P); image pivots are kept, text pivots are not.
    Pivots are visited in ascending position (upstream: Python set order).
    """
    l1 = _l1(keys)
    unit = _unit(hidden)
    image = list(range(start, start + length))
    query = list(range(start + length, len(l1)))
    image_pivots = _largest(l1, image, pivot_image_token)
    text_pivots = _largest(l1, query, pivot_text_token)
    quota = math.ceil(max_num_trunction // (pivot_image_token + pivot_text_token))
    pivots = sorted(set(image_pivots + text_pivots))
    kept = _claim(unit, pivots, [quota] * len(pivots), set(image) - set(image_pivots))
    kept.update(image_pivots)
    kept.difference_update(text_pivots)
    return sorted(kept)


def select(hidden, keys, visual, k, valid=None, image_pivots=4, text_pivots=4) -> np.ndarray:
    """Keep mask with exactly min(k, n_visual) visual positions (library contract)."""
    n = len(visual)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    visual_idx = [i for i in range(n) if visual[i] and valid[i]]
    keep = np.zeros(n, bool)
    if not visual_idx:
        return keep
    l1 = _l1(np.where(valid[:, None], keys, 0))
    unit = _unit(np.where(valid[:, None], hidden, 0))
    last = max(visual_idx)
    text_idx = [i for i in range(last + 1, n) if valid[i] and not visual[i]]
    img_pivots = _largest(l1, visual_idx, image_pivots)
    txt_pivots = _largest(l1, text_idx, text_pivots)
    budget = min(int(k), len(visual_idx))
    keep[img_pivots[:budget]] = True
    rest = max(budget - len(img_pivots), 0)
    pivots = sorted(img_pivots + txt_pivots)
    base, extra = divmod(rest, len(pivots))
    quotas = [base + (1 if j < extra else 0) for j in range(len(pivots))]
    kept = _claim(unit, pivots, quotas, set(visual_idx) - set(img_pivots))
    keep[sorted(kept)] = True
    return keep
