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


def video_pixels(folder: Path) -> tuple[int | None, int | None]:
    """(min, max) pixels per frame from the folder's video_preprocessor_config.json (HF's `size`
    shortest_edge / longest_edge, or the older min_pixels / max_pixels); (None, None) without one."""
    file = folder / "video_preprocessor_config.json"
    if not file.is_file():
        return None, None
    try:
        raw = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from None
    size = raw.get("size") or {}
    low, high = raw.get("min_pixels", size.get("shortest_edge")), raw.get("max_pixels", size.get("longest_edge"))
    for name, value in (("min", low), ("max", high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{file}: the {name} pixels of a frame must be a positive integer, got {value!r}")
    return low, high


class Processor:
    """`Processor.from_folder(path)(images, texts)` -> dict of NumPy arrays (left padded)."""

    def __init__(self, model_type: str, tokenizer, image_processor=None, hf_processor=None,
                 video_pixels: tuple[int | None, int | None] = (None, None)):
        self.model_type = model_type
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.hf_processor = hf_processor
        self.video_pixels = video_pixels  # (min, max) pixels of a video frame; None: the family's default

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
                return cls(model_type, tokenizer, image_processor=images, video_pixels=video_pixels(path))
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

    @property
    def video_placeholder(self) -> str:
        """The text a chat template puts where a video goes (Qwen-VL families only)."""
        if self.model_type not in QWEN_TYPES:
            raise ValueError(f"{self.model_type} takes no video input (videos: {', '.join(QWEN_TYPES)})")
        return "<|vision_start|><|video_pad|><|vision_end|>"

    def chat_prompt(self, question: str, *, with_image: bool = True, video: bool = False) -> str:
        """One user turn (the image, or with `video` the video, first; then the question) through the
        folder's chat template."""
        placeholder = self.video_placeholder if video else self.image_placeholder
        item = [{"type": "video"}] if video else [{"type": "image"}] if with_image else []
        messages = [{"role": "user", "content": item + [{"type": "text", "text": question}]}]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if video and "<|video_pad|>" not in text:
                raise ValueError("this folder's chat template places no <|video_pad|> for a video item (it has "
                                 "no video branch); give the prompt text yourself")
            return text
        return (placeholder + "\n" if item else "") + question

    def __call__(self, images: Sequence | None, texts: Sequence[str], videos: Sequence | None = None,
                 video_fps: float | Sequence[float] = 2.0) -> dict[str, np.ndarray]:
        """images: one per image placeholder (flat in text order, or one list per text); videos (Qwen-VL):
        each a list of frames, flat or one list per text, at `video_fps` frames per second (one rate, or one
        per video)."""
        texts = list(texts)
        if not texts:
            raise ValueError("Processor: the batch is empty (no texts)")
        images = None if images is None else decoded_images(images)
        if videos is not None and self.model_type not in QWEN_TYPES:
            raise ValueError(f"Processor: {self.model_type} takes no video input (videos: {', '.join(QWEN_TYPES)})")
        if self.model_type in QWEN_TYPES:
            from models.qwen_inputs import prepare_qwen_inputs

            out = prepare_qwen_inputs(texts, images, videos, tokenizer=self.tokenizer,
                                      image_processor=self.image_processor, family=self.model_type,
                                      video_fps=video_fps, video_min_pixels=self.video_pixels[0],
                                      video_max_pixels=self.video_pixels[1])
            out.pop("images_per_sample", None)  # bookkeeping of the helper, not a processor output
            return out
        self.tokenizer.padding_side = "left"  # batched greedy decoding needs left padding
        out = self.hf_processor(images=images, text=texts, padding=True, return_tensors="np")
        return {k: np.asarray(v) for k, v in out.items()}
