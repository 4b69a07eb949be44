"""Kept-token overlays: which visual tokens a pruner kept, drawn over the image as the papers draw it.

A kept token's cell shows the image exactly as it is; a dropped token's cell is
greyed and dimmed (DIM: the content stays faintly readable); a Hi-Lo candidate
(kept for the merge stage, removed later) is tinted amber; a merged token (ToMe,
VisionZip's contextual tokens: a kept slot holding an average) is tinted cyan,
and the tokens folded into merged ones are dimmed with a faint cyan. Every figure carries
a legend, and every panel a caption with its grid and kept count.

Geometry comes from `TokenView`s (eval/token_views.py): LLaVA-NeXT's base and
tile grids are both drawn on the original image (the tile grid placed where
unpad left it), Qwen-VL's grid on its resized image. A figure has one row per
method (title: method, keep ratio, tokens kept, answer) and one panel per grid.

    save_kept_overlay(path, image, out)                  one jp.generate output
    save_comparison(path, image, [(title, views), ...])  several methods, one row each
    save_overlay(image, path, keep=... | labels=...)     plain arrays (no engine)
    render_views(image, views)                            panels only (the HTML report)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jax_pruning.eval.token_views import ABSORBED, CANDIDATE, DROPPED, KEPT, LABELS, MERGED, TokenView, views_of_output

RETAINED = KEPT  # Hi-Lo's name for a kept token
DIM, DIM_TO = 0.35, 24.0  # dropped = DIM * grey(pixel) + (1 - DIM) * DIM_TO
AMBER, AMBER_ALPHA = (255, 176, 0), 0.45  # candidate = pixel tinted amber
CYAN, CYAN_ALPHA, ABSORBED_ALPHA = (0, 200, 230), 0.35, 0.30  # merged token; tokens merged into one (dimmed)
LABEL_NAMES = {KEPT: "kept (image as is)", CANDIDATE: "candidate (amber: merged, then removed)",
               MERGED: "merged token (cyan: an average of several)", ABSORBED: "merged away (dim cyan)",
               DROPPED: "dropped (greyed, dimmed)"}
GAP, PAD = 8, 6
CAPTION, TITLE, LEGEND = 16, 20, 22  # heights of a panel caption, a row title, the legend line
FONT_SIZE = 12


@functools.lru_cache(maxsize=4)
def font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib) at `size` px; Pillow's own font if it is missing."""
    import matplotlib

    path = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size)


def dimmed(pixels: np.ndarray) -> np.ndarray:
    grey = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat((DIM * grey + (1 - DIM) * DIM_TO)[..., None], 3, axis=-1)


def tinted(pixels: np.ndarray, colour=AMBER, alpha: float = AMBER_ALPHA) -> np.ndarray:
    return pixels.astype(np.float32) * (1 - alpha) + np.asarray(colour, np.float32) * alpha


def styled(pixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pixels [..., 3] styled by their token's label [..., 1]."""
    out = np.where(labels == KEPT, pixels, dimmed(pixels))
    out = np.where(labels == CANDIDATE, tinted(pixels), out)
    out = np.where(labels == MERGED, tinted(pixels, CYAN, CYAN_ALPHA), out)
    return np.where(labels == ABSORBED, tinted(dimmed(pixels), CYAN, ABSORBED_ALPHA), out)


def pixel_labels(view: TokenView, height: int, width: int) -> np.ndarray:
    """The label under each pixel of a height x width picture [height, width] (DROPPED outside the grid)."""
    ys, xs = view.edges(height, width)
    rows = np.searchsorted(ys, np.arange(height), side="right") - 1
    cols = np.searchsorted(xs, np.arange(width), side="right") - 1
    inside = (rows >= 0) & (rows < view.labels.shape[0])
    inside_c = (cols >= 0) & (cols < view.labels.shape[1])
    out = view.labels[np.clip(rows, 0, view.labels.shape[0] - 1)][:, np.clip(cols, 0, view.labels.shape[1] - 1)]
    return np.where(inside[:, None] & inside_c[None, :], out, DROPPED).astype(np.int8)


def panel_size_of(image: Image.Image, view: TokenView, panel_size: int) -> tuple[int, int]:
    """(width, height) of a panel: the display aspect fitted into panel_size x panel_size."""
    aspect = view.aspect if view.aspect else image.width / image.height
    if aspect >= 1:
        return panel_size, max(1, round(panel_size / aspect))
    return max(1, round(panel_size * aspect)), panel_size


def render_panel(image: Image.Image, view: TokenView, panel_size: int) -> Image.Image:
    """The image at the view's display geometry with each pixel styled by its token's label."""
    width, height = panel_size_of(image, view, panel_size)
    pixels = np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR))
    labels = pixel_labels(view, height, width)[..., None]
    return Image.fromarray(np.round(styled(pixels, labels)).astype(np.uint8))


def caption(view: TokenView) -> str:
    rows, cols = view.labels.shape
    text = f"{view.name} {rows}x{cols}: kept {view.kept}/{view.labels.size} ({100 * view.kept / view.labels.size:.0f}%)"
    text += f", {view.candidates} candidates" if view.candidates else ""
    return text + (f", {view.merged} merged" if view.merged else "")


def render_views(image: Image.Image, views: Sequence[TokenView], panel_size: int = 336, *,
                 captions: bool = True) -> Image.Image:
    """One image's panels side by side (LLaVA-NeXT: base | tiles), each with its caption above."""
    panels = [render_panel(image, v, panel_size) for v in views]
    top = CAPTION if captions else 0
    width = sum(p.width for p in panels) + GAP * (len(panels) - 1)
    canvas = Image.new("RGB", (width, top + max(p.height for p in panels)), (255, 255, 255))
    draw, x = ImageDraw.Draw(canvas), 0
    for view, panel in zip(views, panels):
        canvas.paste(panel, (x, top))
        if captions:
            draw.text((x, 1), caption(view), fill=(0, 0, 0), font=font())
        x += panel.width + GAP
    return canvas


def _swatch(label: int, size: int = 14) -> Image.Image:
    """A red-to-blue gradient in the style of `label`: shows what happens to any content."""
    ramp = np.linspace(0, 1, size, dtype=np.float32)[None, :, None]
    pixels = np.broadcast_to(ramp * [40, 90, 230] + (1 - ramp) * [230, 60, 40], (size, size, 3))
    return Image.fromarray(np.round(styled(pixels, np.full((size, size, 1), label))).astype(np.uint8))


def legend(labels: Sequence[int], width: int) -> Image.Image:
    """One line: a swatch and its meaning for each label shown."""
    canvas = Image.new("RGB", (width, LEGEND), (255, 255, 255))
    draw, x = ImageDraw.Draw(canvas), PAD
    for label in labels:
        canvas.paste(_swatch(label), (x, 4))
        draw.rectangle([x, 4, x + 13, 17], outline=(0, 0, 0))
        x += 18
        draw.text((x, 4), LABEL_NAMES[label], fill=(0, 0, 0), font=font())
        x += int(draw.textlength(LABEL_NAMES[label], font=font())) + 14
    return canvas


def legend_width(labels: Sequence[int]) -> int:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return PAD + sum(18 + int(draw.textlength(LABEL_NAMES[x], font=font())) + 14 for x in labels)


def figure(image: Image.Image, rows: Sequence[tuple[str | None, Sequence[TokenView]]],
           panel_size: int = 336) -> Image.Image:
    """Rows of (title, views): each row the method's panels under its title; the legend at the bottom."""
    if not rows:
        raise ValueError("figure: no rows to draw")
    blocks = []
    for title, views in rows:
        if not views:
            raise ValueError(f"figure: row {title!r} has no token views")
        block = render_views(image, views, panel_size)
        if title:
            titled = Image.new("RGB", (block.width, TITLE + block.height), (255, 255, 255))
            ImageDraw.Draw(titled).text((0, 3), title, fill=(0, 0, 0), font=font(13))
            titled.paste(block, (0, TITLE))
            block = titled
        blocks.append(block)
    present = {int(x) for _, views in rows for v in views for x in np.unique(v.labels)}
    shown = [x for x in (KEPT, CANDIDATE, MERGED, ABSORBED, DROPPED) if x in (KEPT, DROPPED) or x in present]
    width = max(max(b.width for b in blocks), legend_width(shown)) + 2 * PAD
    height = sum(b.height for b in blocks) + GAP * (len(blocks) - 1) + 2 * PAD + LEGEND
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    y = PAD
    for block in blocks:
        canvas.paste(block, (PAD, y))
        y += block.height + GAP
    canvas.paste(legend(shown, width), (0, height - PAD - LEGEND))
    return canvas


def _save(canvas: Image.Image, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path


def method_title(stats: dict, visual_tokens: int | None = None, answer: str | None = None) -> str:
    """'mr_pruner · keep 0.1 · 48/336 visual tokens · answer "red"' from a generate output's stats."""
    method, keep = stats.get("method", "?"), stats.get("keep_ratio")
    parts = [str(method) if method != "none" else "unpruned"]
    if method != "none" and keep is not None:
        parts.append(f"keep {keep:g}")
    before, newlines = stats.get("visual_tokens_before"), stats.get("newlines")
    if visual_tokens is not None and before is not None:
        lines = int(np.asarray(newlines).ravel()[0]) if newlines is not None and np.size(newlines) else 0
        parts.append(f"{int(visual_tokens)}/{int(np.asarray(before).ravel()[0])} visual tokens"
                     + (f" (incl. {lines} newlines, always kept)" if lines else ""))
    if answer is not None:
        parts.append(f'answer "{answer}"')
    return " · ".join(parts)


def save_kept_overlay(path: str | os.PathLike, image: Image.Image, out, *, sample: int = 0, image_index: int = 0,
                      panel_size: int = 336, config=None, title: str | None = None) -> Path:
    """Overlay PNG of one sample of a `jp.generate` output (LLaVA-NeXT: base and tiles side by side).
    With `config` (model.config) the tile grid sits exactly where unpad left it on the original image."""
    views = views_of_output(out, sample=sample, image=image_index, image_hw=(image.height, image.width),
                            config=config)
    if title is None and isinstance(getattr(out, "stats", None), dict):
        title = method_title(out.stats, int(np.asarray(out.visual_tokens)[sample]))
    return _save(figure(image, [(title, views)], panel_size), path)


def save_comparison(path: str | os.PathLike, image: Image.Image,
                    rows: Sequence[tuple[str | None, Sequence[TokenView]]], panel_size: int = 336) -> Path:
    """Several methods on one image: one row (title, views) per method, one legend."""
    return _save(figure(image, rows, panel_size), path)


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


def save_overlay(image: Image.Image, path: str | os.PathLike, *, keep=None, labels=None, grids=None,
                 titles: Sequence[str] | None = None, panel_size: int = 336, title: str | None = None) -> Path:
    """Overlay PNG from plain arrays (no engine), each grid covering the whole image.

    keep:   bool array, or a list of them (one per grid: e.g. [base, tiles]), [rows, cols] or flat
    labels: int array(s) with DROPPED=0 / KEPT=1 / CANDIDATE=2 (Hi-Lo) / MERGED=3 / ABSORBED=4, same layouts
    grids:  (rows, cols) or a list of them, needed when the arrays are flat
    titles: a name per grid (its caption starts with it); title: the figure's row title
    Exactly one of `keep` / `labels`.
    """
    if (keep is None) == (labels is None):
        raise ValueError("save_overlay: pass exactly one of keep= (bool masks) or labels= (Hi-Lo 3-way labels)")
    if not isinstance(image, Image.Image):
        raise ValueError(f"save_overlay: image must be a PIL image, got {type(image).__name__}")
    if panel_size < 8:
        raise ValueError(f"save_overlay: panel_size must be >= 8 pixels, got {panel_size}")
    use_labels = labels is not None
    arrays = _as_grids(labels if use_labels else keep, grids, "labels" if use_labels else "keep")
    for i, grid in enumerate(arrays):
        if use_labels:
            bad = ~np.isin(grid, LABELS)
            if bad.any():
                raise ValueError(f"labels[{i}]: values must be 0 (dropped), 1 (kept), 2 (candidate), 3 (merged) or "
                                 f"4 (merged away), got {sorted(set(grid[bad].tolist()))}")
        elif grid.dtype != np.bool_:
            raise ValueError(f"keep[{i}]: need a bool mask, got dtype {grid.dtype}")
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"save_overlay: {len(titles)} titles for {len(arrays)} panels")
    names = titles or (["base", "tiles"] if len(arrays) == 2 else [f"grid {i}" for i in range(len(arrays))])
    views = [TokenView(str(n), (g if use_labels else np.where(g, KEPT, DROPPED)).astype(np.int8))
             for n, g in zip(names, arrays)]
    return _save(figure(image, [(title, views)], panel_size), path)


def label_grids(visual, labels: np.ndarray, *, sample: int = 0, image: int = 0) -> list[tuple[str, np.ndarray]]:
    """Per-slot engine labels of one image -> [(grid name, [rows, cols] labels)], base grid first."""
    from jax_pruning.eval.token_views import token_views

    return [(v.name, v.labels) for v in token_views(visual, labels, sample=sample, image=image)]
