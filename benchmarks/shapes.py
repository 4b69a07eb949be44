"""Benchmark model presets as HF config dicts, random-weight builders, and the real models' FLOP bounds.

Presets:
- real: "llava_next_8b", "qwen2_5_vl_7b": the configs of jax_pruning/presets.py. Never allocated here:
  only parsed, built abstractly (`models.params.abstract_model`) and costed analytically.
- cpu: the same architectures, fewer and narrower layers, realistic visual-token
  counts (LLaVA-NeXT: one 672x672 image on a 24x24 base grid -> 2,928 tokens;
  Qwen2.5-VL: a 896x1120 image -> 32x40 = 1,280 tokens), seconds per prefill here.
- micro: the same again, tiny images, for the smoke tests.
- video: "qwen2_5_vl_7b_video" (real, bound only) and "qwen2_5_vl_cpu_video": a 64-frame 448x448 clip at
  2 fps through Qwen2.5-VL's video path (HF's default video sizes keep 448x448: 32 temporal patches x
  16x16 = 8,192 visual tokens), frames that drift slowly, as consecutive video frames do;
  "qwen2_5_vl_micro_video" for the smoke tests.

`build(preset, folder)` makes the HF model from the config with `torch.manual_seed`,
saves it and loads it with `models.load` (same weights on both sides).
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np

from jax_pruning import presets as _presets

LLAVA_IMAGE_ID, LLAVA_PAD_ID = 43, 41  # ids of tests.models.llava_tiny's word tokenizer
QWEN_PAD_ID, QWEN_IMAGE_ID = 120, 123  # ids of tests.models.qwen_tiny's word tokenizer
REAL_PINPOINTS = _presets.LLAVA_NEXT_PINPOINTS
PROMPT_TOKENS = 60  # a VQA prompt with its chat template, for the real models' FLOP figures


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    family: str  # "llava_next" | "qwen2_5_vl"
    config: dict  # HF config dict
    image_hw: tuple[int, int]  # (height, width) of the benchmark image
    crop: int = 336  # LLaVA: crop size; Qwen: unused
    patch: int = 14
    frames: int = 0  # > 0: the input is one video of this many frames of image_hw (Qwen only)
    fps: float = 2.0

    @property
    def is_video(self) -> bool:
        return self.frames > 0


# One copy of the real configs and their builders: jax_pruning/presets.py (the memory planner's presets).
_llama_text = _presets.llama_text
_llava = _presets.llava_next
_qwen25 = _presets.qwen2_5_vl
_mrope_section = _presets.mrope_section


_QWEN_TEST_IDS = (QWEN_IMAGE_ID, 124, 121, 122, QWEN_PAD_ID)

PRESETS: dict[str, Preset] = {
    "llava_next_8b": Preset("llava_next_8b", "llava_next", _presets.config("llava-next-8b"), (672, 672)),
    "qwen2_5_vl_7b": Preset("qwen2_5_vl_7b", "qwen2_5_vl", _presets.config("qwen2.5-vl-7b"), (896, 1120)),
    "llava_next_cpu": Preset("llava_next_cpu", "llava_next", _llava(
        _llama_text(256, 6, 8, 2, 32, 768, 512, rope_theta=500000.0),
        64, 3, 4, 128, 336, 14, REAL_PINPOINTS, LLAVA_IMAGE_ID, LLAVA_PAD_ID), (672, 672)),
    "qwen2_5_vl_cpu": Preset("qwen2_5_vl_cpu", "qwen2_5_vl", _qwen25(
        256, 6, 8, 2, 768, 512, 4, 64, 128, 4, [3], ids=_QWEN_TEST_IDS), (896, 1120)),
    "llava_next_micro": Preset("llava_next_micro", "llava_next", _llava(
        _llama_text(32, 3, 4, 2, 8, 64, 64),
        16, 2, 2, 32, 30, 5, [[30, 60], [60, 30], [60, 60]], LLAVA_IMAGE_ID, LLAVA_PAD_ID),
        (60, 60), crop=30, patch=5),
    "qwen2_5_vl_micro": Preset("qwen2_5_vl_micro", "qwen2_5_vl", _qwen25(
        32, 3, 4, 2, 64, 128, 2, 16, 32, 2, [1], ids=_QWEN_TEST_IDS), (112, 112)),
}
VIDEO_FRAMES = 64
PRESETS |= {
    "qwen2_5_vl_7b_video": dataclasses.replace(PRESETS["qwen2_5_vl_7b"], name="qwen2_5_vl_7b_video",
                                               image_hw=(448, 448), frames=VIDEO_FRAMES),
    "qwen2_5_vl_cpu_video": dataclasses.replace(PRESETS["qwen2_5_vl_cpu"], name="qwen2_5_vl_cpu_video",
                                                image_hw=(448, 448), frames=VIDEO_FRAMES),
    "qwen2_5_vl_micro_video": dataclasses.replace(PRESETS["qwen2_5_vl_micro"], name="qwen2_5_vl_micro_video",
                                                  image_hw=(56, 56), frames=8),
}
REAL = ("llava_next_8b", "qwen2_5_vl_7b")
REAL_VIDEO = ("qwen2_5_vl_7b_video",)
CPU = ("llava_next_cpu", "qwen2_5_vl_cpu")
CPU_VIDEO = ("qwen2_5_vl_cpu_video",)
MICRO = ("llava_next_micro", "qwen2_5_vl_micro")


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def hf_config(preset: Preset):
    from transformers import CONFIG_MAPPING

    raw = dict(preset.config)
    return CONFIG_MAPPING[raw.pop("model_type")](**raw)


def build(preset: Preset, folder, seed: int = 0):
    """(HF torch model in eval mode, our model loaded from its saved folder): the same random weights."""
    import torch
    from transformers import AutoModelForImageTextToText

    import models

    torch.manual_seed(seed)
    hf = AutoModelForImageTextToText.from_config(hf_config(preset)).eval()
    hf.save_pretrained(folder)
    return hf, models.load(folder)


def random_image(height: int, width: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def prompt_words(n: int) -> str:
    return " ".join(f"w{i % 40}" for i in range(n))


def drifting_frames(frames: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """A random scene that drifts one pixel right per frame, with a little fresh noise (consecutive frames
    alike, as in real video; what frame-redundancy pruning looks for)."""
    rng = np.random.default_rng(seed)
    scene = rng.integers(0, 256, (height, width + frames, 3)).astype(np.int16)
    return [np.clip(scene[:, t:t + width] + rng.integers(-4, 5, (height, width, 3)), 0, 255).astype(np.uint8)
            for t in range(frames)]


def inputs(preset: Preset, batch: int = 1, prompt_tokens: int = 60, seed: int = 0) -> dict:
    """Processor outputs (NumPy) for `batch` samples: one image of the preset's size + a prompt."""
    images = [random_image(*preset.image_hw, seed=seed + i) for i in range(batch)]
    if preset.family == "llava_next":
        from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

        from tests.models.llava_tiny import tokenizer

        pinpoints = preset.config["image_grid_pinpoints"]
        processor = LlavaNextProcessor(
            image_processor=LlavaNextImageProcessorPil(size={"shortest_edge": preset.crop},
                                                       crop_size={"height": preset.crop, "width": preset.crop},
                                                       image_grid_pinpoints=pinpoints),
            tokenizer=tokenizer(), patch_size=preset.patch, vision_feature_select_strategy="default",
            num_additional_image_tokens=1)
        texts = [f"<image> {prompt_words(prompt_tokens)}"] * batch
        out = processor(images=images, text=texts, return_tensors="np", padding=True)
        return {k: np.asarray(v) for k, v in out.items()}
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from models.qwen_inputs import prepare_qwen_inputs
    from tests.models.qwen_tiny import tokenizer

    h, w = preset.image_hw
    processor = Qwen2VLImageProcessorPil(patch_size=14, temporal_patch_size=2, merge_size=2,
                                         min_pixels=56 * 56, max_pixels=h * w)
    if preset.is_video:  # frames kept at their size (448x448 is inside HF's default video sizes anyway)
        videos = [drifting_frames(preset.frames, h, w, seed + i) for i in range(batch)]
        texts = [f"<|vision_start|><|video_pad|><|vision_end|> {prompt_words(prompt_tokens)}"] * batch
        out = prepare_qwen_inputs(texts, None, videos, tokenizer=tokenizer(), image_processor=processor,
                                  family=preset.family, video_fps=preset.fps, video_min_pixels=56 * 56,
                                  video_max_pixels=h * w)
        out.pop("images_per_sample", None)
        return out
    texts = [f"<|vision_start|><|image_pad|><|vision_end|> {prompt_words(prompt_tokens)}"] * batch
    out = prepare_qwen_inputs(texts, images, tokenizer=tokenizer(), image_processor=processor)
    out.pop("images_per_sample", None)
    return out


# ---- analytic FLOP bounds of the real models (no allocation) -------------------------------------

def real_visual_tokens(preset: Preset) -> tuple[int, int]:
    """(content tokens, newline tokens) of the preset's benchmark image."""
    h, w = preset.image_hw
    if preset.is_video:
        return -(-preset.frames // 2) * (h // 28) * (w // 28), 0
    if preset.family == "llava_next":
        side = preset.crop // preset.patch  # 24
        rows, cols = h // preset.crop * side, w // preset.crop * side  # 48 x 48 (672x672 fits a pinpoint)
        return side * side + rows * cols, rows
    return (h // 28) * (w // 28), 0


def _tokens(content: int, newlines: int, video: bool = False):
    """A one-sample token map of one image (or one video)."""
    from models.visual_tokens import KIND_NEWLINE

    kind = np.array([[0] * content + [KIND_NEWLINE] * newlines])
    return types.SimpleNamespace(valid=np.ones_like(kind, bool), kind=kind, image=np.zeros_like(kind),
                                 video=np.full_like(kind, 0 if video else -1))


def flop_bound(name: str, keep_ratios=(0.5, 0.3, 0.1, 0.05), text_tokens: int = PROMPT_TOKENS,
               count_params: bool = True) -> dict:
    """Unpruned / pre-LLM-pruned prefill FLOPs of a real preset, per keep ratio; count_params builds the
    model abstractly (no allocation, ~10 s for 8B) to count its parameters."""
    from jax_pruning.engine import flops
    from models.config import load_config
    from models.params import abstract_model, flat_param_shapes

    preset = get(name)
    config = load_config(preset.config)
    params = None
    if count_params:
        params = sum(int(np.prod(s)) for s in flat_param_shapes(abstract_model(config)).values())
    content, newlines = real_visual_tokens(preset)
    h, w = preset.image_hw
    if preset.is_video:
        images = {"video_grid_thw": np.array([[-(-preset.frames // 2), h // 14, w // 14]])}
    elif preset.family == "llava_next":
        images = {"image_sizes": np.array([[h, w]])}
    else:
        images = {"image_grid_thw": np.array([[1, h // 14, w // 14]])}
    tower, projector = (float(np.sum(x)) for x in flops.vision_flops(config, _tokens(content, newlines, preset.is_video), images))
    t = config.text

    def llm(seen):
        return float(t.num_hidden_layers * flops.llm_layer_flops(t, seen) + flops.head_flops(t))

    def budget(ratio):  # visual tokens the LLM sees after plain pre-LLM pruning (MR-Pruner official budget)
        if preset.family == "llava_next":
            return int(ratio * (content + newlines)) + newlines
        return int(ratio * content)

    unpruned = llm(text_tokens + content + newlines) + tower + projector
    rows = []
    for ratio in (*keep_ratios, 0.0):  # keep 0: the cap (vision + text only)
        pruned = llm(text_tokens + budget(ratio)) + tower + projector
        rows.append({"keep_ratio": ratio, "visual_tokens_seen": budget(ratio),
                     "unpruned_flops": unpruned, "pruned_flops": pruned, "flop_bound": unpruned / pruned})
    return {"preset": name, "parameters": params, "text_tokens": text_tokens, "visual_tokens": content + newlines,
            "input": f"{preset.frames} frames {h}x{w}" if preset.is_video else f"image {h}x{w}",
            "vision_tower_flops": tower, "projector_flops": projector,
            "vision_share_of_unpruned": (tower + projector) / unpruned,
            "rows": rows}


if __name__ == "__main__":
    import json

    for n in REAL:
        print(json.dumps(flop_bound(n), indent=1))
