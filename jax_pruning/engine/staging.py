"""Host side of a generate call: bucketed capacities, then the model's own `prepare`.

Everything that varies per batch (prompt length, visual tokens per sample,
crops or patches, windows, images per sample) is rounded up to a bucket before
the model's jitted `prepare` runs, so it compiles once per bucket.
"""

from __future__ import annotations

import numpy as np

from jax_pruning.engine.buckets import bucket, pad_text_left
from models.sharding import active_mesh

REQUIRED = ("input_ids",)


def llava_capacities(model, inputs: dict, crop_multiple: int = 1) -> dict:
    """crop_multiple: the crop capacity is rounded up to it (the mesh's data-axis size), so the
    vision tower's crops split evenly over "data"."""
    from models.llava_layout import image_grids

    ids = np.asarray(inputs["input_ids"])
    visual = int((ids == model.config.image_token_id).sum(axis=1).max(initial=0))
    caps = {"visual_capacity": bucket(visual, 16)}
    if inputs.get("pixel_values") is not None:
        grids = image_grids(inputs.get("image_sizes"), model.config.vision)
        crops = sum(g.num_crops for g in grids)
        caps["crop_capacity"] = -(-bucket(crops, 1) // crop_multiple) * crop_multiple
        # Images per sample are only known after planning (adjacent images share one run of image
        # tokens); the batch's image count bounds them, and only sizes the [B, I] per-image maps.
        caps["max_images"] = bucket(len(grids), 1)
    return caps


def qwen_capacities(model, inputs: dict, *, unit_multiple: int = 1) -> dict:
    """Bucketed sizes of a Qwen-VL batch. The tower's units (frames of images) round up to a multiple of
    `unit_multiple` (the data-axis size, so the unit axis splits evenly); patches per unit to a bucket that
    is a multiple of merge**2."""
    from models.qwen_vision.layout import exact_capacities

    ids = np.asarray(inputs["input_ids"])
    config = model.config
    vision_ids = [i for i in (config.image_token_id, getattr(config, "video_token_id", None)) if i is not None]
    visual = int(np.isin(ids, vision_ids).sum(axis=1).max(initial=0))
    caps = {"visual_capacity": bucket(visual, 16)}
    grids = [np.asarray(inputs[g]).reshape(-1, 3) for p, g in (("pixel_values", "image_grid_thw"),
             ("pixel_values_videos", "video_grid_thw")) if inputs.get(p) is not None and inputs.get(g) is not None]
    if grids:  # the tower encodes images, then videos (their temporal patches are units too)
        exact = exact_capacities(np.concatenate(grids), config.vision)
        round_up = lambda n, k: -(-n // k) * k  # noqa: E731
        caps["unit_capacity"] = round_up(bucket(exact["unit_capacity"], 1), unit_multiple)
        caps["unit_patch_capacity"] = round_up(bucket(exact["unit_patch_capacity"], 16), config.vision.merge_unit)
        if "unit_window_capacity" in exact:
            caps["unit_window_capacity"] = bucket(exact["unit_window_capacity"], 1)
        start = config.vision_start_token_id
        per_sample = ((ids == start).sum(axis=1) if start is not None else np.ones(len(ids))).max(initial=1)
        caps["max_images"] = bucket(int(per_sample), 1)
    return caps


def _check_image_inputs(model, inputs: dict) -> None:
    """Image tokens need pixels, pixels need their sizes: say which key is missing, by name."""
    sizes_key = "image_sizes" if model.config.model_type == "llava_next" else "image_grid_thw"
    has_pixels = inputs.get("pixel_values") is not None
    if has_pixels and inputs.get(sizes_key) is None:
        raise ValueError(f"generate: inputs have pixel_values but lack {sizes_key!r} (the processor returns it)")
    image_tokens = int((np.asarray(inputs["input_ids"]) == model.config.image_token_id).sum())
    if image_tokens and not has_pixels:
        raise ValueError(f"generate: input_ids hold {image_tokens} image tokens but inputs lack 'pixel_values'")


def stage(model, inputs: dict, pad_id: int, evidence: bool = False):
    """Processor outputs -> PreparedInputs at bucketed shapes (evidence: with what in-tower pruning reads)."""
    missing = [k for k in REQUIRED if k not in inputs]
    if missing:
        raise ValueError(f"generate: inputs lack {missing}; pass what the model's processor returns")
    if not hasattr(model, "prepare"):
        raise ValueError("generate: the model has no `prepare` (a multimodal model from models.load is needed)")
    inputs = dict(inputs)
    _check_image_inputs(model, inputs)
    ids = np.asarray(inputs["input_ids"])
    mask = np.asarray(inputs.get("attention_mask", np.ones_like(ids)))
    inputs["input_ids"], inputs["attention_mask"] = pad_text_left(ids, mask, bucket(ids.shape[1], 16), pad_id)
    if "mm_token_type_ids" in inputs:
        extra = inputs["input_ids"].shape[1] - ids.shape[1]
        inputs["mm_token_type_ids"] = np.pad(np.asarray(inputs["mm_token_type_ids"]), ((0, 0), (extra, 0)))
    mesh = active_mesh()
    data = 1 if mesh is None else mesh.shape.get("data", 1)
    if model.config.model_type == "llava_next":
        caps = llava_capacities(model, inputs, crop_multiple=data)
    else:
        caps = qwen_capacities(model, inputs, unit_multiple=data)
    return model.prepare(**inputs, **caps, **({"evidence": True} if evidence else {}))
