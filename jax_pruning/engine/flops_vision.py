"""Analytic FLOPs of the vision side: the tower and the projector / patch merger, per sample.

Counted from the images themselves (LLaVA-NeXT: crops per image from
`image_sizes`; Qwen-VL: t x h x w patches per image from `image_grid_thw`), the
work the method needs. Conventions as in flops.py: matmuls 2·m·n·k, dense
attention scores + values 4·n²·width; norms, activations and softmax ignored.
Attention is per crop (CLIP) and per frame of an image (Qwen, which attends
within a frame), windowed in Qwen2.5-VL's window blocks. What the compiled
tower runs can be more (crops padded to the shape bucket; Qwen frames padded
to the bucketed patches per unit, plus padding units): that is the bucket's
cost, not the method's.
"""

from __future__ import annotations

import numpy as np

from models.visual_tokens import KIND_NEWLINE


def _encoder_layer(tokens, width: int, intermediate: int, attention_pairs=None, gated: bool = False):
    """One pre-norm transformer block: q/k/v/o, attention over `attention_pairs` (default tokens²), MLP."""
    pairs = np.multiply(tokens, tokens) if attention_pairs is None else attention_pairs
    mlp = (3 if gated else 2) * 2 * tokens * width * intermediate
    return 4 * 2 * tokens * width * width + 4 * pairs * width + mlp


def clip_crop_flops(vision, text_width: int) -> tuple[float, float]:
    """LLaVA-NeXT, one crop: (CLIP patch embedding + the layers up to the deepest feature layer,
    projector on the crop's g² features)."""
    tower = vision.tower
    tokens = tower.num_patches + 1  # + CLS
    depth = max(i % (tower.num_hidden_layers + 1) for i in vision.resolved_feature_layers)
    vit = 2 * tower.num_patches * tower.patch_dim * tower.hidden_size
    vit += depth * _encoder_layer(tokens, tower.hidden_size, tower.intermediate_size)
    projector = 2.0 * vision.tokens_per_crop * (vision.projector_in_features * text_width + text_width**2)
    return float(vit), projector


def _window_pairs(vision, h: int, w: int) -> int:
    """Σ over Qwen2.5-VL windows of (patches per window)² for one h x w patch frame."""
    m, side = vision.spatial_merge_size, vision.window_merged_side
    chunks = lambda n: [min(side, n // m - s) * m for s in range(0, n // m, side)]  # noqa: E731
    return sum(r * r for r in chunks(h)) * sum(c * c for c in chunks(w))


def qwen_image_flops(vision, text_width: int, family: str, t: int, h: int, w: int) -> tuple[float, float]:
    """Qwen-VL, one image of t x h x w patches: (tower, merger(s))."""
    patches = t * h * w
    width = vision.hidden_size
    gated = family == "qwen2_5_vl"
    vit = 2.0 * patches * vision.patch_dim * width
    full = t * (h * w) ** 2  # each frame attends within itself
    windowed = t * _window_pairs(vision, h, w) if vision.uses_window_attention else full
    for block in range(vision.depth):
        pairs = full if (not vision.uses_window_attention or block in vision.fullatt_block_indexes) else windowed
        vit += _encoder_layer(patches, width, vision.intermediate_size, pairs, gated)
    merged_width = width * vision.merge_unit
    one_merger = 2.0 * (patches // vision.merge_unit) * (merged_width * merged_width + merged_width * text_width)
    mergers = 1 + len(getattr(vision, "deepstack_visual_indexes", ()))
    return float(vit), one_merger * mergers


def _images_per_sample(tokens) -> list[int]:
    """Images per sample; a token map without image ids counts one image per non-empty sample."""
    valid = np.asarray(tokens.valid)
    if getattr(tokens, "image", None) is None:
        return [int(v.any()) for v in valid]
    image = np.asarray(tokens.image)
    return [len(np.unique(image[b][valid[b]])) for b in range(valid.shape[0])]


def _item_kinds(tokens) -> list[list[bool]]:
    """Per sample, its images / videos in prompt order: True for a video."""
    valid, image = np.asarray(tokens.valid), np.asarray(tokens.image)
    video = np.full(valid.shape, -1) if getattr(tokens, "video", None) is None else np.asarray(tokens.video)
    return [[bool((video[b][valid[b] & (image[b] == i)] >= 0).any()) for i in np.unique(image[b][valid[b]])]
            for b in range(valid.shape[0])]


def vision_flops(config, tokens, inputs: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tower, projector/merger) FLOPs per sample [B]. Images go to samples in order, as many per
    sample as its VisualTokens hold. Without `inputs` (image sizes / grids unknown) the counts are
    estimated from the visual tokens: LLaVA crops = ceil(tokens / g²), Qwen one square image."""
    counts = _images_per_sample(tokens)
    batch = len(counts)
    tower, projector = np.zeros(batch), np.zeros(batch)
    v = config.vision
    if v is None:
        return tower, projector
    if config.model_type == "llava_next":
        per_crop, per_crop_projector = clip_crop_flops(v, config.text.hidden_size)
        if inputs is not None and inputs.get("image_sizes") is not None:
            from models.llava_layout import image_grid

            sizes = np.asarray(inputs["image_sizes"]).reshape(-1, 2).tolist()
            crops_per_image = [image_grid(tuple(hw), v).num_crops for hw in sizes]
            starts = np.cumsum([0, *counts])
            crops = np.array([sum(crops_per_image[starts[b]:starts[b + 1]]) for b in range(batch)], float)
        else:
            content = (np.asarray(tokens.valid) & (np.asarray(tokens.kind) != KIND_NEWLINE)).sum(axis=1)
            crops = np.ceil(content / v.tower.num_patches)
        return crops * per_crop, crops * per_crop_projector
    grid_of = lambda key: ([] if inputs is None or inputs.get(key) is None  # noqa: E731
                           else np.asarray(inputs[key]).reshape(-1, 3).tolist())
    images, videos = grid_of("image_grid_thw"), grid_of("video_grid_thw")
    if not images and not videos:  # estimate: one square image holding the sample's visual tokens
        content = np.asarray(tokens.valid).sum(axis=1)
        side = np.sqrt(content).round().astype(int) * v.spatial_merge_size
        grids_per_sample = [[(1, s, s)] if s else [] for s in side]
    else:  # items in prompt order take the next image or video grid
        grids_per_sample = [[(videos if is_video else images).pop(0) for is_video in kinds]
                            for kinds in _item_kinds(tokens)]
    for b, images in enumerate(grids_per_sample):
        for t, h, w in images:
            vit, merger = qwen_image_flops(v, config.text.hidden_size, config.model_type, int(t), int(h), int(w))
            tower[b] += vit
            projector[b] += merger
    return tower, projector

