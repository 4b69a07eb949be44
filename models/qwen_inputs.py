"""What the Qwen-VL processor does, without the processor class.

The HF `Qwen2VLProcessor` / `Qwen2_5_VLProcessor` / `Qwen3VLProcessor` cannot
be built here (their video half needs torchvision), so this one helper does
their image path: run the HF image processor (PIL variant), expand each
`<|image_pad|>` into prod(grid_thw) // merge**2 copies, tokenize, and build
`mm_token_type_ids` (0 text, 1 image, 2 video).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from models.mrope_index import mm_token_type_ids_from

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"


def _flatten_images(images, num_texts: int) -> tuple[list, list[int]]:
    """Accept a flat list (in text order) or one list per text; return (flat, images_per_text)."""
    if images is None:
        return [], [0] * num_texts
    if images and all(isinstance(x, (list, tuple)) for x in images):
        if len(images) != num_texts:
            raise ValueError(f"got image lists for {len(images)} texts but {num_texts} texts")
        return [im for group in images for im in group], [len(group) for group in images]
    return list(images), []


def expand_image_tokens(text: str, grids: Sequence, merge_size: int, image_token: str = IMAGE_PAD) -> str:
    """Replace the i-th `image_token` of `text` by prod(grids[i]) // merge**2 copies."""
    parts = text.split(image_token)
    if len(parts) - 1 != len(grids):
        raise ValueError(f"text has {len(parts) - 1} {image_token} placeholders but {len(grids)} images were given")
    out = [parts[0]]
    for grid, rest in zip(grids, parts[1:]):
        out.append(image_token * (int(np.prod(grid)) // merge_size**2) + rest)
    return "".join(out)


def prepare_qwen_inputs(
    texts: Sequence[str] | str,
    images=None,
    *,
    tokenizer,
    image_processor,
    image_token: str = IMAGE_PAD,
    padding_side: Optional[str] = "left",
) -> dict:
    """Texts with one `<|image_pad|>` per image -> model inputs as NumPy arrays.

    Returns input_ids / attention_mask / mm_token_type_ids [B, T], and when images
    are given pixel_values [num_patches, C*T*P*P], image_grid_thw [num_images, 3],
    images_per_sample [B]. Left padding by default (what batched generation needs).
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    flat, per_text = _flatten_images(images, len(texts))
    counts = [t.count(image_token) for t in texts]
    if per_text and per_text != counts:
        raise ValueError(f"images per text {per_text} do not match the {image_token} counts {counts}")
    if sum(counts) != len(flat):
        raise ValueError(f"texts hold {sum(counts)} {image_token} placeholders but {len(flat)} images were given")
    result = {}
    grids = np.zeros((0, 3), np.int64)
    if flat:
        for i, image in enumerate(flat):
            size = getattr(image, "size", None)  # PIL (width, height); arrays have an int .size: not checked here
            if isinstance(size, tuple) and len(size) == 2 and min(size) > 0 and max(size) / min(size) > 200:
                raise ValueError(f"image {i} is {size[0]}x{size[1]} pixels: Qwen-VL's processor refuses aspect "
                                 f"ratios above 200 (pad or crop it)")
        processed = image_processor(flat, return_tensors="np")
        grids = np.asarray(processed["image_grid_thw"])
        result["pixel_values"] = np.asarray(processed["pixel_values"], np.float32)
        result["image_grid_thw"] = grids
        result["images_per_sample"] = np.asarray(counts, np.int32)
    merge = int(image_processor.merge_size)
    starts = np.cumsum([0] + counts)
    expanded = [expand_image_tokens(t, grids[s:e], merge, image_token) for t, s, e in zip(texts, starts, starts[1:])]
    kwargs = {} if padding_side is None else {"padding_side": padding_side}
    tokens = tokenizer(expanded, padding=True, return_tensors="np", **kwargs)
    vocab = tokenizer.get_vocab()
    if image_token not in vocab:
        raise ValueError(f"tokenizer has no {image_token} token")
    result["input_ids"] = np.asarray(tokens["input_ids"])
    result["attention_mask"] = np.asarray(tokens["attention_mask"])
    result["mm_token_type_ids"] = mm_token_type_ids_from(result["input_ids"], vocab[image_token], vocab.get(VIDEO_PAD))
    return result
