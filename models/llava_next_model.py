"""LLaVA-NeXT, the whole model: CLIP tower + projector + anyres packing + Llama/Mistral decoder.

Param paths at the root are the converter's targets: `vision_tower/...`,
`multi_modal_projector/...`, `image_newline` (inherited from
`LlavaNextImageEncoder`) and `language_model/...` (the TextModel).

`prepare` plans on the host (which image belongs to which sample, the anyres
layout, where every visual token goes) and runs the tower, the projector, the
packing and the scatter into the text embeddings in one jitted call.

Position ids count real tokens only (cumsum(attention_mask) - 1, padding 0),
as HF `generate` builds them: a sample's positions do not depend on how much
padding the batch gave it, and decoding continues at n_valid. (HF's bare
forward uses 0..T-1; RoPE sees only differences, so the logits agree.)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.decoder import TextModel
from models.llava_layout import VisualLayout, compact_crops
from models.llava_next import LlavaNextImageEncoder
from models.multimodal import (
    PreparedInputs,
    TwoStageForward,
    check_text_inputs,
    next_positions,
    place_visual,
    reject_unknown,
)
from models.sharding import constrain_batch, place, place_batch
from models.tower_evidence import TowerEvidence, rank_groups
from models.visual_tokens import KIND_NEWLINE, image_token_positions, pack_visual_tokens

ACCEPTED_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_sizes", "mm_token_type_ids")


class LlavaNextModel(TwoStageForward, LlavaNextImageEncoder):
    """HF LlavaNextForConditionalGeneration. `model(**inputs)` -> float32 logits [B, T, V]."""

    def __init__(self, config, *, dtype=jnp.float32, rngs: nnx.Rngs):
        if config.model_type != "llava_next" or config.vision is None:
            raise ValueError(f"LlavaNextModel needs a llava_next config, got model_type {config.model_type!r}")
        super().__init__(config.vision, config.text.hidden_size, dtype=dtype, rngs=rngs)
        self.config = config
        self.language_model = TextModel(config.text, dtype=dtype, rngs=rngs)

    def plan_inputs(self, input_ids, pixel_values=None, image_sizes=None, *, visual_capacity=None, max_images=None):
        """Host side: the anyres layout (None without images) and the batch's VisualTokens."""
        ids = np.asarray(input_ids)
        image_id = self.config.image_token_id
        if pixel_values is None:
            if image_sizes is not None:
                raise ValueError("image_sizes given without pixel_values")
            if (ids == image_id).any():
                raise ValueError(f"input_ids contain image tokens (id {image_id}) but no pixel_values were given")
            tokens, _ = pack_visual_tokens([], [0] * ids.shape[0], image_token_positions(ids, image_id),
                                           visual_capacity, max_images)
            return None, tokens
        layout = self.plan(pixel_values, image_sizes, input_ids=ids, image_token_id=image_id,
                           capacity=visual_capacity, max_images=max_images)
        return layout, layout.tokens

    def prepare(
        self,
        input_ids=None,
        attention_mask=None,
        pixel_values=None,
        image_sizes=None,
        mm_token_type_ids=None,
        *,
        visual_capacity: int | None = None,
        max_images: int | None = None,
        crop_capacity: int | None = None,
        evidence: bool = False,
        **extra,
    ) -> PreparedInputs:
        """Processor outputs -> PreparedInputs.

        Static sizes (default: exact for this batch): visual_capacity (Nv), max_images (I),
        crop_capacity (crops the tower runs on, padding included; e.g. images x max_crops_per_image).
        mm_token_type_ids (some processors return it) is accepted and unused: positions are 1-D here.
        evidence: also return what in-tower pruning reads (models.tower_evidence), per slot.
        """
        del mm_token_type_ids
        reject_unknown("LlavaNextModel", extra, ACCEPTED_INPUTS)
        ids, mask = check_text_inputs(input_ids, attention_mask, self.config.text.vocab_size)
        planned = pixel_values
        if pixel_values is not None and crop_capacity is not None:
            self.vision_tower.check_crop_shape(tuple(np.shape(pixel_values)))
            pixel_values, real = compact_crops(pixel_values, image_sizes, self.vision_config, crop_capacity)
            planned = pixel_values[:real]  # the plan addresses the real crops; padding follows them
        layout, tokens = self.plan_inputs(ids, planned, image_sizes, visual_capacity=visual_capacity,
                                          max_images=max_images)
        pixels = None if pixel_values is None else np.asarray(pixel_values)
        if pixels is not None and not np.isfinite(pixels).all():
            raise ValueError("pixel_values contain NaN or inf")
        # Under a mesh (jax.set_mesh): rows and crops split over "data", index maps alike.
        group = None if layout is None else crop_groups(layout, self.vision_config.tower.grid_side)
        layout = None if layout is None else dataclasses.replace(
            layout, source=place_batch(layout.source), tokens=jax.tree.map(place_batch, layout.tokens),
            image_sample=place(layout.image_sample))
        found = None
        if evidence and layout is not None:
            embeds, (attention, keys, hidden) = _embed_with_evidence(self, place_batch(ids), place_batch(pixels), layout)
            v = self.vision_config
            text_width = self.config.text.hidden_size
            found = TowerEvidence(attention, keys, hidden, group, main=int(hidden.shape[-1]),
                                  projector_flops=2.0 * (v.projector_in_features * text_width + text_width**2))
        else:
            embeds = _embed(self, place_batch(ids), place_batch(pixels), layout)
        positions = token_positions(mask)
        return PreparedInputs(
            inputs_embeds=embeds,
            position_ids=place_batch(positions),
            attention_mask=place_batch(mask),
            layer_additions=None,
            next_position=place_batch(next_positions(positions, mask)),
            visual=tokens,
            evidence=found,
        )


def crop_groups(layout: VisualLayout, grid_side: int) -> np.ndarray:
    """[B, Nv] int32: the crop of each patch slot, numbered 0.. within its sample (-1: padding, newline)."""
    tokens = layout.tokens
    patch = np.asarray(tokens.valid) & (np.asarray(tokens.kind) != KIND_NEWLINE)
    return rank_groups(np.asarray(layout.source) // grid_side**2, patch)


def token_positions(attention_mask: np.ndarray) -> np.ndarray:
    """[B, T] int32: cumsum(mask) - 1 on real tokens, 0 on padding (HF generate's position ids)."""
    mask = np.asarray(attention_mask).astype(bool)
    return np.where(mask, np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)


@nnx.jit
def _embed(model: LlavaNextModel, input_ids, pixel_values, layout: VisualLayout | None):  # -> [B, T, D]
    embeds = model.language_model.embed(input_ids)
    if pixel_values is None:
        return constrain_batch(embeds)
    return constrain_batch(place_visual(embeds, model.packed_features(pixel_values, layout), layout.tokens))


@nnx.jit
def _embed_with_evidence(model: LlavaNextModel, input_ids, pixel_values, layout: VisualLayout):
    embeds = model.language_model.embed(input_ids)
    features, found = model.packed_features_and_evidence(pixel_values, layout)
    return constrain_batch(place_visual(embeds, features, layout.tokens)), tuple(constrain_batch(f) for f in found)
