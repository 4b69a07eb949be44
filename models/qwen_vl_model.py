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

import functools

import jax
import numpy as np
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
from models.sharding import constrain_batch, place_batch
from models.tower_evidence import TowerEvidence
from models.visual_tokens import VisualTokens

ACCEPTED_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids",
                   "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
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
        pixel_values_videos=None,
        video_grid_thw=None,
        second_per_grid_ts=None,
        *,
        visual_capacity: int | None = None,
        max_images: int | None = None,
        unit_capacity: int | None = None,
        unit_patch_capacity: int | None = None,
        unit_window_capacity: int | None = None,
        evidence: bool = False,
        **extra,
    ) -> PreparedInputs:
        """Processor outputs -> PreparedInputs.

        Videos (pixel_values_videos / video_grid_thw, Qwen2.5-VL also second_per_grid_ts) go through
        the same tower call as the images; their tokens sit at `<|video_pad|>` (models/qwen_vl_plan.py).
        Static sizes (default: exact for this batch): visual_capacity (Nv), max_images (I: images and
        videos per sample), and the tower's unit_capacity (attention units = frames of images, temporal
        patches of videos), unit_patch_capacity (patches per unit), unit_window_capacity (Qwen2.5-VL
        windows per unit); see models/qwen_vision/layout.py.
        evidence: also return what in-tower pruning reads (models.tower_evidence), per slot.
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
            pixel_values_videos=pixel_values_videos,
            video_grid_thw=video_grid_thw,
            second_per_grid_ts=second_per_grid_ts,
            unit_capacity=unit_capacity,
            unit_patch_capacity=unit_patch_capacity,
            unit_window_capacity=unit_window_capacity,
            visual_capacity=visual_capacity,
            max_images=max_images,
        )
        # Under a mesh (jax.set_mesh): the tower's units and the rows split over "data".
        layout = None if plan.layout is None else jax.tree.map(place_batch, plan.layout)
        evidence = bool(evidence) and plan.pixel_values is not None
        embeds, additions, found = _embed(self, place_batch(ids), place_batch(plan.pixel_values), layout,
                                          jax.tree.map(place_batch, plan.tokens), place_batch(plan.merged_slots),
                                          evidence=evidence)
        if evidence:
            tokens = plan.tokens
            v = self.config.vision
            wide = v.hidden_size * v.merge_unit
            mergers = 1 + len(v.deepstack_visual_indexes or ())
            found = TowerEvidence(*found, np.where(np.asarray(tokens.valid), np.asarray(tokens.image), -1).astype(np.int32),
                                  main=wide, projector_flops=mergers * 2.0 * (wide * wide + wide * v.out_hidden_size))
        return PreparedInputs(
            inputs_embeds=embeds,
            position_ids=place_batch(plan.position_ids, batch_axis=1),
            attention_mask=place_batch(mask),
            layer_additions=additions,
            next_position=place_batch(next_positions(plan.position_ids, mask)),
            visual=plan.tokens,
            evidence=found,
        )

    def project_hidden(self, hidden):
        """Merger MLP inputs [..., W] (models.tower_evidence) -> (LLM features, deepstack features or None)."""
        return self.visual.project_hidden(hidden)


@functools.partial(nnx.jit, static_argnames="evidence")
def _embed(model: QwenVLModel, input_ids, pixel_values, layout: VisionLayout | None, tokens: VisualTokens,
           merged_slots, evidence: bool = False):
    """-> (inputs_embeds [B, T, D], deepstack additions [n, B, T, D] or None, per-slot evidence or None)."""
    embeds = model.language_model.embed(input_ids)
    if pixel_values is None:
        return constrain_batch(embeds), None, None
    out = model.visual(pixel_values, layout, evidence=evidence)
    embeds = constrain_batch(place_visual(embeds, out.merged[merged_slots], tokens))
    found = None if out.evidence is None else tuple(constrain_batch(f[merged_slots]) for f in out.evidence)
    if not out.deepstack:
        return embeds, None, found
    zeros = jnp.zeros_like(embeds)
    additions = jnp.stack([place_visual(zeros, feature[merged_slots], tokens) for feature in out.deepstack])
    return embeds, constrain_batch(additions, batch_axis=1), found
