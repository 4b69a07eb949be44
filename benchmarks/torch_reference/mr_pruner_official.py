"""MR-Pruner official scoring, transliterated to a standalone PyTorch function.

Follows the public MR-Pruner code: github.com/gooriiie/MR-Pruner,
llava/model/llava_arch.py, `prepare_inputs_labels_for_multimodal` (the block
after the anyres/unpad feature assembly: build_affinity, budget split, high
first, cross graph to the pruned high tokens, low with beta * propagated).
Same operations in the same order, on the same input layout: the base image's
tokens followed by rows x (cols + 1) tile tokens whose last column is the
image_newline token. Returns the kept indices into that layout (newlines kept).
"""

import torch


@torch.inference_mode()
def select(image_feature, rows, cols, keep_ratio=0.1, similarity=0.5, cross_similarity=0.5,
           temperature=0.03, beta=0.5, n_base=576, iterate_num=1):
    """image_feature [n_base + rows*(cols+1), d] -> sorted kept indices (int64)."""
    device = image_feature.device
    length_low = n_base
    length_high = rows * (cols + 1)
    newline = torch.zeros(rows, cols + 1, device=device)
    newline[:, -1] = 1
    newline = newline.view(-1)
    index_low = torch.arange(0, length_low, device=device)
    index_high = torch.where(newline == 0)[0] + length_low
    index_newline = torch.where(newline == 1)[0] + length_low

    feat_low = torch.nn.functional.normalize(image_feature[index_low], p=2, dim=1)
    feat_high = torch.nn.functional.normalize(image_feature[index_high], p=2, dim=1)

    def affinity(feat, index):
        a = (feat @ feat.t()).clone()
        a[a < similarity] = 0
        a = a / temperature
        a[torch.abs(a) < 1e-6] = -5000
        a = torch.nn.functional.softmax(a, dim=1)
        degree = torch.sum(a > 0, dim=1)
        if iterate_num > 1:
            a = torch.matrix_power(a, iterate_num)
        w = torch.norm(image_feature[index], dim=-1, keepdim=True).to(dtype=a.dtype).T  # [1, N]
        return a, degree, w

    a_low, degree_low, w_low = affinity(feat_low, index_low)
    a_high, degree_high, w_high = affinity(feat_high, index_high)

    mean_low, mean_high = w_low.mean(), w_high.mean()
    total_keep = int(keep_ratio * (length_low + length_high))
    k_low = min(int(total_keep * (mean_low / (mean_low + mean_high))), n_base)
    k_high = min(total_keep - k_low, rows * cols)

    score_high = (w_high @ a_high) / degree_high
    top_high = score_high.topk(k_high).indices.squeeze(0)
    keep_high = index_high[top_high]

    n_high = index_high.numel()
    pruned = torch.ones(n_high, dtype=torch.bool, device=device)
    pruned[top_high] = False
    pruned_idx = torch.arange(n_high, device=device)[pruned]

    cross = (feat_low @ feat_high[pruned_idx].T).clone()
    cross[cross < cross_similarity] = 0
    cross = cross / temperature
    cross[torch.abs(cross) < 1e-6] = -5000
    cross = torch.nn.functional.softmax(cross, dim=1)
    degree_cross = torch.sum(cross > 0, dim=1)
    propagated = (w_high[:, pruned_idx] @ cross.T) / degree_cross  # [1, N_low]

    score_low = (w_low @ a_low) / degree_low + beta * propagated
    keep_low = index_low[score_low.topk(k_low).indices.squeeze(0)]
    return torch.sort(torch.cat((keep_low, keep_high, index_newline)))[0]
