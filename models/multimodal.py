"""What the full multimodal models share: the two-stage forward and its pre-LLM hook.

Both LLaVA-NeXT and Qwen-VL run in two public steps so that a pruner (the
engine) can act between them:

    prepared = model.prepare(**processor_outputs)     # PreparedInputs
    logits = model.language_model(inputs_embeds=prepared.inputs_embeds,
                                  attention_mask=prepared.attention_mask,
                                  position_ids=prepared.position_ids,
                                  layer_additions=prepared.layer_additions)

and `model(**processor_outputs)` is exactly that composition. Host-side
planning (layouts, positions, visual-token maps) is NumPy; the device work of
`prepare` is one jitted function per family.

`build_multimodal(config, dtype, rngs)` is the factory `models.params` calls
for multimodal model types.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from models.visual_tokens import VisualTokens

# Keys a processor may return that the forward does not need (the tokenizer's segment ids).
IGNORED_INPUTS = ("token_type_ids",)


@struct.dataclass
class PreparedInputs:
    """The language model's inputs after the vision side ran, plus where the visual tokens sit."""

    inputs_embeds: jax.Array  # [B, T, D]
    position_ids: jax.Array  # [B, T] (LLaVA) or [3, B, T] (Qwen M-RoPE)
    attention_mask: jax.Array  # [B, T] int32
    layer_additions: Optional[jax.Array]  # [n, B, T, D] (Qwen3-VL deepstack) or None
    next_position: jax.Array  # [B] int32: position of the first generated token (max position + 1)
    visual: VisualTokens
    evidence: Any = None  # models.tower_evidence.TowerEvidence when prepare(evidence=True), else None


def place_visual(embeds, features, tokens: VisualTokens):
    """Write each valid slot's feature at its sequence position.

    embeds [B, T, D]; features [B, Nv, D] in slot order -> [B, T, D]. Padding
    slots aim past the end and are dropped, so they never overwrite a token.
    """
    batch, length = embeds.shape[:2]
    target = jnp.where(tokens.valid, tokens.index, length)  # [B, Nv]
    rows = jnp.arange(batch)[:, None]
    return embeds.at[rows, target].set(features.astype(embeds.dtype), mode="drop")


def next_positions(position_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """[B]: 1 + the largest position of a real token (any M-RoPE axis), as HF continues decoding."""
    pos = np.asarray(position_ids)
    pos = pos if pos.ndim == 3 else pos[None]
    mask = np.asarray(attention_mask).astype(bool)
    masked = np.where(mask[None], pos, -1)
    return (masked.max(axis=(0, 2)) + 1).astype(np.int32)


def check_text_inputs(input_ids, attention_mask, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids [B, T] integer, attention_mask int32 [B, T], all ones when absent); ValueError naming
    what is wrong (missing ids, shapes, ids outside the vocabulary)."""
    if input_ids is None:
        raise ValueError("input_ids is required")
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"input_ids must be an integer array [batch, seq], got {ids.dtype} of shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"input_ids outside the vocabulary [0, {vocab_size}): min {ids.min()}, max {ids.max()}")
    if attention_mask is None:
        return ids, np.ones(ids.shape, np.int32)
    mask = np.asarray(attention_mask)
    if mask.shape != ids.shape:
        raise ValueError(f"attention_mask of shape {mask.shape} does not match input_ids of shape {ids.shape}")
    return ids, mask.astype(np.int32)


def reject_unknown(model_name: str, extra: dict[str, Any], accepted: tuple[str, ...]) -> None:
    unknown = sorted(k for k in extra if k not in IGNORED_INPUTS)
    if unknown:
        raise ValueError(f"{model_name}: unexpected inputs {unknown}; accepted: {', '.join(accepted)}")


class TwoStageForward:
    """`model(**inputs)` = prepare + language model (mixed into both families' root modules)."""

    def __call__(self, **inputs) -> jax.Array:
        """Processor outputs -> float32 logits [B, T, vocab], equal to HF's."""
        prepared = self.prepare(**inputs)
        return self.language_model(
            inputs_embeds=prepared.inputs_embeds,
            attention_mask=prepared.attention_mask,
            position_ids=prepared.position_ids,
            layer_additions=prepared.layer_additions,
        )


def build_multimodal(config, dtype=jnp.float32, rngs: nnx.Rngs | None = None):
    """The full model of a multimodal `ModelConfig` (random weights; `models.load` replaces them)."""
    rngs = nnx.Rngs(0) if rngs is None else rngs
    if config.model_type == "llava_next":
        from models.llava_next_model import LlavaNextModel

        return LlavaNextModel(config, dtype=dtype, rngs=rngs)
    if config.model_type in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        from models.qwen_vl_model import QwenVLModel

        return QwenVLModel(config, dtype=dtype, rngs=rngs)
    raise ValueError(
        f"build_multimodal: model_type {config.model_type!r} is not multimodal; "
        f"expected llava_next, qwen2_vl, qwen2_5_vl or qwen3_vl"
    )
