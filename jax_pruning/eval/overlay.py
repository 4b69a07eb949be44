"""Kept-token overlays: which visual tokens a pruner kept, drawn over the image.

The engine only passes plain NumPy arrays (a mask or a 3-way label per token,
flat or already shaped like its token grid) and the PIL image; this module
knows nothing about models. Two styles:

- keep masks (MR-Pruner, FastV, ...): one panel per grid, side by side (for
  LLaVA-NeXT: the base-image grid and the anyres tile grid); dropped tokens are
  darkened, kept tokens stay bright with a green outline.
- Hi-Lo labels: one panel per grid with three colours, retained (green),
  candidate (amber: kept for the merge stage) and dropped (dark red).

Every panel is the image stretched to `panel_size` x `panel_size`, with the
grid laid over it, so the file has a fixed size: width = n * panel_size +
(n - 1) * GAP, height = panel_size (+ TITLE_HEIGHT with titles).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

# The engine's per-slot label values (GenerateOutput.visual_labels), so its arrays pass through unchanged.
DROPPED, RETAINED, CANDIDATE = 0, 1, 2
LABEL_COLOURS = {RETAINED: (46, 204, 64), CANDIDATE: (255, 176, 0), DROPPED: (140, 20, 20)}
KEPT_OUTLINE = (46, 204, 64)
GAP = 8
TITLE_HEIGHT = 18


def _as_grids(arrays, grids, what: str) -> list[np.ndarray]:
    """Each array reshaped to its [rows, cols] grid (given in `grids` when the array is flat)."""
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, Sequence):
        arrays = [arrays]
    arrays = [np.asarray(a) for a in arrays]
    if grids is not None:
        grids = [tuple(grids)] if len(grids) and np.isscalar(grids[0]) else [tuple(g) for g in grids]
        if len(grids) != len(arrays):
            raise ValueError(f"{what}: {len(arrays)} arrays but {len(grids)} grid shapes")
    out = []
    for i, array in enumerate(arrays):
        shape = grids[i] if grids is not None else array.shape
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"{what}[{i}]: need a 2-D [rows, cols] grid, got shape {tuple(shape)} "
                             "(pass grids=[(rows, cols), ...] for flat arrays)")
        if array.size != shape[0] * shape[1]:
            raise ValueError(f"{what}[{i}]: {array.size} tokens do not fill a {shape[0]}x{shape[1]} grid")
        out.append(array.reshape(shape))
    return out


def _cell_edges(n: int, size: int) -> np.ndarray:
    return np.round(np.linspace(0, size, n + 1)).astype(int)


def _tint(panel: np.ndarray, rows: np.ndarray, cols: np.ndarray, r: int, c: int, colour, alpha: float) -> None:
    y0, y1, x0, x1 = rows[r], rows[r + 1], cols[c], cols[c + 1]
    cell = panel[y0:y1, x0:x1].astype(np.float32)
    panel[y0:y1, x0:x1] = (cell * (1 - alpha) + np.asarray(colour, np.float32) * alpha).astype(np.uint8)


def _render_panel(image: Image.Image, grid: np.ndarray, size: int, *, labels: bool) -> Image.Image:
    """One panel: the image at size x size with each grid cell tinted by its mask value or label."""
    panel = np.array(image.convert("RGB").resize((size, size), Image.BILINEAR))
    rows, cols = _cell_edges(grid.shape[0], size), _cell_edges(grid.shape[1], size)
    for r in range(grid.shape[0]):
        for c in range(grid.shape[1]):
            if labels:
                alpha = 0.35 if grid[r, c] != DROPPED else 0.6
                _tint(panel, rows, cols, r, c, LABEL_COLOURS[int(grid[r, c])], alpha)
            elif not grid[r, c]:
                _tint(panel, rows, cols, r, c, (0, 0, 0), 0.7)
    out = Image.fromarray(panel)
    if not labels:
        draw = ImageDraw.Draw(out)
        for r, c in zip(*np.nonzero(grid)):
            draw.rectangle([cols[c], rows[r], cols[c + 1] - 1, rows[r + 1] - 1], outline=KEPT_OUTLINE)
    return out


def save_overlay(image: Image.Image, path: str | os.PathLike, *, keep=None, labels=None, grids=None,
                 titles: Sequence[str] | None = None, panel_size: int = 336) -> Path:
    """Write a kept-token overlay PNG and return its path.

    keep:   bool array, or a list of them (one per grid: e.g. [base, tiles]), [rows, cols] or flat
    labels: int array(s) with DROPPED=0 / RETAINED=1 / CANDIDATE=2 (Hi-Lo), same layouts
    grids:  (rows, cols) or a list of them, needed when the arrays are flat
    Exactly one of `keep` / `labels`.
    """
    if (keep is None) == (labels is None):
        raise ValueError("save_overlay: pass exactly one of keep= (bool masks) or labels= (Hi-Lo 3-way labels)")
    if not isinstance(image, Image.Image):
        raise ValueError(f"save_overlay: image must be a PIL image, got {type(image).__name__}")
    if panel_size < 8:
        raise ValueError(f"save_overlay: panel_size must be >= 8 pixels, got {panel_size}")
    use_labels = labels is not None
    panels = _as_grids(labels if use_labels else keep, grids, "labels" if use_labels else "keep")
    for i, grid in enumerate(panels):
        if use_labels:
            bad = ~np.isin(grid, (DROPPED, CANDIDATE, RETAINED))
            if bad.any():
                raise ValueError(f"labels[{i}]: values must be 0 (dropped), 1 (retained) or 2 (candidate), "
                                 f"got {sorted(set(grid[bad].tolist()))}")
        elif grid.dtype != np.bool_:
            raise ValueError(f"keep[{i}]: need a bool mask, got dtype {grid.dtype}")
    if titles is not None and len(titles) != len(panels):
        raise ValueError(f"save_overlay: {len(titles)} titles for {len(panels)} panels")

    top = TITLE_HEIGHT if titles else 0
    width = len(panels) * panel_size + (len(panels) - 1) * GAP
    canvas = Image.new("RGB", (width, panel_size + top), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, grid in enumerate(panels):
        x = i * (panel_size + GAP)
        canvas.paste(_render_panel(image, grid, panel_size, labels=use_labels), (x, top))
        if titles:
            draw.text((x + 2, 2), str(titles[i]), fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def label_grids(visual, labels: np.ndarray, *, sample: int = 0, image: int = 0) -> list[tuple[str, np.ndarray]]:
    """Per-slot engine labels of one image -> [(kind name, [rows, cols] label grid)], base grid first.

    `visual` is the model's VisualTokens map (kind/row/col/image/valid [B, Nv], grid_rows/grid_cols
    [B, I, 2] indexed by kind) and `labels` [B, Nv] the engine's DROPPED/RETAINED/CANDIDATE per slot.
    LLaVA-NeXT newline tokens have no grid cell and are left out; a cell no token lands on stays DROPPED.
    """
    from models.visual_tokens import KIND_BASE, KIND_TILE

    labels = np.asarray(labels)
    valid, kinds = np.asarray(visual.valid)[sample], np.asarray(visual.kind)[sample]
    rows, cols = np.asarray(visual.row)[sample], np.asarray(visual.col)[sample]
    mine = valid & (np.asarray(visual.image)[sample] == image)
    if not mine.any():
        raise ValueError(f"sample {sample} has no visual tokens of image {image}")
    out = []
    for kind, name in ((KIND_BASE, "base"), (KIND_TILE, "tiles")):
        slots = np.nonzero(mine & (kinds == kind))[0]
        if not len(slots):
            continue
        shape = (max(int(np.asarray(visual.grid_rows)[sample, image, kind]), int(rows[slots].max()) + 1),
                 max(int(np.asarray(visual.grid_cols)[sample, image, kind]), int(cols[slots].max()) + 1))
        grid = np.full(shape, DROPPED, np.int8)
        grid[rows[slots], cols[slots]] = labels[sample, slots]
        out.append((name, grid))
    return out


def save_kept_overlay(path: str | os.PathLike, image: Image.Image, out, *, sample: int = 0, image_index: int = 0,
                      panel_size: int = 336) -> Path:
    """Overlay for one sample of a `jp.generate` output (needs out.visual and out.visual_labels).

    Hi-Lo outputs (any CANDIDATE slot) get the three-colour style; every other method a keep mask
    per grid (LLaVA-NeXT: base and tiles side by side).
    """
    if getattr(out, "visual", None) is None or getattr(out, "visual_labels", None) is None:
        raise ValueError("save_kept_overlay: the generate output carries no visual map / visual_labels")
    grids = label_grids(out.visual, out.visual_labels, sample=sample, image=image_index)
    arrays = [g for _, g in grids]
    titles = [f"{name} {g.shape[0]}x{g.shape[1]}: kept {int(np.sum(g == RETAINED))}/{g.size}" for name, g in grids]
    if any((g == CANDIDATE).any() for g in arrays):
        return save_overlay(image, path, labels=arrays, titles=titles, panel_size=panel_size)
    return save_overlay(image, path, keep=[g == RETAINED for g in arrays], titles=titles, panel_size=panel_size)
