"""G-Prune scoring for one resolution, transliterated to PyTorch.

No public G-Prune repository is available here; this follows the G-Prune
lineage as it survives in the MR-Pruner code (github.com/gooriiie/MR-Pruner,
llava/model/llava_arch.py, `build_affinity` with `iterate_num`): softmax
temperature graph with the -5000 fill, degree counted before the power,
A <- matrix_power(A, n), score = (W @ A) / degree, top int(ratio * N).
`power="vector"` computes W @ A^n as n vector-matrix products instead (same
maths, our JAX strategy) to separate the algorithmic from the framework gain.
"""

import torch


@torch.inference_mode()
def select(features, keep_ratio=0.1, similarity=0.5, temperature=0.03, steps=5, power="matrix"):
    """features [N, d] -> kept indices (int64, sorted)."""
    feat = torch.nn.functional.normalize(features, p=2, dim=1)
    a = (feat @ feat.t()).clone()
    a[a < similarity] = 0
    a = a / temperature
    a[torch.abs(a) < 1e-6] = -5000
    a = torch.nn.functional.softmax(a, dim=1)
    degree = torch.sum(a > 0, dim=1)
    w = torch.norm(features, dim=-1, keepdim=True).to(dtype=a.dtype).T  # [1, N]
    if power == "matrix":
        if steps > 1:
            a = torch.matrix_power(a, steps)
        score = (w @ a) / degree
    else:
        for _ in range(steps):
            w = w @ a
        score = w / degree
    k = int(keep_ratio * features.shape[0])
    return torch.sort(score.topk(k).indices.squeeze(0))[0]
