"""NumPy reference for ToMe (bipartite soft matching), written from its spec (the method module's docstring).

Plain Python lists over the real tokens, float64, no padding tricks: the
independent check for jax_pruning.methods.tome.merge.
"""

import numpy as np


def tome_merge(x, k, valid=None):
    """Merge the valid tokens of x [N, d] down to min(k, n_valid).

    Returns (merged [k, d], size [k], index [k], slot_valid [k]) like tome.merge:
    surviving tokens in original order; a slot's index is the original position
    of the token that survived (a merge destination keeps its own position).
    """
    x = np.asarray(x, np.float64)
    n_total, d = x.shape
    valid = np.ones(n_total, bool) if valid is None else np.asarray(valid, bool)
    # Each token: [original position, size-weighted feature sum, size].
    tokens = [[i, x[i].copy(), 1.0] for i in range(n_total) if valid[i]]
    target = min(k, len(tokens))
    while len(tokens) > target:
        side_a, side_b = tokens[0::2], tokens[1::2]  # alternate over the current tokens
        r = min(len(tokens) - target, len(side_a))
        best = []
        for _, sum_a, size_a in side_a:
            sims = [_cosine(sum_a / size_a, sum_b / size_b) for _, sum_b, size_b in side_b]
            j = int(np.argmax(sims))  # first maximum: ties to the lower index
            best.append((sims[j], j))
        # Top-r A tokens by their best similarity, ties to the lower index (stable sort).
        order = sorted(range(len(side_a)), key=lambda a: -best[a][0])[:r]
        merged_away = set(order)
        for a in sorted(order):
            _, j = best[a]
            side_b[j][1] = side_b[j][1] + side_a[a][1]
            side_b[j][2] = side_b[j][2] + side_a[a][2]
        survivors = [t for a, t in enumerate(side_a) if a not in merged_away] + side_b
        tokens = sorted(survivors, key=lambda t: t[0])
    merged = np.zeros((k, d))
    size = np.zeros(k)
    index = np.zeros(k, np.int64)
    slot_valid = np.zeros(k, bool)
    for slot, (pos, total, count) in enumerate(tokens):
        merged[slot] = total / count
        size[slot] = count
        index[slot] = pos
        slot_valid[slot] = True
    return merged, size, index, slot_valid


def _cosine(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(a @ b / (na * nb))
