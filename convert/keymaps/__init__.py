"""Key-map tables by model_type: text family table + (for multimodal models) vision table.

Vision tables are written by the vision-tower owner as
`convert/keymaps/vision_clip.py` (LLaVA-NeXT) and `convert/keymaps/vision_qwen.py`
(Qwen2-VL / 2.5-VL / 3-VL), each exposing `vision_rules(model_type) -> list[Rule]`
in the same Rule format, with full Flax targets ("vision_tower/...",
"multi_modal_projector/...", "image_newline", "visual/..."). Until such a module
exists, a multimodal checkpoint's vision tensors have no rule and conversion
fails naming them as unexpected: never a silent half-converted model.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from convert.keymaps import llama, qwen2, qwen3
from convert.rules import KeyMap, Rule

TEXT_FAMILY: dict[str, ModuleType] = {
    "llama": llama,
    "mistral": llama,
    "llava_next": llama,
    "qwen2": qwen2,
    "qwen2_vl": qwen2,
    "qwen2_5_vl": qwen2,
    "qwen3": qwen3,
    "qwen3_vl": qwen3,
}

VISION_TABLE: dict[str, str] = {
    "llava_next": "convert.keymaps.vision_clip",
    "qwen2_vl": "convert.keymaps.vision_qwen",
    "qwen2_5_vl": "convert.keymaps.vision_qwen",
    "qwen3_vl": "convert.keymaps.vision_qwen",
}

SUPPORTED_MODEL_TYPES = tuple(sorted(TEXT_FAMILY))


def vision_rules(model_type: str) -> list[Rule]:
    """The vision table's rules, or [] while that table is not written yet."""
    module_name = VISION_TABLE.get(model_type)
    if module_name is None:
        return []
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:  # the table exists but is broken: say so
            raise
        return []
    return list(module.vision_rules(model_type))


def rules_for(model_type: str) -> list[Rule]:
    if model_type not in TEXT_FAMILY:
        raise ValueError(
            f"no key map for model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    multimodal = model_type in VISION_TABLE
    # Vision rules first: their prefixes ("model.visual.") are more specific
    # than the text layouts' bare "model." prefix.
    return [*vision_rules(model_type), *TEXT_FAMILY[model_type].rules(multimodal)]


def keymap_for(model_type: str) -> KeyMap:
    return KeyMap(rules_for(model_type))
