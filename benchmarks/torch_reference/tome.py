"""ToMe merging until k tokens remain, in PyTorch, in the style of the official code.

Follows the structure of `bipartite_soft_matching` + `merge_wavg` in
github.com/facebookresearch/ToMe (tome/merge.py): normalise the metric, split
a = [::2], b = [1::2], scores = a @ b^T, best match per a, sort a by it, merge
the top r into b with a sum scatter of size-weighted features. Adapted to our
spec (the docstring of jax_pruning/methods/tome.py): repeated until k remain with
r = min(n - k, |a|), survivors put back in original order after each step
(the official code concatenates [unmerged a, b]), stable sort so ties go to
the lower index, metric = the merged tokens themselves.
"""

import torch


@torch.inference_mode()
def merge(x, k):
    """x [N, d] -> (merged [k, d], size [k], index [k]) in original order."""
    n = x.shape[0]
    sums = x.clone()
    size = torch.ones(n, dtype=x.dtype)
    pos = torch.arange(n)
    while sums.shape[0] > k:
        t = sums.shape[0]
        metric = sums / sums.norm(dim=-1, keepdim=True)
        a, b = metric[0::2], metric[1::2]
        scores = a @ b.T
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = torch.sort(node_max, descending=True, stable=True).indices
        r = min(t - k, a.shape[0])
        unm_idx, src_idx = edge_idx[r:], edge_idx[:r]
        dst_idx = node_idx[src_idx]

        src_sums, dst_sums = sums[0::2], sums[1::2].clone()
        src_size, dst_size = size[0::2], size[1::2].clone()
        dst_sums.index_add_(0, dst_idx, src_sums[src_idx])
        dst_size.index_add_(0, dst_idx, src_size[src_idx])
        sums = torch.cat([src_sums[unm_idx], dst_sums])
        size = torch.cat([src_size[unm_idx], dst_size])
        pos = torch.cat([pos[0::2][unm_idx], pos[1::2]])
        order = torch.argsort(pos)  # back to original order
        sums, size, pos = sums[order], size[order], pos[order]
    return sums / size[:, None], size, pos
