"""LLaVA-NeXT's image side in flax.nnx: CLIP tower -> projector -> anyres packing.

`LlavaNextImageEncoder` holds `vision_tower`, `multi_modal_projector` and
`image_newline` as attributes, so its nnx state paths are the ones the full
multimodal model has at its root (the full model subclasses it) and one key
map serves both.

The anyres arrangement is planned on the host (models/llava_layout.py) from
`image_sizes`; the jitted part only runs the tower on every crop slot of
`pixel_values` and gathers with the plan's int arrays (static shapes). Crop
slots the processor padded are computed too (their features are never
gathered): the price of one compilation per batch shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.clip import ClipVisionTower, clip_activation, select_features
from models.llava_layout import VisualLayout, plan_layout
from models.sharding import constrain_batch
from models.vision_config import LlavaNextVisionConfig
from models.visual_tokens import KIND_NEWLINE


class LlavaNextProjector(nnx.Module):
    """linear_1 -> act -> linear_2 (HF LlavaNextMultiModalProjector)."""

    def __init__(self, config: LlavaNextVisionConfig, text_hidden_size: int, dtype, rngs: nnx.Rngs):
        bias = config.projector_bias
        self.act = clip_activation(config.projector_hidden_act)
        self.linear_1 = nnx.Linear(
            config.projector_in_features, text_hidden_size, use_bias=bias, param_dtype=dtype, rngs=rngs
        )
        self.linear_2 = nnx.Linear(text_hidden_size, text_hidden_size, use_bias=bias, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):  # [..., Dv * layers] -> [..., Dt]
        return self.linear_2(self.act(self.linear_1(x)))


class LlavaNextImageEncoder(nnx.Module):
    """Pixels of every crop -> projected, anyres-packed visual tokens."""

    def __init__(self, vision: LlavaNextVisionConfig, text_hidden_size: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.vision_config = vision
        self.vision_tower = ClipVisionTower(vision.tower, dtype=dtype, rngs=rngs)
        self.multi_modal_projector = LlavaNextProjector(vision, text_hidden_size, dtype, rngs)
        self.image_newline = nnx.Param(
            jax.random.normal(rngs.params(), (text_hidden_size,), dtype) * text_hidden_size**-0.5
        )

    def crop_features(self, crops):  # [N, C, H, W] -> [N, tokens_per_crop, Dt]
        """Tower states at the feature layers, CLS handling, projector: HF up to the split per image."""
        states = self.vision_tower.hidden_states(crops, self.vision_config.feature_layers)
        return self.multi_modal_projector(select_features(states, self.vision_config.select_strategy))

    def packed_features(self, pixel_values, layout: VisualLayout):
        """[images, crops, C, H, W] or [crops, C, H, W] -> [B, capacity, Dt] in the layout's order; padding is 0."""
        crops = constrain_batch(pixel_values.reshape((-1, *pixel_values.shape[-3:])))  # crops over "data"
        return self._pack(constrain_batch(self.crop_features(crops)), layout)

    def packed_features_and_evidence(self, pixel_values, layout: VisualLayout):
        """`packed_features` plus, per slot, the [CLS] attention row [B, V, H], head-mean keys [B, V, hd] and
        projector inputs [B, V, Dv * layers] of the feature layer (models.tower_evidence)."""
        crops = constrain_batch(pixel_values.reshape((-1, *pixel_values.shape[-3:])))
        states, (cls_row, keys) = self.vision_tower.hidden_states_and_evidence(crops, self.vision_config.feature_layers)
        hidden = select_features(states, self.vision_config.select_strategy)
        if self.vision_config.select_strategy == "default":  # the slots are the patches: drop the CLS column
            cls_row, keys = cls_row[:, :, 1:], keys[:, 1:]
        gather = lambda f: jnp.take(f.reshape(-1, f.shape[-1]), layout.source, axis=0)  # noqa: E731
        attention = gather(cls_row.transpose(0, 2, 1))  # [B, V, H]
        return self._pack(constrain_batch(self.multi_modal_projector(hidden)), layout), (
            attention, gather(keys), gather(hidden))

    def project_hidden(self, hidden):
        """Projector inputs [..., Dv * layers] (e.g. VisionZip's merged tokens) -> (LLM features, None)."""
        return self.multi_modal_projector(hidden), None

    def _pack(self, features, layout: VisualLayout):
        flat = features.reshape(-1, features.shape[-1])  # [N * g*g, Dt]
        gathered = jnp.take(flat, layout.source, axis=0)  # [B, V, Dt]
        newline = self.image_newline[...].astype(gathered.dtype)
        tokens = layout.tokens
        out = jnp.where((tokens.kind == KIND_NEWLINE)[..., None], newline, gathered)
        return jnp.where(tokens.valid[..., None], out, jnp.zeros((), out.dtype))

    def plan(self, pixel_values, image_sizes, **kwargs) -> VisualLayout:
        """Host-side plan for this batch; checks pixel_values against the tower before anything runs."""
        shape = tuple(np.shape(pixel_values))
        if len(shape) not in (4, 5):
            raise ValueError(f"pixel_values of shape {shape}: expected 5-D [images, crops, C, H, W] or 4-D")
        self.vision_tower.check_crop_shape(shape)
        return plan_layout(image_sizes, shape, self.vision_config, **kwargs)

    def image_features(self, pixel_values, image_sizes, capacity: int | None = None):
        """HF get_image_features + pack_image_features, one image per row.

        Returns (features [num_images, capacity, Dt], layout); image i's tokens are
        features[i, : layout.tokens.valid[i].sum()].
        """
        layout = self.plan(pixel_values, image_sizes, capacity=capacity)
        return _packed_features_jit(self, jnp.asarray(pixel_values), layout), layout


@nnx.jit
def _packed_features_jit(encoder: LlavaNextImageEncoder, pixel_values, layout: VisualLayout):
    return encoder.packed_features(pixel_values, layout)
