"""Where each visual token of one image sits on that image, and what the pruner did with it.

A `TokenView` is one token grid of one image (LLaVA-NeXT: the base grid and the
anyres tile grid; Qwen-VL: its single merged grid) with the engine's per-token
label (KEPT / DROPPED / CANDIDATE / MERGED / ABSORBED) and the rectangle the grid covers, in
fractions of the displayed image:

- LLaVA-NeXT is drawn on the original image. The base crop is the whole image
  resized to a square, so its grid covers the image uniformly. The tile grid is
  what is left of the padded anyres canvas after unpad: the image was resized
  into the best pinpoint (HF's get_patch_output_size), padded to its centre,
  and unpad kept patch rows/cols [row_offset, row_offset + rows) of that canvas
  (models.llava_layout.ImageGrid). `box` maps exactly those patch rows and cols
  back onto the original image (an edge row may reach a little past it).
- Qwen-VL is drawn on its resized image (smart_resize: whole patches), where
  the merged grid's cells are square: display aspect = cols / rows (a video:
  its first temporal patch).

Views go into predictions.jsonl (`encode_views`: 4 bits per token, base64) so
a report can draw the overlays long after the run.
"""

from __future__ import annotations

import base64
import dataclasses
import math

import numpy as np

# The engine's per-slot label values (GenerateOutput.visual_labels).
DROPPED, KEPT, CANDIDATE, MERGED, ABSORBED = 0, 1, 2, 3, 4
LABELS = (DROPPED, KEPT, CANDIDATE, MERGED, ABSORBED)
FULL_BOX = (0.0, 0.0, 1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class TokenView:
    """One token grid of one image: labels [rows, cols] and the box it covers (top, left, bottom, right)
    in fractions of the displayed image; `aspect` (width / height) to draw the image at, None = its own."""

    name: str
    labels: np.ndarray
    box: tuple[float, float, float, float] = FULL_BOX
    aspect: float | None = None

    @property
    def kept(self) -> int:
        """Tokens the LLM sees from this grid (merged tokens included)."""
        return int(np.sum((self.labels == KEPT) | (self.labels == MERGED)))

    @property
    def merged(self) -> int:
        return int(np.sum(self.labels == MERGED))

    @property
    def candidates(self) -> int:
        return int(np.sum(self.labels == CANDIDATE))

    def edges(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel edges of the rows [rows + 1] and cols [cols + 1] on a height x width picture (may pass it)."""
        top, left, bottom, right = self.box
        rows, cols = self.labels.shape
        ys = np.round(np.linspace(top, bottom, rows + 1) * height).astype(int)
        xs = np.round(np.linspace(left, right, cols + 1) * width).astype(int)
        return ys, xs


def llava_tile_box(image_hw: tuple[int, int], vision) -> tuple[float, float, float, float]:
    """The unpadded tile grid's rectangle on the original image (fractions), for a LlavaNextVisionConfig."""
    from models.llava_layout import image_grid, select_best_resolution

    orig_h, orig_w = int(image_hw[0]), int(image_hw[1])
    grid = image_grid((orig_h, orig_w), vision)
    best_h, best_w = select_best_resolution((orig_h, orig_w), vision.image_grid_pinpoints)
    scale_w, scale_h = best_w / orig_w, best_h / orig_h
    if scale_w < scale_h:  # HF get_patch_output_size
        new_w, new_h = best_w, min(math.ceil(orig_h * scale_w), best_h)
    else:
        new_h, new_w = best_h, min(math.ceil(orig_w * scale_h), best_w)
    pad_top, pad_left = (best_h - new_h) // 2, (best_w - new_w) // 2  # HF _get_padding_size
    patch = vision.tower.image_size / vision.tower.grid_side  # canvas pixels per patch
    top = (grid.row_offset * patch - pad_top) / new_h
    left = (grid.col_offset * patch - pad_left) / new_w
    bottom = ((grid.row_offset + grid.rows) * patch - pad_top) / new_h
    right = ((grid.col_offset + grid.cols) * patch - pad_left) / new_w
    return (top, left, bottom, right)


def token_views(visual, labels, *, sample: int = 0, image: int = 0, image_hw: tuple[int, int] | None = None,
                config=None) -> list[TokenView]:
    """Per-slot engine labels of one image -> its TokenViews, base grid first.

    `visual` is the model's VisualTokens map (kind/row/col/image/valid [B, Nv], grid_rows/grid_cols
    [B, I, 2] indexed by kind), `labels` [B, Nv] the engine's DROPPED/KEPT/CANDIDATE per slot.
    LLaVA-NeXT newline tokens have no cell and are left out; a cell no token lands on stays DROPPED.
    With `config` (the model's ModelConfig) and `image_hw` (the original image's (height, width)) the
    tile grid is placed exactly (llava_tile_box); without them it covers the whole image.
    """
    from models.visual_tokens import KIND_BASE, KIND_TILE

    labels = np.asarray(labels)
    valid, kinds = np.asarray(visual.valid)[sample], np.asarray(visual.kind)[sample]
    rows, cols = np.asarray(visual.row)[sample], np.asarray(visual.col)[sample]
    mine = valid & (np.asarray(visual.image)[sample] == image)
    if not mine.any():
        raise ValueError(f"sample {sample} has no visual tokens of image {image}")
    llava = bool((mine & (kinds == KIND_TILE)).any()) or getattr(config, "model_type", None) == "llava_next"
    out = []
    for kind, name in ((KIND_BASE, "base"), (KIND_TILE, "tiles")):
        slots = np.nonzero(mine & (kinds == kind))[0]
        if not len(slots):
            continue
        shape = (max(int(np.asarray(visual.grid_rows)[sample, image, kind]), int(rows[slots].max()) + 1),
                 max(int(np.asarray(visual.grid_cols)[sample, image, kind]), int(cols[slots].max()) + 1))
        grid = np.full(shape, DROPPED, np.int8)
        grid[rows[slots], cols[slots]] = labels[sample, slots]
        frames = int(np.asarray(visual.frames)[sample, image]) if kind == KIND_BASE else 1
        if frames > 1:  # a Qwen-VL video: rows are frame * h + r; draw its first temporal patch
            grid, name = grid[: shape[0] // frames], f"frame 1/{frames}"
            shape = grid.shape
        box, aspect = FULL_BOX, None
        if kind == KIND_TILE and config is not None and image_hw is not None and getattr(config, "vision", None):
            box = llava_tile_box(image_hw, config.vision)
        if not llava:  # Qwen: the resized image, square cells
            aspect = shape[1] / shape[0]
        out.append(TokenView(name, grid, box, aspect))
    return out


def views_of_output(out, *, sample: int = 0, image: int = 0, image_hw=None, config=None) -> list[TokenView]:
    """TokenViews of one sample of a `jp.generate` output (needs out.visual and out.visual_labels)."""
    if getattr(out, "visual", None) is None or getattr(out, "visual_labels", None) is None:
        raise ValueError("the generate output carries no visual map / visual_labels")
    return token_views(out.visual, out.visual_labels, sample=sample, image=image, image_hw=image_hw, config=config)


def _pack(labels: np.ndarray) -> str:
    flat = np.asarray(labels, np.uint8).ravel()
    flat = np.concatenate([flat, np.zeros(-len(flat) % 2, np.uint8)]).reshape(-1, 2)
    packed = flat[:, 0] | flat[:, 1] << 4
    return base64.b64encode(packed.astype(np.uint8).tobytes()).decode("ascii")


def _unpack(text: str, shape: tuple[int, int], bits: int = 4) -> np.ndarray:
    """bits: 4 (this version) or 2 (records written before MERGED / ABSORBED existed)."""
    packed = np.frombuffer(base64.b64decode(text), np.uint8)
    mask = (1 << bits) - 1
    flat = np.stack([(packed >> s) & mask for s in range(0, 8, bits)], axis=1).ravel()
    n = shape[0] * shape[1]
    if len(flat) < n:
        raise ValueError(f"token labels: {len(flat)} values do not fill a {shape[0]}x{shape[1]} grid")
    return flat[:n].reshape(shape).astype(np.int8)


def encode_views(views: list[TokenView]) -> list[dict]:
    """JSON-able compact form (4 bits a token) for a predictions record."""
    return [{"name": v.name, "shape": list(v.labels.shape), "box": [round(float(x), 6) for x in v.box],
             "aspect": v.aspect, "labels": _pack(v.labels), "bits": 4} for v in views]


def decode_views(data: list[dict]) -> list[TokenView]:
    return [TokenView(d["name"], _unpack(d["labels"], tuple(d["shape"]), d.get("bits", 2)), tuple(d["box"]),
                      d.get("aspect")) for d in data]
