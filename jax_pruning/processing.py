"""Images + prompt texts -> the model inputs the HF processor would give, for any supported folder.

LLaVA-NeXT folders carry a full `LlavaNextProcessor`. The Qwen-VL processor
classes cannot be built without torchvision (their video half needs it), so for them we load
the image processor and tokenizer and let `models.qwen_inputs` do the
processor's image path. Works on HF folders and on converted folders (the
converter copies the tokenizer/processor files along). Local files only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

QWEN_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def _decode(image, where: str):
    """A PIL image, fully read (PIL reads lazily: a truncated file fails here, with its name)."""
    from PIL import Image

    try:
        if isinstance(image, (str, os.PathLike)):
            with Image.open(image) as opened:
                opened.load()
                return opened.copy()
        if isinstance(image, Image.Image):
            image.load()
            if image.mode not in ("RGB", "RGBA", "L"):  # the processor converts to RGB: a mode PIL cannot convert
                image.crop((0, 0, 1, 1)).convert("RGBA" if "A" in image.getbands() else "RGB")  # fails here, named
            if 0 in image.size:
                raise ValueError(f"it is {image.size[0]}x{image.size[1]} pixels (empty)")
            return image
    except (OSError, ValueError, SyntaxError) as err:  # PIL: truncated / unidentified / corrupt
        name = getattr(image, "filename", "") or (str(image) if isinstance(image, (str, os.PathLike)) else "")
        raise ValueError(f"Processor: {where}{f' ({name})' if name else ''} cannot be decoded: {err}") from None
    shape = getattr(image, "shape", None)
    if shape is None:
        raise ValueError(f"Processor: {where} is not an image but {type(image).__name__!r} "
                         f"(give a PIL image, a file path or an array [H, W, C])")
    if len(shape) != 3 or 0 in tuple(shape):
        raise ValueError(f"Processor: {where} is an array of shape {tuple(shape)}; expected one image "
                         f"[H, W, C] or [C, H, W] with no empty axis")
    return image  # arrays and the like: the image processor checks the rest


def decoded_images(images: Sequence) -> list:
    """Every image decoded up front (nested per-text lists kept), so a bad one is named by its index."""
    out = []
    for i, item in enumerate(images):
        if isinstance(item, (list, tuple)):
            out.append([_decode(im, f"image {j} of text {i}") for j, im in enumerate(item)])
        else:
            out.append(_decode(item, f"image {i}"))
    return out


class Processor:
    """`Processor.from_folder(path)(images, texts)` -> dict of NumPy arrays (left padded)."""

    def __init__(self, model_type: str, tokenizer, image_processor=None, hf_processor=None):
        self.model_type = model_type
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.hf_processor = hf_processor

    @classmethod
    def from_folder(cls, path: str | os.PathLike) -> "Processor":
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        path = Path(path)
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path}: no config.json (not a checkpoint folder)")
        model_type = json.loads(config_file.read_text()).get("model_type")
        try:
            if model_type in QWEN_TYPES:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                images = AutoImageProcessor.from_pretrained(path, local_files_only=True)
                return cls(model_type, tokenizer, image_processor=images)
            hf = AutoProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: cannot load the tokenizer/processor files ({err})") from None
        tokenizer = getattr(hf, "tokenizer", hf)
        return cls(model_type, tokenizer, hf_processor=hf)

    @property
    def image_placeholder(self) -> str:
        """The text a chat template puts where an image goes."""
        if self.model_type in QWEN_TYPES:
            return "<|vision_start|><|image_pad|><|vision_end|>"
        return getattr(self.hf_processor, "image_token", "<image>")

    def chat_prompt(self, question: str, *, with_image: bool = True) -> str:
        """One user turn (image first, then the question) through the folder's chat template."""
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
        messages = [{"role": "user", "content": content}]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return (self.image_placeholder + "\n" if with_image else "") + question

    def __call__(self, images: Sequence | None, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts = list(texts)
        if not texts:
            raise ValueError("Processor: the batch is empty (no texts)")
        images = None if images is None else decoded_images(images)
        if self.model_type in QWEN_TYPES:
            from models.qwen_inputs import prepare_qwen_inputs

            out = prepare_qwen_inputs(texts, images, tokenizer=self.tokenizer, image_processor=self.image_processor)
            out.pop("images_per_sample", None)  # bookkeeping of the helper, not a processor output
            return out
        self.tokenizer.padding_side = "left"  # batched greedy decoding needs left padding
        out = self.hf_processor(images=images, text=texts, padding=True, return_tensors="np")
        return {k: np.asarray(v) for k, v in out.items()}
