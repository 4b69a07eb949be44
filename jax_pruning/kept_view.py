"""A generate call's kept tokens drawn over its image (`jaxprune generate --show-kept`).

Turns the engine's per-slot labels and the model's VisualTokens map into one
2-D grid per resolution (LLaVA-NeXT: base and anyres tiles; Qwen: the merged
grid) and hands them to the overlay renderer. Newline tokens are not drawn.
"""

from __future__ import annotations

import numpy as np

from jax_pruning.engine import CANDIDATE, KEPT
from jax_pruning.eval import overlay
from models.visual_tokens import KIND_BASE, KIND_TILE


def grids_of(out, sample: int = 0, image: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """Per-resolution grids of engine labels for one image of one sample."""
    vt = out.visual
    valid = np.asarray(vt.valid)[sample] & (np.asarray(vt.image)[sample] == image)
    kind, row, col = (np.asarray(a)[sample] for a in (vt.kind, vt.row, vt.col))
    labels = np.asarray(out.visual_labels)[sample]
    grids, titles = [], []
    for k, title in ((KIND_BASE, "base"), (KIND_TILE, "tiles")):
        sel = valid & (kind == k)
        if not sel.any():
            continue
        grid = np.zeros((row[sel].max() + 1, col[sel].max() + 1), np.int8)
        grid[row[sel], col[sel]] = labels[sel]
        grids.append(grid)
        titles.append(f"{title}: {int((labels[sel] == KEPT).sum())}/{int(sel.sum())} kept")
    if not grids:
        raise ValueError(f"sample {sample} has no visual tokens of image {image}")
    return grids, titles


def save_kept_overlay(path, image, out, sample: int = 0):
    grids, titles = grids_of(out, sample)
    if any((g == CANDIDATE).any() for g in grids):  # Hi-Lo: retained / candidate / dropped
        to_overlay = {KEPT: overlay.RETAINED, CANDIDATE: overlay.CANDIDATE}
        labels = [np.vectorize(lambda v: to_overlay.get(int(v), overlay.DROPPED))(g).astype(np.int8) for g in grids]
        return overlay.save_overlay(image, path, labels=labels, titles=titles)
    return overlay.save_overlay(image, path, keep=[g == KEPT for g in grids], titles=titles)
