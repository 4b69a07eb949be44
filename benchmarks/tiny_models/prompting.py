"""One place that turns (folder, images, questions) into the inputs the shipped tiny models were trained on.

The JAX side reuses it so both stacks see identical prompts. It is a thin layer
over `jax_pruning.processing.Processor` (LLaVA-NeXT: the folder's
LlavaNextProcessor; Qwen2-VL: image processor + tokenizer + the
`<|image_pad|>` expansion and `mm_token_type_ids` of `models.qwen_inputs`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np


@lru_cache(maxsize=8)
def processor_of(folder: str):
    """Cached `Processor` of a checkpoint folder (loading tokenizers costs ~0.1 s)."""
    from jax_pruning.processing import Processor

    return Processor.from_folder(folder)


def build_inputs(folder: str | os.PathLike, images: Sequence, questions: Sequence[str]) -> dict[str, np.ndarray]:
    """One single-turn chat prompt per (image, question), left padded -> processor outputs (NumPy).

    LLaVA-NeXT: input_ids, attention_mask, pixel_values, image_sizes.
    Qwen2-VL: input_ids, attention_mask, mm_token_type_ids, pixel_values, image_grid_thw, images_per_sample.
    """
    images, questions = list(images), list(questions)
    if len(images) != len(questions) or not questions:
        raise ValueError(f"build_inputs: need one image per question (>0), got {len(images)} images "
                         f"and {len(questions)} questions")
    processor = processor_of(str(Path(folder).resolve()))
    return processor(images, [processor.chat_prompt(q) for q in questions])
