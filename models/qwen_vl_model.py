"""Qwen2-VL / Qwen2.5-VL / Qwen3-VL, the whole model: Qwen ViT + Qwen2/Qwen3 decoder with M-RoPE.

Param paths at the root are the converter's targets: `visual/...` (the tower)
and `language_model/...` (the TextModel).

`prepare` plans on the host (models/qwen_vl_plan.py: padded patches, the
tower's layout, 3-D M-RoPE ids as HF's get_rope_index, the visual-token map)
and runs the tower plus the scatter into the text embeddings in one jitted
call. Qwen3-VL's deepstack features become
`layer_additions` [n, B, T, D]: feature j is added after LM layer j at the
visual positions (zeros elsewhere), as HF's `_deepstack_process` does.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from models.decoder import TextModel
from models.multimodal import (
    PreparedInputs,
    TwoStageForward,
    check_text_inputs,
    next_positions,
    place_visual,
    reject_unknown,
)
from models.qwen_vision import QwenVisionTower
from models.qwen_vision.layout import VisionLayout
from models.qwen_vl_plan import plan_qwen_vl_inputs
from models.visual_tokens import VisualTokens

ACCEPTED_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")
QWEN_VL_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


class QwenVLModel(TwoStageForward, nnx.Module):
    """HF Qwen2VL / Qwen2_5_VL / Qwen3VL ForConditionalGeneration. `model(**inputs)` -> float32 logits."""

    def __init__(self, config, *, dtype=jnp.float32, rngs: nnx.Rngs):
        if config.model_type not in QWEN_VL_MODEL_TYPES or config.vision is None:
            raise ValueError(f"QwenVLModel needs one of {QWEN_VL_MODEL_TYPES}, got model_type {config.model_type!r}")
        self.config = config
        self.visual = QwenVisionTower(config.vision, dtype=dtype, rngs=rngs)
        self.language_model = TextModel(config.text, dtype=dtype, rngs=rngs)

    def prepare(
        self,
        input_ids=None,
        attention_mask=None,
        pixel_values=None,
        image_grid_thw=None,
        mm_token_type_ids=None,
        *,
        visual_capacity: int | None = None,
        max_images: int | None = None,
        patch_capacity: int | None = None,
        window_capacity: int | None = None,
        **extra,
    ) -> PreparedInputs:
        """Processor outputs -> PreparedInputs.

        Static sizes (default: exact for this batch): visual_capacity (Nv), max_images (I),
        patch_capacity (patches the tower runs on), window_capacity (Qwen2.5-VL windows).
        """
        reject_unknown("QwenVLModel", extra, ACCEPTED_INPUTS)
        ids, mask = check_text_inputs(input_ids, attention_mask, self.config.text.vocab_size)
        plan = plan_qwen_vl_inputs(
            self.config.vision,
            self.config.image_token_id,
            ids,
            mask,
            pixel_values,
            image_grid_thw,
            mm_token_type_ids,
            video_token_id=self.config.video_token_id,
            patch_capacity=patch_capacity,
            window_capacity=window_capacity,
            visual_capacity=visual_capacity,
            max_images=max_images,
        )
        pixels = None if plan.pixel_values is None else jnp.asarray(plan.pixel_values)
        embeds, additions = _embed(self, jnp.asarray(ids), pixels, plan.layout, plan.tokens, plan.merged_slots)
        return PreparedInputs(
            inputs_embeds=embeds,
            position_ids=jnp.asarray(plan.position_ids),
            attention_mask=jnp.asarray(mask),
            layer_additions=additions,
            next_position=jnp.asarray(next_positions(plan.position_ids, mask)),
            visual=plan.tokens,
        )


@nnx.jit
def _embed(model: QwenVLModel, input_ids, pixel_values, layout: VisionLayout | None, tokens: VisualTokens,
           merged_slots):
    """-> (inputs_embeds [B, T, D], deepstack additions [n, B, T, D] or None)."""
    embeds = model.language_model.embed(input_ids)
    if pixel_values is None:
        return embeds, None
    out = model.visual(pixel_values, layout)
    embeds = place_visual(embeds, out.merged[merged_slots], tokens)
    if not out.deepstack:
        return embeds, None
    zeros = jnp.zeros_like(embeds)
    additions = jnp.stack([place_visual(zeros, feature[merged_slots], tokens) for feature in out.deepstack])
    return embeds, additions
